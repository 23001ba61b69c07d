"""What a replica fetcher decides, as pure functions (Kafka's AbstractFetcherThread).

The asyncio shell (``broker/replica_fetcher.py``) sends the requests and applies the
answers to the logs; this module says what to send and what an answer
means, so those rules are tested with a fake clock and made-up answers:

- ``FetchTarget``: one followed partition's fetch state: the leader epoch
  it follows at, and whether it waits (a backoff after an error, or held
  until the controller's next LeaderAndIsr after FENCED_LEADER_EPOCH).
- ``fetch_request``: the Fetch body (v12: topics by name, last fetched
  epoch, no fetch session) for the partitions ready to fetch.
- ``truncation_offset``: where to truncate on a diverging epoch (KIP-279
  with the diverging-epoch field of Fetch v12, KIP-320).
- ``out_of_range_action``: what OFFSET_OUT_OF_RANGE means once the
  leader's log start and end are known.
- ``error_action``: retry later, hold, or ask the leader where its log is.

Pure: no asyncio, no I/O, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
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


def fetch_request(
    broker_id: int, wanted: Iterable[PartitionFetch], limits: FetchLimits
) -> dict[str, Any]:
    """The Fetch v12 body of a follower (``replica_id`` = its broker id, no fetch session)."""
    topics: dict[str, list[dict[str, Any]]] = {}
    for want in wanted:
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
    return {
        "replica_id": broker_id,
        "max_wait_ms": limits.max_wait_ms,
        "min_bytes": limits.min_bytes,
        "max_bytes": limits.max_bytes,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [{"topic": name, "partitions": parts} for name, parts in topics.items()],
        "forgotten_topics_data": [],
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
