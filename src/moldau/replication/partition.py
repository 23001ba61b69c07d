"""A partition replica hosted by this broker: its log plus replication state.

The log stores bytes; the partition knows who leads, which replicas are in
sync, and how far consumers may read (the high watermark). A single-node
broker leads every partition with an ISR of one, so the high watermark is
simply the log end offset; cluster mode will drive the same object as
follower (``become_follower``) and advance the high watermark from the
followers' fetch offsets.

The high watermark has one owner. Its value is kept once, in the log
(``PartitionLog.high_watermark``), because retention, the cleaner,
truncation and the replication-offset-checkpoint all need it, also for a
log no partition hosts (at load, in the log's own tests), and the log keeps
it within [log start, log end]. This class is the only code that advances
it (``_advance_high_watermark``) and reads it back through the
``high_watermark`` property; it keeps no copy that could disagree. That is
Kafka's split too: UnifiedLog holds the high watermark, Partition moves it.

Nothing here does I/O beyond the log itself, and nothing waits: the
broker's asyncio shell listens to ``on_append``.

Leader epochs (KIP-320): requests that carry the epoch their client
believes current (Fetch v9+, ListOffsets v4+, OffsetForLeaderEpoch v2+) are
checked against this replica's before anything else, as Kafka's
``Partition.getLocalLog`` does: an older one is FENCED_LEADER_EPOCH (the
client's metadata is stale), a newer one UNKNOWN_LEADER_EPOCH (this broker
has not heard of the change yet), -1 is no check. A new leader records its
epoch in the log's leader-epoch cache at its log end before any append, as
Kafka's ``makeLeader``, so OffsetForLeaderEpoch can answer for the epoch
before it even if it writes nothing.

Replication (Kafka's Partition): as leader it tracks each follower's log
end offset from the offsets it fetches from (``update_follower_fetch``),
and when it last caught up, and moves the high watermark to the smallest
log end offset in the ISR; a write acknowledged with acks=all is done when
``check_replicated`` says so. As follower it appends the leader's batches
as they are (``append_as_follower``), truncates where its log left the
leader's (``truncate_to``), and takes the leader's high watermark and log
start offset as far as its own log reaches (``follow_leader_offsets``).

A partition whose storage failed is offline (the log holds the reason, since
the log is what must stop writing): every produce, fetch and offset lookup is
answered with KAFKA_STORAGE_ERROR until the broker restarts, as in Kafka.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..log.errors import KafkaStorageError, OffsetOutOfRangeError, UnexpectedAppendOffsetError
from ..log.partition_log import AppendResult, PartitionLog, ReadResult
from ..protocol.batch import iter_batches
from ..protocol.errors import ErrorCode, KafkaError

logger = logging.getLogger(__name__)

#: current_leader_epoch of a request that does not ask for the check.
NO_LEADER_EPOCH = -1


#: A follower's log end offset before its first fetch from this leader.
UNKNOWN_OFFSET = -1


@dataclass
class ReplicaState:
    """The leader's view of one follower (Kafka's Replica)."""

    log_end_offset: int = UNKNOWN_OFFSET
    #: When the follower last had everything the leader had (Kafka's
    #: lastCaughtUpTimeMs, what ``replica.lag.time.max.ms`` is measured by).
    last_caught_up_ms: int = 0
    #: The leader's log end offset and the time at its previous fetch.
    last_fetch_leader_end: int = UNKNOWN_OFFSET
    last_fetch_ms: int = 0

    def record_fetch(self, fetch_offset: int, leader_end: int, now_ms: int) -> None:
        """The follower fetched from ``fetch_offset`` (so its log ends
        there) when the leader's log ended at ``leader_end``.

        Kafka's rule: caught up now if it asked for the leader's end; caught
        up at its previous fetch if it now has what the leader had then (a
        busy leader's followers never reach a moving end exactly)."""
        if fetch_offset >= leader_end:
            self.last_caught_up_ms = max(self.last_caught_up_ms, now_ms)
        elif fetch_offset >= self.last_fetch_leader_end >= 0:
            self.last_caught_up_ms = max(self.last_caught_up_ms, self.last_fetch_ms)
        self.log_end_offset = fetch_offset
        self.last_fetch_leader_end = leader_end
        self.last_fetch_ms = now_ms


@dataclass
class Partition:
    """One topic-partition hosted here, as leader or follower."""

    topic: str
    index: int
    topic_id: uuid.UUID
    log: PartitionLog
    broker_id: int
    replicas: list[int]
    leader_id: int = -1
    leader_epoch: int = 0
    isr: list[int] = field(default_factory=list)
    #: The partition-state znode version the ISR was read from (AlterPartition
    #: is conditional on it).
    partition_epoch: int = 0
    #: An ISR this leader asked the controller for and has no answer to yet
    #: (Kafka's pending AlterPartition): no other change is proposed meanwhile.
    pending_isr: list[int] | None = None
    #: Where this leader's epoch began in its log: a follower rejoins the ISR
    #: only with everything from there on.
    leader_epoch_start_offset: int = 0
    followers: dict[int, ReplicaState] = field(default_factory=dict)
    #: Called after every append and every move of the high watermark, so
    #: waiting fetches and acks=all produces can answer early.
    on_append: Callable[[Partition], None] | None = None

    @property
    def is_leader(self) -> bool:
        return self.leader_id == self.broker_id

    @property
    def offline(self) -> bool:
        return self.log.offline is not None

    def check_online(self) -> None:
        """Raise KAFKA_STORAGE_ERROR if the partition's storage failed."""
        if self.log.offline is not None:
            raise KafkaStorageError(f"{self.topic}-{self.index} is offline: {self.log.offline}")

    @property
    def high_watermark(self) -> int:
        """How far consumers may read; stored by the log, moved only here."""
        return self.log.high_watermark

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    def check_leader_epoch(self, requested: int) -> None:
        """Raise FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH unless ``requested``
        is this replica's leader epoch or -1 (no check), as in Kafka."""
        if requested == NO_LEADER_EPOCH or requested == self.leader_epoch:
            return
        code = (
            ErrorCode.FENCED_LEADER_EPOCH
            if requested < self.leader_epoch
            else ErrorCode.UNKNOWN_LEADER_EPOCH
        )
        raise KafkaError(
            code,
            f"{self.topic}-{self.index}: leader epoch {requested} in the request, "
            f"{self.leader_epoch} here",
        )

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(epoch, end offset) of the largest epoch <= ``epoch`` in this
        replica's log, or (-1, -1) (OffsetForLeaderEpoch)."""
        self.check_online()
        return self.log.end_offset_for_epoch(epoch)

    def diverging_epoch(self, fetch_offset: int, last_fetched_epoch: int) -> tuple[int, int] | None:
        """Where a fetcher's log leaves this one (Fetch v12+, KIP-320), or None.

        The fetcher's log ends at ``fetch_offset`` with a batch of
        ``last_fetched_epoch``. If that epoch is unknown here or ended here
        before ``fetch_offset``, the logs diverge: the answer is this log's
        (epoch, end offset) for it, where the fetcher truncates to (a
        follower after a leader change, KIP-279). OFFSET_OUT_OF_RANGE when
        this log cannot say, or ``fetch_offset`` is below its start, as in
        Kafka's ``Partition.readRecords``.
        """
        epoch, end_offset = self.end_offset_for_epoch(last_fetched_epoch)
        if epoch < 0 or end_offset < 0:
            raise OffsetOutOfRangeError(
                f"{self.topic}-{self.index}: no end offset for last fetched epoch "
                f"{last_fetched_epoch}"
            )
        if fetch_offset < self.log_start_offset:
            raise OffsetOutOfRangeError(
                f"{self.topic}-{self.index}: offset {fetch_offset} is below the log start "
                f"{self.log_start_offset}"
            )
        if epoch < last_fetched_epoch or end_offset < fetch_offset:
            return epoch, end_offset
        return None

    def become_leader(self, epoch: int, isr: list[int], now_ms: int = 0) -> None:
        """Lead at ``epoch``. A leader that stays keeps what it knows of its
        followers (the controller bumps the epoch for an ISR change); a new
        one knows nothing yet and counts the ISR's members as caught up now,
        as Kafka's makeLeader does."""
        was_leader, previous_epoch = self.is_leader, self.leader_epoch
        self.leader_id = self.broker_id
        self.leader_epoch = epoch
        if epoch >= self.log.leader_epochs.latest_epoch:
            self.log.assign_leader_epoch(epoch, self.log.log_end_offset)
        else:
            # Epochs only grow; an older one would cut the log's epoch
            # history short. (A single node hosts every partition at epoch 0,
            # also a log that led at a later epoch elsewhere.)
            logger.warning(
                "%s-%d: leading at epoch %d, but the log has seen epoch %d",
                self.topic,
                self.index,
                epoch,
                self.log.leader_epochs.latest_epoch,
            )
        if not was_leader or epoch != previous_epoch:
            self.leader_epoch_start_offset = self.log.log_end_offset
        self.isr = list(isr)
        self.pending_isr = None
        known = self.followers if was_leader else {}
        self.followers = {
            r: known.get(r) or ReplicaState(last_caught_up_ms=now_ms if r in self.isr else 0)
            for r in self.replicas
            if r != self.broker_id
        }
        self._advance_high_watermark()

    def become_follower(self, leader_id: int, epoch: int) -> None:
        self.leader_id = leader_id
        self.leader_epoch = epoch
        self.followers = {}
        self.pending_isr = None

    # -- leader: the ISR ---------------------------------------------------------------

    def lagging_followers(self, now_ms: int, max_lag_ms: int) -> list[int]:
        """ISR members that have not caught up for ``max_lag_ms``
        (``replica.lag.time.max.ms``; Kafka's getOutOfSyncReplicas): a
        follower at this log's end is in sync however long ago it fetched."""
        if not self.is_leader:
            return []
        end = self.log.log_end_offset
        lagging = []
        for replica in self.isr:
            state = self.followers.get(replica)
            if replica == self.broker_id or state is None:
                continue
            if state.log_end_offset != end and now_ms - state.last_caught_up_ms > max_lag_ms:
                lagging.append(replica)
        return lagging

    def isr_shrink(self, now_ms: int, max_lag_ms: int) -> list[int] | None:
        """The ISR without its lagging followers, if any lag and no change is
        pending; None otherwise."""
        if self.pending_isr is not None:
            return None
        lagging = self.lagging_followers(now_ms, max_lag_ms)
        return [r for r in self.isr if r not in lagging] if lagging else None

    def isr_expand(self, replica_id: int) -> list[int] | None:
        """The ISR with ``replica_id`` if that follower has caught up (its log
        reaches the high watermark and the start of this leader's epoch,
        Kafka's isFollowerInSync) and no change is pending; None otherwise."""
        state = self.followers.get(replica_id)
        if (
            not self.is_leader
            or self.pending_isr is not None
            or state is None
            or replica_id in self.isr
        ):
            return None
        end = state.log_end_offset
        if end < self.high_watermark or end < self.leader_epoch_start_offset:
            return None
        return [*self.isr, replica_id]

    def isr_changed(self, isr: list[int], partition_epoch: int) -> None:
        """The controller wrote ``isr`` (at znode version ``partition_epoch``):
        it is this leader's ISR from now on; the high watermark may move."""
        self.isr = list(isr)
        self.partition_epoch = partition_epoch
        self.pending_isr = None
        if self._advance_high_watermark() and self.on_append is not None:
            self.on_append(self)

    def _maximal_isr(self) -> list[int]:
        """The ISR the high watermark waits for: with a pending change, the
        larger of the two (Kafka's maximalIsr), so that a shrink not yet
        written cannot commit what only the remaining members have, nor an
        expansion be counted before it is."""
        if self.pending_isr is None:
            return self.isr
        return self.isr + [r for r in self.pending_isr if r not in self.isr]

    # -- leader: followers and the high watermark ------------------------------

    def update_follower_fetch(
        self, replica_id: int, fetch_offset: int, leader_end: int, now_ms: int
    ) -> bool:
        """A follower fetched from ``fetch_offset`` while this log ended at
        ``leader_end``: record its log end, and move the high watermark
        (waking whoever waits on it). Whether the high watermark moved; a
        replica that is not a follower here changes nothing."""
        state = self.followers.get(replica_id)
        if state is None or not self.is_leader:
            return False
        state.record_fetch(fetch_offset, leader_end, now_ms)
        moved = self._advance_high_watermark()
        if moved and self.on_append is not None:
            self.on_append(self)
        return moved

    def check_replicated(self, last_offset: int, epoch: int, min_insync: int) -> ErrorCode | None:
        """Where an acks=all write of ``last_offset``, appended at leader
        ``epoch``, stands (Kafka's checkEnoughReplicasReachOffset): None while
        the high watermark is not past it; NONE once it is;
        NOT_ENOUGH_REPLICAS_AFTER_APPEND if it is but the ISR shrank below
        ``min_insync`` meanwhile; NOT_LEADER_OR_FOLLOWER if this replica no
        longer leads, or its log no longer holds the write (a truncation
        while it followed replaced it); KAFKA_STORAGE_ERROR if its storage
        failed."""
        if self.offline:
            return ErrorCode.KAFKA_STORAGE_ERROR
        if not self.is_leader:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if self.high_watermark <= last_offset:
            return None
        if self.log.leader_epochs.epoch_for_offset(last_offset) != epoch:
            return ErrorCode.NOT_LEADER_OR_FOLLOWER
        if len(self.isr) < min_insync:
            return ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
        return ErrorCode.NONE

    # -- follower ----------------------------------------------------------------

    def append_as_follower(self, records: bytes | memoryview) -> AppendResult:
        """Append the leader's batches byte for byte (offsets, epochs and
        timestamps as the leader wrote them).

        An empty log that starts inside the first batch (it restarted at the
        leader's log start, which DeleteRecords put mid-batch) starts again
        at that batch's base offset instead, as Kafka's follower append does."""
        if self.is_leader:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER, "this replica leads")
        try:
            return self.log.append_as_follower(records)
        except UnexpectedAppendOffsetError:
            end = self.log.log_end_offset
            first = next(iter_batches(records, allow_partial_tail=True), None)
            if end != self.log.log_start_offset or first is None:
                raise
            header = first[0]
            if not header.base_offset < end <= header.last_offset:
                raise
            logger.info(
                "%s-%d: the first batch fetched starts at %d, below the log start %d: "
                "starting the log there",
                self.topic,
                self.index,
                header.base_offset,
                end,
            )
            self.log.truncate_fully_and_start_at(header.base_offset)
            return self.log.append_as_follower(records)

    def follow_leader_offsets(self, leader_high_watermark: int, leader_log_start: int) -> None:
        """Take the leader's high watermark and log start offset as far as
        this log reaches (a follower's high watermark is min(its log end,
        the leader's), as in Kafka)."""
        if self.is_leader:
            return
        self.log.high_watermark = max(
            self.log.log_start_offset, min(leader_high_watermark, self.log.log_end_offset)
        )
        start = min(leader_log_start, self.log.high_watermark)
        if start > self.log.log_start_offset:
            self.log.delete_records_before(start)

    def truncate_to(self, offset: int) -> None:
        """Remove everything from ``offset`` on (where this log left the leader's)."""
        self.log.truncate_to(offset)

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Empty the log and start it at ``offset`` (the leader's log start,
        past this log's end: this replica fell behind the leader's retention)."""
        self.log.truncate_fully_and_start_at(offset)

    def append_as_leader(self, records: bytes | memoryview) -> AppendResult:
        """Append a producer's batches; raises KafkaError if not leader or invalid."""
        if not self.is_leader:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        result = self.log.append(records, leader_epoch=self.leader_epoch)
        self._advance_high_watermark()
        if self.on_append is not None:
            self.on_append(self)
        return result

    def append_control(
        self, producer_id: int, producer_epoch: int, commit: bool, coordinator_epoch: int
    ) -> AppendResult:
        """Write a transaction marker as leader (WriteTxnMarkers); wakes the
        waiting fetches like any append (the last stable offset may move)."""
        if not self.is_leader:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        result = self.log.append_control(
            producer_id, producer_epoch, commit, coordinator_epoch, self.leader_epoch
        )
        self._advance_high_watermark()
        if self.on_append is not None:
            self.on_append(self)
        return result

    @property
    def last_stable_offset(self) -> int:
        """How far read_committed consumers may read (Kafka's LSO): the high
        watermark, or the start of the oldest unfinished transaction below it.
        It moves only with an append (a marker) or a high-watermark move, both
        of which call ``on_append``: a read_committed fetch waiting in the
        purgatory is woken by them."""
        return self.log.last_stable_offset(self.log.high_watermark)

    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        committed_only: bool,
        min_one_batch: bool = True,
        read_committed: bool = False,
    ) -> ReadResult:
        """Read from ``offset``: consumers up to the high watermark (the last
        stable offset for ``read_committed`` ones), followers to the end."""
        if read_committed:
            limit: int | None = self.last_stable_offset
        else:
            limit = self.high_watermark if committed_only else None
        return self.log.read(offset, max_bytes, max_offset=limit, min_one_batch=min_one_batch)

    def _advance_high_watermark(self) -> bool:
        """The smallest log end offset in the ISR, if above the current
        high watermark (it never moves back on a leader); whether it moved."""
        if not self.is_leader:
            return False
        candidates = [self.log.log_end_offset]
        for replica in self._maximal_isr():
            if replica != self.broker_id and replica in self.followers:
                candidates.append(self.followers[replica].log_end_offset)
        new_high_watermark = min(candidates)
        if new_high_watermark > self.log.high_watermark:
            # The log keeps it, and checkpoints it for restarts.
            self.log.high_watermark = new_high_watermark
            return True
        return False
