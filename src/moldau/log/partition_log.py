"""One partition's durable log: an ordered list of segments.

Appends go to the last (active) segment. A produce payload is validated
batch by batch (framing, CRC32C, Kafka's rules for client batches, size,
and every record, see ``record_validation.py``) before anything is written,
so a refused payload leaves the log unchanged. Offsets are assigned by
rewriting the 17 bytes in front of each batch's CRC; the records themselves
are handed to ``writev`` as views of the request buffer, never copied.
Batches with a producer id go through the producer state first
(``producer_state.py``): a retry is answered with its original offsets,
out-of-order or fenced batches are refused.

Durability follows Kafka: an append is a ``write`` into the page cache,
which survives the death of the process; ``fsync`` happens on segment roll,
per ``flush.messages`` / ``flush.ms``, and on close. The recovery point is
the offset below which everything is known to be fsynced; recovery after a
crash rescans from there (see ``recovery.py``).

Leader epochs: every batch carries the epoch of the leader that appended it,
and the log keeps Kafka's leader-epoch cache (``leader_epochs.py``): the
offset at which each epoch began, persisted as ``leader-epoch-checkpoint``
in the partition dir. The file is never behind the data: an append whose
epoch is not the file's latest (one int compare per append otherwise)
rewrites it before its data is written, and a truncation that cannot rewrite
it takes the partition offline. So a start needs only to drop entries past
the log end (a crash between the two writes) or below the log start (a start
move whose rewrite failed, harmless); a missing or damaged file is rebuilt
from the batch headers. The entry a new leader adds before it has data
(``assign_leader_epoch``) waits in memory for the next rewrite, so hosting a
new partition costs no extra fsync; a restart forgets it, and the leader
adds it again when it leads again.

Transactions (KIP-98): a transactional batch opens its producer's
transaction, a marker (``append_control`` as leader, or replicated) ends it,
both tracked by the producer state; an ABORT marker also adds the aborted
transaction to the ``.txnindex`` of the segment it lands in
(``txn_index.py``). The last stable offset is min(first unstable offset,
high watermark); ``aborted_transactions`` is Kafka's
``collectAbortedTransactions``. Replay after a restart (from the producer
snapshot) rebuilds the open transactions and the index entries of the
markers it passes, so a kill -9 loses neither.

Segments form a sorted list keyed by base offset, so retention (drop a
prefix) and compaction (swap a run of segments for cleaned ones) are list
edits plus file renames.

Storage errors: an append that fails to write (a full or read-only disk) is
undone (``segment.py``) and refused with KAFKA_STORAGE_ERROR, the log left
exactly as before, so the producer's retry is safe. A failure that cannot be
undone (the cut of a partial write, an fsync, a segment file removed from
under the broker, any error in a truncation or a read) takes the partition
offline: every later call is refused with KAFKA_STORAGE_ERROR, nothing more
is written, and the next start recovers it from its files. Kafka takes the
whole log dir offline on any I/O error; moldau only the partition, and only
when it cannot restore a consistent state.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import uuid
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Concatenate, NamedTuple, ParamSpec, TypeVar

from moldau.log.checkpoint import (
    CorruptCheckpointError,
    fsync_dir,
    read_leader_epochs,
    write_leader_epochs,
)
from moldau.log.config import LONG_MAX, LogConfig
from moldau.log.control import build_marker_batch, read_marker
from moldau.log.errors import (
    InvalidTimestampError,
    KafkaStorageError,
    LogDamagedError,
    OffsetOutOfRangeError,
    RecordBatchTooLargeError,
    UnexpectedAppendOffsetError,
)
from moldau.log.leader_epochs import LeaderEpochCache
from moldau.log.producer_state import ProducerStateManager
from moldau.log.recovery import load_segments
from moldau.log.retention import deletable_prefix
from moldau.log.segment import INT32_MAX, SWAP_SUFFIX, LogSegment, TrackedBatch
from moldau.log.slices import FileSlice
from moldau.log.txn_index import AbortedTxn
from moldau.protocol.batch import (
    CRC_OFFSET,
    BatchHeader,
    MessageTooLargeError,
    iter_batches,
    patch_base_offset,
    patch_leader_epoch,
    read_header,
    stamp_log_append_time,
    unchecked_prefix,
    validate,
)
from moldau.protocol.record_validation import validate_records
from moldau.protocol.records import decode_batch, record_timestamp

__all__ = ["AppendResult", "PartitionLog", "ReadResult"]

log = logging.getLogger(__name__)

Clock = Callable[[], int]
P = ParamSpec("P")
R = TypeVar("R")
#: ``_checkpointed_epoch`` when the file may differ from the cache.
_UNCHECKPOINTED = -2
#: Refused appends of one partition are logged at most this often.
_WARN_INTERVAL_MS = 10_000


def _guarded(
    method: Callable[Concatenate[PartitionLog, P], R],
) -> Callable[Concatenate[PartitionLog, P], R]:
    """Refuse the call while the partition is offline; take it offline on a
    storage error (for reads and truncations: nothing to undo there)."""

    @functools.wraps(method)
    def guarded(self: PartitionLog, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.offline is not None:
            raise self._offline_error()
        try:
            return method(self, *args, **kwargs)
        except (OSError, LogDamagedError) as exc:
            raise self._take_offline(exc) from exc

    return guarded


class AppendResult(NamedTuple):
    base_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless the topic uses LogAppendTime
    record_count: int
    max_timestamp: int
    #: A producer's retry of a batch already written: the offsets are the
    #: original ones and nothing was written this time.
    duplicate: bool = False


class ReadResult(NamedTuple):
    slices: list[FileSlice]
    size: int


_EMPTY_READ = ReadResult([], 0)


class PartitionLog:
    """The log of ``topic``-``partition`` in ``directory``.

    ``config`` may be replaced at any time (topic config changes); it is read
    on every operation. ``high_watermark`` is stored here and nowhere else:
    the replication layer (``replication.Partition``) is the only code that
    advances it and reads it from here; the log only keeps it within the log
    (raised to the log start, lowered by truncation) and checkpoints it.
    """

    def __init__(
        self,
        directory: str,
        topic: str,
        partition: int,
        topic_id: uuid.UUID,
        config: LogConfig,
        clock: Clock,
        segments: list[LogSegment],
        *,
        log_start_offset: int,
        recovery_point: int,
        high_watermark: int,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self.partition = partition
        self.topic_id = topic_id
        self.config = config
        self._clock = clock
        self._segments = segments
        end = self.log_end_offset
        self.log_start_offset = min(max(log_start_offset, segments[0].base_offset), end)
        self.recovery_point = min(recovery_point, end)
        self.high_watermark = min(max(high_watermark, self.log_start_offset), end)
        self._unflushed_messages = 0
        self._last_flush_ms = clock()
        #: Bumped whenever segments lose data (retention, truncation), so a
        #: clean in progress knows its input changed under it.
        self.edits = 0
        self.producer_state = ProducerStateManager(directory)
        #: Why the partition is offline (see the module doc), or None.
        self.offline: str | None = None
        self._last_warning_ms: int | None = None
        #: The latest epoch in ``leader-epoch-checkpoint`` (-2: the file may
        #: differ from the cache), what appends compare their epoch with.
        self._checkpointed_epoch = _UNCHECKPOINTED
        self.leader_epochs = self._load_leader_epochs()
        self._load_producer_state()

    @classmethod
    def open(
        cls,
        directory: str,
        topic: str,
        partition: int,
        topic_id: uuid.UUID,
        config: LogConfig,
        clock: Clock,
        *,
        log_start_offset: int = 0,
        recovery_point: int = 0,
        high_watermark: int = 0,
        clean_shutdown: bool = False,
    ) -> PartitionLog:
        """Open (creating if needed) the log in ``directory``, recovering
        whatever an unclean stop left behind."""
        os.makedirs(directory, exist_ok=True)
        now = clock()
        segments = load_segments(
            directory,
            recovery_point=recovery_point,
            clean_shutdown=clean_shutdown,
            interval=config.index_interval_bytes,
            now_ms=now,
        )
        if not segments:
            segments = [LogSegment.create(directory, log_start_offset, now)]
            fsync_dir(directory)
        return cls(
            directory,
            topic,
            partition,
            topic_id,
            config,
            clock,
            segments,
            log_start_offset=log_start_offset,
            recovery_point=recovery_point,
            high_watermark=high_watermark,
        )

    # -- state ---------------------------------------------------------------

    @property
    def log_end_offset(self) -> int:
        """The offset the next appended record gets."""
        return self._segments[-1].next_offset

    @property
    def size_in_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    @property
    def segments(self) -> tuple[LogSegment, ...]:
        return tuple(self._segments)

    # -- appending -----------------------------------------------------------

    def append(self, records: bytes | memoryview, *, leader_epoch: int = 0) -> AppendResult:
        """Append a producer's batches, assigning offsets from the log end.

        Raises a ``RecordBatchError`` (with the Kafka error code) and writes
        nothing if any batch is refused; ``KafkaStorageError`` if the write
        failed (see the module doc).
        """
        if self.offline is not None:
            raise self._offline_error()
        config = self.config
        batches = list(iter_batches(records))
        total = 0
        now = self._clock()
        append_time = now if config.log_append_time else -1
        check_time = append_time < 0 and (
            config.message_timestamp_before_max_ms < LONG_MAX
            or config.message_timestamp_after_max_ms < LONG_MAX
        )
        compact = config.compact
        idempotent: list[BatchHeader] = []
        for header, batch in batches:
            validate(header, batch)
            if check_time:
                _check_timestamps(header, now, config)
            if header.size > config.max_message_bytes:
                raise MessageTooLargeError(
                    f"batch of {header.size} bytes exceeds max.message.bytes "
                    f"{config.max_message_bytes}"
                )
            validate_records(
                header, batch, max_message_bytes=config.max_message_bytes, require_keys=compact
            )
            if header.producer_id >= 0:
                idempotent.append(header)
            total += header.size
        if total > config.segment_bytes:
            raise RecordBatchTooLargeError(
                f"{total} bytes of batches exceed segment.bytes {config.segment_bytes}"
            )
        if idempotent:
            duplicate = self.producer_state.check(idempotent)
            if duplicate is not None:
                return AppendResult(
                    duplicate.first_offset,
                    duplicate.last_offset,
                    duplicate.timestamp if append_time >= 0 else -1,
                    duplicate.last_offset - duplicate.first_offset + 1,
                    duplicate.timestamp,
                    duplicate=True,
                )
        base_offset = offset = self.log_end_offset
        buffers: list[bytes | bytearray | memoryview] = []
        tracked: list[TrackedBatch] = []
        written: list[tuple[BatchHeader, int]] = []
        max_timestamp = -1
        count = 0
        for header, batch in batches:
            if header.producer_id >= 0:
                written.append((header, offset))
            if append_time >= 0:
                stamped = bytearray(batch)
                patch_base_offset(stamped, 0, offset)
                patch_leader_epoch(stamped, 0, leader_epoch)
                stamp_log_append_time(stamped, 0, append_time)
                buffers.append(stamped)
                batch_timestamp = append_time
            else:
                buffers.append(unchecked_prefix(header, offset, leader_epoch))
                buffers.append(batch[CRC_OFFSET:])
                batch_timestamp = header.max_timestamp
            max_timestamp = max(max_timestamp, batch_timestamp)
            offset += header.last_offset_delta + 1
            tracked.append(TrackedBatch(offset - 1, batch_timestamp, header.size))
            count += header.records_count
        if not tracked:
            return AppendResult(base_offset, base_offset - 1, append_time, 0, -1)
        if leader_epoch != self._checkpointed_epoch:
            self._assign_leader_epochs([(leader_epoch, base_offset)])
        self._write(base_offset, buffers, tracked, total, max_timestamp, now)
        for header, first_offset in written:
            self.producer_state.record(header, first_offset, now)
        self._after_append(count, now)
        return AppendResult(base_offset, offset - 1, append_time, count, max_timestamp)

    def append_as_follower(self, records: bytes | memoryview) -> AppendResult:
        """Append batches replicated from the leader, keeping their offsets,
        leader epochs and timestamps. A partial batch at the end (fetch
        responses may end in one) is ignored."""
        if self.offline is not None:
            raise self._offline_error()
        end = self.log_end_offset
        first_offset = -1
        total = 0
        tracked: list[TrackedBatch] = []
        count = 0
        max_timestamp = -1
        epoch = self._checkpointed_epoch
        new_epochs: list[tuple[int, int]] = []
        for header, batch in iter_batches(records, allow_partial_tail=True):
            validate(header, batch, from_client=False)
            if header.base_offset < end:
                raise UnexpectedAppendOffsetError(
                    f"batch at offset {header.base_offset} does not follow log end {end}"
                )
            if header.partition_leader_epoch != epoch:
                epoch = header.partition_leader_epoch
                new_epochs.append((epoch, header.base_offset))
            if not tracked:
                first_offset = header.base_offset
            end = header.next_offset
            total += header.size
            tracked.append(TrackedBatch(header.last_offset, header.max_timestamp, header.size))
            count += header.records_count
            max_timestamp = max(max_timestamp, header.max_timestamp)
        if not tracked:
            return AppendResult(end, end - 1, -1, 0, -1)
        if new_epochs:
            self._assign_leader_epochs(new_epochs)
        now = self._clock()
        self._write(first_offset, [memoryview(records)[:total]], tracked, total, max_timestamp, now)
        segment = self._segments[-1]
        try:
            for header, batch in iter_batches(memoryview(records)[:total]):
                if header.producer_id >= 0:
                    self._track_producer(header, batch, header.base_offset, now, segment)
        except OSError as exc:  # the data is written: only a restart can index it
            raise self._take_offline(exc) from exc
        self._after_append(count, now)
        return AppendResult(first_offset, end - 1, -1, count, max_timestamp)

    def append_control(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        leader_epoch: int,
    ) -> AppendResult:
        """Write the COMMIT or ABORT marker of ``producer_id``'s transaction
        as leader (WriteTxnMarkers). Refused with INVALID_PRODUCER_EPOCH
        from an epoch older than the producer's, TRANSACTION_COORDINATOR_FENCED
        from an older coordinator epoch, nothing written; a marker with no
        open transaction is written all the same (Kafka does: the coordinator
        may retry one already written). An ABORT adds its transaction to
        the active segment's ``.txnindex``."""
        if self.offline is not None:
            raise self._offline_error()
        self.producer_state.check_marker(producer_id, producer_epoch, coordinator_epoch)
        now = self._clock()
        offset = self.log_end_offset
        batch = build_marker_batch(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            base_offset=offset,
            timestamp=now,
            leader_epoch=leader_epoch,
        )
        if leader_epoch != self._checkpointed_epoch:
            self._assign_leader_epochs([(leader_epoch, offset)])
        tracked = [TrackedBatch(offset, now, len(batch))]
        self._write(offset, [batch], tracked, len(batch), now, now)
        header = read_header(batch)
        try:
            self._track_producer(header, batch, offset, now, self._segments[-1])
        except OSError as exc:
            raise self._take_offline(exc) from exc
        self._after_append(1, now)
        return AppendResult(offset, offset, -1, 1, now)

    def _track_producer(
        self,
        header: BatchHeader,
        batch: bytes | memoryview,
        first_offset: int,
        timestamp: int,
        segment: LogSegment,
    ) -> None:
        """Note a written batch of a producer in the producer state: data, or
        a marker, whose aborted transaction goes to ``segment``'s index.
        Raises ``OSError`` if the index cannot be written."""
        if not header.is_control:
            self.producer_state.record(header, first_offset, timestamp)
            return
        marker = read_marker(header, batch)
        if marker is None:
            return
        completed = self.producer_state.record_marker(
            header.producer_id, header.producer_epoch, marker, first_offset, timestamp
        )
        if completed is not None and completed.aborted:
            segment.txn_index.add(
                AbortedTxn(
                    completed.producer_id,
                    completed.first_offset,
                    completed.last_offset,
                    completed.last_stable_offset,
                )
            )

    # -- transactions ----------------------------------------------------------

    @property
    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest transaction not known to be
        finished everywhere (open, or its marker not below the high
        watermark yet); None if there is none."""
        return self.producer_state.first_unstable_offset(self.high_watermark)

    def last_stable_offset(self, high_watermark: int) -> int:
        """How far read_committed consumers may read: min(first unstable
        offset, ``high_watermark``), never below the log start."""
        first = self.producer_state.first_unstable_offset(high_watermark)
        if first is None:  # the usual case, on every fetch: no transaction
            return high_watermark
        return max(min(first, high_watermark), self.log_start_offset)

    def aborted_transactions(self, start_offset: int, upper_offset: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of the aborted transactions overlapping
        [``start_offset``, ``upper_offset``) (Kafka's collectAbortedTransactions)."""
        return [
            (txn.producer_id, txn.first_offset)
            for txn in self.aborted_txns(start_offset, upper_offset)
        ]

    def aborted_txns(self, start_offset: int, upper_offset: int) -> list[AbortedTxn]:
        """The index entries of the aborted transactions overlapping
        [``start_offset``, ``upper_offset``), from the indexes of the segment
        holding ``start_offset`` on."""
        found: list[AbortedTxn] = []
        for segment in self._segments[self._segment_index(start_offset) :]:
            if segment.txn_index.collect(start_offset, upper_offset, found):
                break
        return found

    @_guarded
    def read_end_offset(self, result: ReadResult) -> int:
        """The offset just after what ``result`` (a read of this log) holds:
        the base offset of the batch that follows its last slice."""
        if not result.slices:
            return -1
        last = result.slices[-1]
        end = last.position + last.length
        for i in range(len(self._segments) - 1, -1, -1):  # reads mostly end near the end
            segment = self._segments[i]
            if segment.file is last.file:
                if end < segment.size:
                    return segment.batch_at(end)[0]
                if i + 1 < len(self._segments):
                    return self._segments[i + 1].base_offset
                return segment.next_offset
        return self.log_end_offset

    def _write(
        self,
        first_offset: int,
        buffers: Sequence[bytes | bytearray | memoryview],
        tracked: list[TrackedBatch],
        total: int,
        max_timestamp: int,
        now: int,
    ) -> None:
        segment = self._segments[-1]
        try:
            if self._should_roll(segment, total, max_timestamp, tracked[-1].last_offset, now):
                segment = self._roll(first_offset, now)
            segment.append(buffers, tracked, self.config.index_interval_bytes, total)
        except OSError as exc:
            raise self._refused(exc) from exc
        except LogDamagedError as exc:
            raise self._take_offline(exc) from exc

    def _should_roll(
        self, segment: LogSegment, size: int, max_timestamp: int, last_offset: int, now: int
    ) -> bool:
        """Kafka's roll rules: the append would overflow segment.bytes, the
        segment is older than segment.ms (measured on record timestamps
        when it has any), an index is full, or offsets would overflow int32."""
        if segment.size == 0:
            return False
        config = self.config
        if segment.size + size > config.segment_bytes:
            return True
        first_timestamp = segment.rolling_timestamp()
        if first_timestamp is not None and first_timestamp >= 0:
            waited = max_timestamp - first_timestamp
        else:
            waited = now - segment.created_ms
        if waited > config.segment_ms:
            return True
        if segment.index_full(config.segment_index_bytes):
            return True
        return last_offset - segment.base_offset > INT32_MAX

    def _roll(self, base_offset: int, now: int) -> LogSegment:
        """Start a new active segment at ``base_offset``; the old one is made
        durable (as Kafka does, asynchronously there) so the recovery point
        can move past it. ``OSError`` leaves the segment list as it was."""
        self.flush()
        self.producer_state.take_snapshot(base_offset)
        segment = LogSegment.create(self.directory, base_offset, now)
        try:
            fsync_dir(self.directory)
        except OSError as exc:
            segment.close(write_indexes=False)
            raise LogDamagedError(self.directory, exc) from exc
        self._segments.append(segment)
        return segment

    # -- storage errors ------------------------------------------------------

    def _refused(self, exc: OSError) -> KafkaStorageError:
        """A write that failed and was undone: the log is as it was."""
        exc = OSError(exc.errno, exc.strerror, exc.filename)  # no traceback holding buffers
        now = self._clock()
        if self._last_warning_ms is None or now - self._last_warning_ms >= _WARN_INTERVAL_MS:
            self._last_warning_ms = now
            log.warning(
                "%s-%d: write refused, log unchanged: %s", self.topic, self.partition, str(exc)
            )
        return KafkaStorageError(f"{self.topic}-{self.partition}: {exc.strerror}, nothing written")

    def _take_offline(self, exc: OSError | LogDamagedError) -> KafkaStorageError:
        """Stop serving: the files may not match memory any more."""
        if self.offline is None:
            self.offline = (
                str(exc) if isinstance(exc, LogDamagedError) else f"{self.directory}: {exc}"
            )
            log.error(
                "%s-%d is offline until the broker restarts: %s",
                self.topic,
                self.partition,
                self.offline,
            )
        return self._offline_error()

    def _offline_error(self) -> KafkaStorageError:
        return KafkaStorageError(f"{self.topic}-{self.partition} is offline: {self.offline}")

    def check_files(self) -> None:
        """Take the partition offline if a segment file was removed from
        under the broker (the periodic check; rolls and flushes check too)."""
        if self.offline is not None:
            return
        try:
            removed = next((s for s in self._segments if s.removed()), None)
        except OSError as exc:
            self._take_offline(exc)
            return
        if removed is not None:
            self._take_offline(LogDamagedError(removed.path, _removed_error()))

    # -- leader epochs -------------------------------------------------------

    def _load_leader_epochs(self) -> LeaderEpochCache:
        """The cache from ``leader-epoch-checkpoint`` fitted to the log, or
        rebuilt from the batch headers if the file is missing or damaged."""
        try:
            saved = read_leader_epochs(self.directory)
        except (CorruptCheckpointError, OSError) as exc:
            log.warning("%s, rebuilding the leader-epoch cache from the log", exc)
            saved = None
            damaged = True
        else:
            damaged = False
        if saved is None:
            cache = LeaderEpochCache()
            for header in self._headers_from(self.log_start_offset):
                cache.assign(header.partition_leader_epoch, header.base_offset)
        else:
            cache = LeaderEpochCache(saved)
        cache.truncate_from_end(self.log_end_offset)
        cache.truncate_from_start(self.log_start_offset)
        if damaged or cache.entries != (saved or []):
            self._save_leader_epochs(cache, quietly=True)
        else:
            self._checkpointed_epoch = cache.latest_epoch
        return cache

    def assign_leader_epoch(self, epoch: int, start_offset: int) -> None:
        """Record that ``epoch`` starts at ``start_offset`` (a new leader does,
        at its log end, before any append, as Kafka's makeLeader: a follower
        that asks about an older epoch must learn where it ended even if the
        new leader writes nothing). In memory until the next rewrite of the
        file (see the module doc); the caller keeps epochs growing."""
        self.leader_epochs.assign(epoch, start_offset)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """(epoch, end offset) of the largest epoch <= ``epoch`` (Kafka's
        ``endOffsetFor``; UNDEFINED (-1, -1) when unknown)."""
        return self.leader_epochs.end_offset_for(epoch, self.log_end_offset)

    def _assign_leader_epochs(self, epochs: Iterable[tuple[int, int]]) -> None:
        """Add new epochs and persist them before the data that carries them
        is written; if that fails the cache is left as it was and the append
        refused (``KafkaStorageError``), the log unchanged."""
        cache = self.leader_epochs
        before = cache.entries
        changed = False
        for epoch, start_offset in epochs:
            changed |= cache.assign(epoch, start_offset)
        if not changed and cache.latest_epoch == self._checkpointed_epoch:
            return
        try:
            self._save_leader_epochs(cache)
        except OSError as exc:
            self.leader_epochs = LeaderEpochCache(before)
            raise self._refused(exc) from exc

    def _save_leader_epochs(self, cache: LeaderEpochCache, *, quietly: bool = False) -> None:
        """Persist ``cache``. Quietly: a failure is only logged (a start move:
        the next start drops entries below the log start anyway), and the
        next append rewrites the file."""
        try:
            write_leader_epochs(self.directory, cache.entries)
        except OSError as exc:
            self._checkpointed_epoch = _UNCHECKPOINTED
            if not quietly:
                raise
            log.warning("%s: cannot write the leader-epoch checkpoint: %s", self.directory, exc)
        else:
            self._checkpointed_epoch = cache.latest_epoch

    def _headers_from(self, start: int) -> Iterator[BatchHeader]:
        """Headers of the batches from the one holding ``start`` on."""
        for segment in self._segments[self._segment_index(start) :]:
            position = segment.translate_offset(start)
            if position is None:
                continue
            for _, header, _ in segment.iter_batches(position):
                yield header

    # -- producer state ------------------------------------------------------

    def _load_producer_state(self) -> None:
        """Load the latest producer snapshot and replay the batch headers
        written after it (see ``producer_state.py``)."""
        start = self.producer_state.load(self.log_end_offset)
        for segment in self._segments[self._segment_index(start) :]:
            position = segment.translate_offset(start)
            if position is None:
                continue
            for _, header, batch in segment.iter_batches(position):
                if header.producer_id >= 0 and header.base_offset >= start:
                    self._track_producer(
                        header, batch, header.base_offset, header.max_timestamp, segment
                    )

    def expire_producers(self, now: int, expiration_ms: int) -> int:
        """Forget producers silent for ``producer.id.expiration.ms``."""
        return self.producer_state.expire(now, expiration_ms)

    def _after_append(self, count: int, now: int) -> None:
        self._unflushed_messages += count
        if self._unflushed_messages >= self.config.flush_interval_messages:
            self.flush()
        else:
            self.flush_if_due(now)

    def flush_if_due(self, now: int | None = None) -> None:
        """Flush if ``flush.ms`` has passed since the last flush."""
        interval = self.config.flush_interval_ms
        if interval is None or self.recovery_point == self.log_end_offset or self.offline:
            return
        if (self._clock() if now is None else now) - self._last_flush_ms >= interval:
            self.flush()

    # -- reading -------------------------------------------------------------

    @_guarded
    def read(
        self,
        offset: int,
        max_bytes: int,
        *,
        max_offset: int | None = None,
        min_one_batch: bool = True,
    ) -> ReadResult:
        """Whole batches from the one holding ``offset`` on, as file slices.

        Stops before ``max_bytes`` (but returns the first batch whole when
        ``min_one_batch``) and before any batch reaching ``max_offset``.
        """
        end_offset = self.log_end_offset
        if offset < self.log_start_offset or offset > end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} outside [{self.log_start_offset}, {end_offset}] "
                f"of {self.topic}-{self.partition}"
            )
        if max_offset is not None:
            end_offset = min(end_offset, max_offset)
        if offset >= end_offset:
            return _EMPTY_READ
        slices: list[FileSlice] = []
        total = 0
        for segment in self._segments[self._segment_index(offset) :]:
            start = segment.translate_offset(offset)
            if start is None:
                continue
            stop = segment.size
            done = False
            if end_offset < segment.next_offset:
                limit = segment.translate_offset(end_offset, start)
                stop, done = (stop if limit is None else limit), True
            if stop - start > max_bytes - total:
                cut = segment.last_boundary(start, start + max_bytes - total)
                if cut == start and min_one_batch and not slices:
                    cut = start + segment.batch_at(start)[1]
                stop, done = min(stop, cut), True
            if stop > start:
                slices.append(FileSlice(segment.file, start, stop - start))
                total += stop - start
            if done:
                break
        return ReadResult(slices, total)

    def _segment_index(self, offset: int) -> int:
        """Index of the last segment with base offset <= ``offset`` (0 if none)."""
        return max(bisect_right(self._segments, offset, key=_base_offset) - 1, 0)

    @_guarded
    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record with a timestamp >=
        ``timestamp`` (ListOffsets by time), or None if there is none.

        The time index finds the first candidate batch; that batch alone is
        read and decoded to find the record.
        """
        start = self.log_start_offset
        for segment in self._segments:
            if segment.max_timestamp < timestamp:
                continue
            for position, header in segment.batches_reaching(timestamp, start):
                raw = segment.read_batch(position, header.size)
                batch_header, records = decode_batch(
                    raw, max_message_bytes=self.config.max_message_bytes
                )
                for record in records:
                    offset = batch_header.base_offset + record.offset_delta
                    record_time = record_timestamp(batch_header, record)
                    if record_time >= timestamp and offset >= start:
                        return offset, record_time
        return None

    @_guarded
    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """``(timestamp, offset)`` of the first record carrying the largest
        timestamp in the log (ListOffsets -3, KIP-734), or None if the log
        holds no record at or past the log start offset.

        Each segment tracks its largest batch timestamp and the batch that
        carried it; only that one batch is decoded, to find the record.
        """
        best: LogSegment | None = None
        for segment in self._segments:
            if segment.next_offset <= self.log_start_offset or segment.size == 0:
                continue
            if best is None or segment.max_timestamp > best.max_timestamp:
                best = segment
        if best is None:
            return None
        position = best.translate_offset(best.offset_of_max_timestamp)
        if position is None:
            return None
        raw = best.read_batch(position, best.header_at(position).size)
        header, records = decode_batch(raw, max_message_bytes=self.config.max_message_bytes)
        for record in records:
            if record_timestamp(header, record) == header.max_timestamp:
                offset = header.base_offset + record.offset_delta
                return header.max_timestamp, max(offset, self.log_start_offset)
        return header.max_timestamp, max(header.last_offset, self.log_start_offset)

    # -- retention -----------------------------------------------------------

    def delete_old_segments(self, now: int | None = None) -> int:
        """Apply retention (time, size and the log start offset, see
        ``retention.py``); returns how many segments were removed. Called by
        the log manager every ``log.retention.check.interval.ms``."""
        if self.offline is not None:
            return 0
        now = self._clock() if now is None else now
        count = deletable_prefix(
            self._segments,
            self.config,
            now=now,
            log_start_offset=self.log_start_offset,
            high_watermark=self.high_watermark,
        )
        if count:
            if count == len(self._segments):
                try:
                    self._roll(self.log_end_offset, now)
                except OSError as exc:
                    raise self._refused(exc) from exc
                except LogDamagedError as exc:
                    raise self._take_offline(exc) from exc
            self._delete_prefix(count)
        return count

    @_guarded
    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: make ``offset`` the log start offset (it may fall
        inside a segment, even inside a batch); reads below it then fail with
        OFFSET_OUT_OF_RANGE. Segments wholly below it are removed at once.
        Returns the new log start offset (the low watermark).

        The broker checks ``offset`` against the high watermark (Kafka answers
        OFFSET_OUT_OF_RANGE past it); the log refuses only offsets past its end.
        """
        if offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"cannot delete records before {offset}: the log ends at {self.log_end_offset}"
            )
        if offset > self.log_start_offset:
            self.log_start_offset = offset
            self._delete_prefix(self._segment_index(offset))
        return self.log_start_offset

    def replace_segments(self, old: Sequence[LogSegment], new: LogSegment) -> None:
        """Swap the consecutive segments ``old`` for ``new``, the cleaned copy
        the cleaner wrote as ``<base>.*.cleaned`` (same base offset as
        ``old[0]``), with the ``.txnindex`` the cleaner wrote for it (the
        entries of the ABORT markers it kept). Raises ``ValueError`` if
        ``old`` is no longer a run of this log's segments before the active
        one.

        Crash safety: the cleaned files are made durable and renamed to
        ``.swap`` (the commit point: recovery completes a swap from there),
        then the old files are removed and the ``.swap`` files take the live
        names. Readers never see a half state: the list is edited at the end,
        in one step, and old files stay open for slices being sent.
        """
        start = next((i for i, s in enumerate(self._segments) if s is old[0]), -1)
        run = self._segments[start : start + len(old)]
        if start < 0 or start + len(old) >= len(self._segments) or run != list(old):
            raise ValueError(f"{self}: segments to replace are not in the log any more")
        if self.offline is not None:
            raise self._offline_error()
        mtime = max(os.stat(segment.path).st_mtime_ns for segment in old)
        try:
            new.flush()
        except LogDamagedError as exc:
            raise OSError(exc.cause.errno, str(exc)) from exc  # the cleaner drops it
        os.utime(new.path, ns=(mtime, mtime))
        new.rename(SWAP_SUFFIX)
        try:
            fsync_dir(self.directory)
            for segment in old:
                segment.delete()
            new.rename("")
            fsync_dir(self.directory)
        except OSError as exc:  # past the commit point: the next start completes the swap
            raise self._take_offline(exc) from exc
        self._segments[start : start + len(old)] = [new]

    def _delete_prefix(self, count: int) -> None:
        """Remove the first ``count`` segments (never all of them).

        The list is cut first and files are unlinked oldest first, so a crash
        half way leaves a contiguous suffix of the log on disk; open slices
        keep the deleted files readable until they are sent.
        """
        doomed = self._segments[:count]
        del self._segments[:count]
        if count:
            self.edits += 1
        self.log_start_offset = max(self.log_start_offset, self._segments[0].base_offset)
        self.recovery_point = max(self.recovery_point, self.log_start_offset)
        self.high_watermark = max(self.high_watermark, self.log_start_offset)
        if self.leader_epochs.truncate_from_start(self.log_start_offset):
            self._save_leader_epochs(self.leader_epochs, quietly=True)
        for segment in doomed:
            try:
                segment.delete()
            except OSError as exc:  # it comes back at the next start, below the log start
                log.warning("%s: cannot remove the segment: %s", segment.path, exc)

    # -- truncation ----------------------------------------------------------

    @_guarded
    def truncate_to(self, offset: int) -> None:
        """Remove every batch holding offsets >= ``offset`` (follower
        truncation to the leader's log). A batch straddling ``offset`` goes too.

        At or past the log end nothing is removed but the leader-epoch
        entries starting there: a replica that led an epoch without writing
        in it has such an entry, and keeping it would make it name that
        epoch, which its new leader never had, in every fetch (Kafka's
        ``UnifiedLog.truncateTo`` does the same)."""
        if offset >= self.log_end_offset:
            if self.leader_epochs.truncate_from_end(self.log_end_offset):
                self._save_leader_epochs(self.leader_epochs)
            return
        if offset <= self._segments[0].base_offset:
            self._truncate_fully_and_start_at(offset)
            return
        self.edits += 1
        keep = self._segment_index(offset)
        if self._segments[keep].base_offset == offset:
            keep -= 1
        for segment in self._segments[keep + 1 :]:
            segment.delete()
        del self._segments[keep + 1 :]
        self._segments[-1].truncate_to(offset, self.config.index_interval_bytes)
        self._clamp_to_end()
        if self.leader_epochs.truncate_from_end(self.log_end_offset):
            self._save_leader_epochs(self.leader_epochs)
        self._load_producer_state()

    @_guarded
    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Empty the log and start it at ``offset`` (a follower whose log
        ended below the leader's log start)."""
        self._truncate_fully_and_start_at(offset)

    def _truncate_fully_and_start_at(self, offset: int) -> None:
        self.edits += 1
        for segment in self._segments:
            segment.delete()
        self._segments = [LogSegment.create(self.directory, offset, self._clock())]
        fsync_dir(self.directory)
        self.producer_state.truncate()
        self.log_start_offset = offset
        self.recovery_point = offset
        self.high_watermark = offset
        if self.leader_epochs.clear():
            self._save_leader_epochs(self.leader_epochs)

    def _clamp_to_end(self) -> None:
        end = self.log_end_offset
        self.recovery_point = min(self.recovery_point, end)
        self.high_watermark = min(self.high_watermark, end)
        self.log_start_offset = min(self.log_start_offset, end)

    # -- durability and lifecycle -------------------------------------------

    def flush(self) -> None:
        """fsync everything past the recovery point and move it to the log end.
        A failure takes the partition offline (``KafkaStorageError``)."""
        if self.offline is not None:
            raise self._offline_error()
        try:
            for segment in self._segments[self._segment_index(self.recovery_point) :]:
                segment.flush()
        except (OSError, LogDamagedError) as exc:
            raise self._take_offline(exc) from exc
        self.recovery_point = self.log_end_offset
        self._unflushed_messages = 0
        self._last_flush_ms = self._clock()

    def close(self) -> None:
        """Snapshot the producer state and close the files (without fsync of
        the log: call :meth:`flush` first for that). Never raises: what cannot
        be written (a snapshot, index entries) is rebuilt at the next start;
        an offline partition writes nothing."""
        online = self.offline is None
        if online:
            try:
                self.producer_state.take_snapshot(self.log_end_offset)
            except OSError as exc:
                log.warning("%s: cannot snapshot the producer state: %s", self.directory, exc)
        for segment in self._segments:
            segment.close(write_indexes=online)

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.topic}-{self.partition}, start={self.log_start_offset}, "
            f"end={self.log_end_offset}, segments={len(self._segments)})"
        )


def _removed_error() -> OSError:
    return OSError(errno.ENOENT, "segment file removed while the broker had it open")


def _base_offset(segment: LogSegment) -> int:
    return segment.base_offset


def _check_timestamps(header: BatchHeader, now: int, config: LogConfig) -> None:
    """Kafka's limits on CreateTime timestamps. Judged on the batch header
    without decoding records: baseTimestamp (the first record's, which
    clients set) against ``message.timestamp.before.max.ms`` and
    maxTimestamp against ``message.timestamp.after.max.ms``; -1 (no
    timestamp) passes, as in Kafka."""
    earliest, latest = header.base_timestamp, header.max_timestamp
    if earliest >= 0 and now - earliest > config.message_timestamp_before_max_ms:
        raise InvalidTimestampError(
            f"timestamp {earliest} is more than message.timestamp.before.max.ms "
            f"{config.message_timestamp_before_max_ms} before the broker time {now}"
        )
    if latest >= 0 and latest - now > config.message_timestamp_after_max_ms:
        raise InvalidTimestampError(
            f"timestamp {latest} is more than message.timestamp.after.max.ms "
            f"{config.message_timestamp_after_max_ms} after the broker time {now}"
        )
