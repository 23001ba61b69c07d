"""What a replica fetcher decides, as pure functions (Kafka's AbstractFetcherThread).

The asyncio shell (``broker/replica_fetcher.py``) sends the requests and applies the
answers to the logs; this module says what to send and what an answer
means, so those rules are tested with a fake clock and made-up answers:

- ``FetchTarget``: one followed partition's fetch state: the leader epoch
  it follows at, and whether it waits (a backoff after an error, or held
  until the controller's next LeaderAndIsr after FENCED_LEADER_EPOCH).
- ``FollowerSession``: the incremental fetch session with one leader
  (KIP-227): what to name and forget in each request.
- ``fetch_request``: the Fetch body (v12: topics by name, last fetched
  epoch, the session's id and epoch).
- ``truncation_offset``: where to truncate on a diverging epoch (KIP-279
  with the diverging-epoch field of Fetch v12, KIP-320).
- ``out_of_range_action``: what OFFSET_OUT_OF_RANGE means once the
  leader's log start and end are known.
- ``error_action``: retry later, hold, or ask the leader where its log is.

Pure: no asyncio, no I/O, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..protocol.errors import ErrorCode

#: The Fetch version followers send: the last with topic names (v13 names
#: topics by id) and the first with last_fetched_epoch / diverging_epoch.
FOLLOWER_FETCH_VERSION = 12


@dataclass
class FetchTarget:
    """One partition a fetcher follows (Kafka's PartitionFetchState)."""

    leader_epoch: int
    #: No fetch before this time (ms): a backoff after an error.
    delayed_until_ms: int = 0
    #: Fenced: this replica's epoch is older than the leader's; it waits for
    #: the controller's LeaderAndIsr, which re-adds it with the new epoch.
    held: bool = False

    def ready(self, now_ms: int) -> bool:
        return not self.held and self.delayed_until_ms <= now_ms

    def delay(self, now_ms: int, backoff_ms: int) -> None:
        self.delayed_until_ms = now_ms + backoff_ms


def next_ready_ms(targets: Iterable[FetchTarget]) -> int | None:
    """When the earliest delayed (not held) target becomes ready; None if none waits."""
    times = [t.delayed_until_ms for t in targets if not t.held]
    return min(times) if times else None


@dataclass(frozen=True)
class PartitionFetch:
    """What a follower asks of one partition: from its log end, naming the
    epoch of its last batch so the leader can say where the logs diverge."""

    topic: str
    partition: int
    leader_epoch: int
    fetch_offset: int
    last_fetched_epoch: int
    log_start_offset: int


@dataclass(frozen=True)
class FetchLimits:
    """Kafka's replica.fetch.* settings."""

    max_wait_ms: int = 500
    min_bytes: int = 1
    #: Per partition (replica.fetch.max.bytes) and per response
    #: (replica.fetch.response.max.bytes).
    partition_max_bytes: int = 1024 * 1024
    max_bytes: int = 10 * 1024 * 1024


#: Kafka's FetchMetadata: no session; the epoch of a full fetch opening
#: one, and of one closing it (or asking for none).
NO_SESSION = 0
INITIAL_EPOCH = 0
FINAL_EPOCH = -1
_INT32_MAX = 0x7FFFFFFF
#: Answered to the whole request: the session is gone or out of step.
SESSION_ERRORS = frozenset(
    {ErrorCode.FETCH_SESSION_ID_NOT_FOUND, ErrorCode.INVALID_FETCH_SESSION_EPOCH}
)


def next_epoch(epoch: int) -> int:
    """The session epoch after ``epoch`` (wrapping past int32 max to 1)."""
    return 1 if epoch >= _INT32_MAX else epoch + 1


@dataclass(frozen=True)
class SessionRequest:
    """One request of a session: the partitions to name, those to forget."""

    session_id: int
    epoch: int
    named: list[PartitionFetch]
    forgotten: list[tuple[str, int]]
    #: Every partition the leader will have cached once this is answered.
    wanted: dict[tuple[str, int], PartitionFetch]

    @property
    def full(self) -> bool:
        return self.epoch == INITIAL_EPOCH


@dataclass
class FollowerSession:
    """A follower's fetch session with one leader (KIP-227, Kafka's
    FetchSessionHandler), on one connection.

    The first request is full (id 0, epoch 0) and names every partition; if
    the leader answers with a session id, later requests carry it with the
    next epoch and name only the partitions whose fetch parameters changed
    (a new log end, epoch or log start) or that were added, and forget
    those no longer fetched (removed, backing off, throttled, held). A
    partition absent from an incremental answer has nothing new: its state
    stays. ``reset`` (a lost connection, FETCH_SESSION_ID_NOT_FOUND,
    INVALID_FETCH_SESSION_EPOCH) starts over with a full request; a leader
    answering id 0 keeps it on full requests.
    """

    session_id: int = NO_SESSION
    epoch: int = INITIAL_EPOCH
    #: What the leader has cached, as last named (None: name it again).
    known: dict[tuple[str, int], PartitionFetch | None] = field(default_factory=dict)

    def request(self, wanted: dict[tuple[str, int], PartitionFetch]) -> SessionRequest:
        if self.session_id == NO_SESSION:
            return SessionRequest(NO_SESSION, INITIAL_EPOCH, list(wanted.values()), [], wanted)
        named = [want for tp, want in wanted.items() if self.known.get(tp) != want]
        forgotten = [tp for tp in self.known if tp not in wanted]
        return SessionRequest(self.session_id, self.epoch, named, forgotten, wanted)

    def answered(self, sent: SessionRequest, session_id: int) -> None:
        """The leader answered ``sent`` without a session error."""
        if sent.full:
            self.session_id = session_id
            self.epoch = 1
        elif session_id == NO_SESSION:  # the leader closed it: start over
            self.reset()
            return
        else:
            self.epoch = next_epoch(self.epoch)
        self.known = dict(sent.wanted) if self.session_id != NO_SESSION else {}

    def rename(self, tp: tuple[str, int]) -> None:
        """Name ``tp`` in the next request even if unchanged (its answer was
        not applied, so the leader must say its offsets again)."""
        if tp in self.known:
            self.known[tp] = None

    def reset(self) -> None:
        self.session_id, self.epoch, self.known = NO_SESSION, INITIAL_EPOCH, {}


def fetch_request(broker_id: int, sent: SessionRequest, limits: FetchLimits) -> dict[str, Any]:
    """The Fetch v12 body of a follower (``replica_id`` = its broker id)."""
    topics: dict[str, list[dict[str, Any]]] = {}
    for want in sent.named:
        topics.setdefault(want.topic, []).append(
            {
                "partition": want.partition,
                "current_leader_epoch": want.leader_epoch,
                "fetch_offset": want.fetch_offset,
                "last_fetched_epoch": want.last_fetched_epoch,
                "log_start_offset": want.log_start_offset,
                "partition_max_bytes": limits.partition_max_bytes,
            }
        )
    forgotten: dict[str, list[int]] = {}
    for topic, index in sent.forgotten:
        forgotten.setdefault(topic, []).append(index)
    return {
        "replica_id": broker_id,
        "max_wait_ms": limits.max_wait_ms,
        "min_bytes": limits.min_bytes,
        "max_bytes": limits.max_bytes,
        "isolation_level": 0,
        "session_id": sent.session_id,
        "session_epoch": sent.epoch,
        "topics": [{"topic": name, "partitions": parts} for name, parts in topics.items()],
        "forgotten_topics_data": [
            {"topic": name, "partitions": parts} for name, parts in forgotten.items()
        ],
        "rack_id": "",
    }


def truncation_offset(
    diverging: tuple[int, int], local: tuple[int, int], log_end_offset: int
) -> int:
    """Where to truncate when the leader answers ``diverging`` = (epoch, end
    offset): the largest epoch it has up to the follower's last one, and
    where that epoch ended in its log. ``local`` is the follower's own
    (epoch, end offset) for that epoch (its largest epoch <= it), or
    (-1, -1).

    Kafka's getOffsetTruncationState: the same epoch ends at the smaller of
    the two ends; a follower that never had the leader's epoch truncates to
    where its own largest older epoch ended and fetches again (the leader
    then answers for that one); a follower with no epoch that old keeps
    nothing past the leader's end. Never past the follower's own log end.
    """
    leader_epoch, leader_end = diverging
    local_epoch, local_end = local
    if local_epoch < 0 or local_end < 0:
        return max(0, min(leader_end, log_end_offset))
    if local_epoch == leader_epoch:
        return min(local_end, leader_end, log_end_offset)
    return min(local_end, log_end_offset)


class OutOfRange(Enum):
    """What to do on OFFSET_OUT_OF_RANGE, given the leader's log."""

    #: The leader's log ends below this one's (an unclean election): cut to it.
    TRUNCATE = "truncate"
    #: The leader's log starts past this one's end (retention removed what
    #: this replica still needs): empty this log and start at the leader's start.
    RESTART_AT_LEADER_START = "restart"
    #: Within the leader's log after all (it moved meanwhile): fetch again.
    RETRY = "retry"


def out_of_range_action(
    log_end_offset: int, leader_log_start: int, leader_log_end: int
) -> tuple[OutOfRange, int]:
    """Kafka's fetchOffsetAndTruncate: (action, offset to truncate or start at)."""
    if leader_log_end < log_end_offset:
        return OutOfRange.TRUNCATE, leader_log_end
    if leader_log_start > log_end_offset:
        return OutOfRange.RESTART_AT_LEADER_START, leader_log_start
    return OutOfRange.RETRY, log_end_offset


class ErrorAction(Enum):
    """How a fetcher treats an error answered for one partition."""

    #: Try again after the backoff (the leader may not know yet that it
    #: leads, or the connection or its storage failed).
    RETRY_LATER = "retry"
    #: This replica's epoch is stale: wait for the controller's next LeaderAndIsr.
    HOLD = "hold"
    #: Ask the leader where its log starts and ends (``out_of_range_action``).
    OUT_OF_RANGE = "out_of_range"


def error_action(code: int) -> ErrorAction:
    """Kafka's handling in AbstractFetcherThread.processFetchRequest."""
    if code == ErrorCode.FENCED_LEADER_EPOCH:
        return ErrorAction.HOLD
    if code == ErrorCode.OFFSET_OUT_OF_RANGE:
        return ErrorAction.OUT_OF_RANGE
    return ErrorAction.RETRY_LATER
