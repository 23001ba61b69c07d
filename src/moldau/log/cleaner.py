"""The log cleaner: compaction of ``cleanup.policy=compact`` logs, in small steps.

Design. The broker has one event loop and pure-Python record decoding holds
the GIL, so a cleaner thread would slow produce and fetch as much as running
on the loop. Instead the cleaner is a resumable job driven by the loop:
:meth:`LogCleaner.step` does about ``budget_bytes`` of work and returns, so
the broker interleaves steps with requests (``asyncio.sleep(0)`` between
steps while there is work, ``log.cleaner.backoff.ms`` when there is none).
No lock is needed: the segment list is only ever edited between steps.

One clean of one log, as in Kafka:

1. Choose the log: among compacted logs, one whose dirty section is older
   than ``max.compaction.lag.ms``, else the one with the highest dirty
   ratio (dirty bytes over cleanable bytes) at or above
   ``min.cleanable.dirty.ratio``. The dirty section starts at the offset the
   last clean reached (``cleaner-offset-checkpoint``) and ends before the
   active segment, the high watermark and any segment younger than
   ``min.compaction.lag.ms`` (all at segment boundaries).
2. Map: read the dirty section and note each key's last offset; stop early
   when the map holds ``log.cleaner.dedupe.buffer.size`` worth of keys.
3. Clean: from the first segment up to the end of the map, in groups of
   consecutive segments that fit in one segment, write the kept batches
   (``compaction.py``) to ``<base>.log.cleaned`` with fresh indexes, then
   swap the group for the cleaned segment (``PartitionLog.replace_segments``:
   ``.cleaned`` -> ``.swap``, old files removed, ``.swap`` -> live name;
   recovery completes or discards a swap a crash interrupted).
4. Checkpoint the end of the map as the new start of the dirty section.

Transactions (``compaction.py``): the cleanable section also ends before
the last stable offset, so every transaction it holds has ended; aborted
records are left out of the map and of the cleaned segments, and markers go
once their transactions have no batch left and their delete horizon passed.
Both passes follow the aborted transactions of the ``.txnindex`` files in
offset order (``TxnCleaning``), and the cleaned segment gets a ``.txnindex``
of the ABORT markers it keeps.

A job is abandoned (its ``.cleaned`` files removed) if its log is truncated,
loses segments to retention, is deleted, or stops being compacted while it
runs; the next step starts over.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass

from moldau.log.checkpoint import CLEANER_OFFSET_CHECKPOINT, write_offsets
from moldau.log.compaction import TxnCleaning, clean_batch, clean_marker, keyed_offsets
from moldau.log.config import LogConfig
from moldau.log.control import read_marker
from moldau.log.partition_log import PartitionLog
from moldau.log.segment import (
    INDEX_SUFFIX,
    INT32_MAX,
    LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
    LogSegment,
    TrackedBatch,
    segment_file_name,
)
from moldau.log.txn_index import TXN_INDEX_SUFFIX
from moldau.protocol.batch import BatchHeader, RecordBatchError, read_header

__all__ = ["CleanerConfig", "LogCleaner"]

log = logging.getLogger(__name__)

CLEANED_SUFFIX = ".cleaned"
NEVER = (1 << 63) - 1
_WRITE_CHUNK = 1 << 20
_BYTES_PER_MAP_ENTRY = 128
"""What one key costs in the offset map (a dict of key bytes to offset), to
turn ``log.cleaner.dedupe.buffer.size`` into a number of keys."""

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class CleanerConfig:
    """Broker-wide cleaner settings (``log.cleaner.*``)."""

    enable: bool = True
    backoff_ms: int = 15_000
    dedupe_buffer_size: int = 128 * 1024 * 1024

    @property
    def max_map_entries(self) -> int:
        return max(self.dedupe_buffer_size // _BYTES_PER_MAP_ENTRY, 1)


class LogCleaner:
    """Cleans the compacted logs that ``logs()`` returns, one at a time."""

    def __init__(
        self,
        logs: Callable[[], Iterable[PartitionLog]],
        clock: Callable[[], int],
        config: CleanerConfig | None = None,
    ) -> None:
        self.config = config or CleanerConfig()
        self._logs = logs
        self._clock = clock
        #: First dirty offset per partition, as in ``cleaner-offset-checkpoint``.
        self.checkpoints: dict[TopicPartition, int] = {}
        #: Earliest delete horizon of a tombstone each log kept in its last
        #: clean (NEVER if none). Unknown after a restart: one clean of the
        #: clean section then finds out.
        self._horizons: dict[TopicPartition, int] = {}
        self._job: Generator[int, None, None] | None = None
        self._job_log: PartitionLog | None = None
        self._job_edits = 0
        #: Bytes read by completed and running cleans (for metrics and tests).
        self.bytes_read = 0
        #: Partitions whose clean failed: skipped until the broker restarts.
        self.uncleanable: set[TopicPartition] = set()

    # -- driving -------------------------------------------------------------

    def step(self, budget_bytes: int = 1 << 20) -> bool:
        """Clean about ``budget_bytes`` of log (at least one batch); True if
        there is more to do right away, False when every log is clean enough
        (then wait ``log.cleaner.backoff.ms`` before the next step)."""
        if not self.config.enable:
            return False
        if self._job is not None and not self._job_still_valid():
            self.abort()
        if self._job is None and not self._start():
            return False
        assert self._job is not None
        done = 0
        while done < budget_bytes:  # nothing else runs in between: the log stays as checked
            try:
                done += next(self._job)
            except StopIteration:
                self._job = self._job_log = None
                break
            except Exception as exc:
                # Kafka's answer to a log it cannot clean (corrupt batch, disk
                # full): leave it alone until a restart, keep cleaning others.
                # A corrupt batch is one line; anything else gets its traceback.
                assert self._job_log is not None
                log.error(
                    "cannot clean %s: %s; not trying again until restart",
                    self._job_log,
                    exc,
                    exc_info=not isinstance(exc, RecordBatchError),
                )
                self.uncleanable.add((self._job_log.topic, self._job_log.partition))
                self._job = self._job_log = None
                break
        self.bytes_read += done
        return True

    def run_until_clean(self, budget_bytes: int = 1 << 20) -> None:
        """Step until nothing is left to clean (tests, benchmarks, shutdown)."""
        while self.step(budget_bytes):
            pass

    def abort(self) -> None:
        """Drop the running job, removing its partial output."""
        if self._job is not None:
            self._job.close()
        self._job = self._job_log = None

    def forget(self, partition_log: PartitionLog) -> None:
        """The log is being deleted: stop cleaning it, drop its checkpoint."""
        if self._job_log is partition_log:
            self.abort()
        key = (partition_log.topic, partition_log.partition)
        self.checkpoints.pop(key, None)
        self._horizons.pop(key, None)

    def _job_still_valid(self) -> bool:
        job_log = self._job_log
        return (
            job_log is not None
            and job_log.edits == self._job_edits
            and job_log.config.compact
            and any(p is job_log for p in self._logs())
        )

    def _start(self) -> bool:
        now = self._clock()
        chosen: tuple[bool, float, PartitionLog] | None = None
        for candidate in self._logs():
            key = (candidate.topic, candidate.partition)
            if not candidate.config.compact or key in self.uncleanable:
                continue
            first_dirty = self._first_dirty(candidate)
            end = cleanable_end(candidate, first_dirty, now)
            clean, dirty = _section_sizes(candidate.segments, first_dirty, end)
            overdue = dirty > 0 and _dirty_since(candidate.segments, first_dirty) < (
                now - candidate.config.max_compaction_lag_ms
            )
            ratio = dirty / (clean + dirty) if dirty else 0.0
            eligible = (
                overdue
                or (dirty > 0 and ratio >= candidate.config.min_cleanable_dirty_ratio)
                or (clean > 0 and self._tombstones_due(candidate, now))
            )
            if not eligible:
                continue
            if chosen is None or (overdue, ratio) > chosen[:2]:
                chosen = (overdue, ratio, candidate)
        if chosen is None:
            return False
        target = chosen[2]
        self._job_log = target
        self._job_edits = target.edits
        self._job = self._clean(target, now)
        return True

    def _tombstones_due(self, candidate: PartitionLog, now: int) -> bool:
        horizon = self._horizons.get((candidate.topic, candidate.partition))
        return horizon is None or horizon < now

    def _first_dirty(self, partition_log: PartitionLog) -> int:
        """Where the dirty section starts: the checkpoint, unless the log
        start passed it or the log was truncated below it (then, as Kafka
        does, from the start)."""
        checkpoint = self.checkpoints.get((partition_log.topic, partition_log.partition), 0)
        if checkpoint > partition_log.log_end_offset:
            checkpoint = 0
        return max(checkpoint, partition_log.log_start_offset)

    # -- one clean -----------------------------------------------------------

    def _clean(self, target: PartitionLog, now: int) -> Generator[int, None, None]:
        """The job: map the dirty section, clean group by group, checkpoint.
        Yields the bytes of each batch it reads."""
        first_dirty = self._first_dirty(target)
        end = cleanable_end(target, first_dirty, now)
        latest: dict[bytes, int] = {}
        map_end = first_dirty
        limit = self.config.max_map_entries
        txns = TxnCleaning(target.aborted_txns(first_dirty, end))
        for segment in target.segments:
            if segment.base_offset >= end or len(latest) >= limit:
                break
            if segment.next_offset <= first_dirty:
                continue
            for _, header, raw in segment.iter_batches():
                if header.last_offset < first_dirty:
                    continue
                if header.is_control:
                    txns.on_marker(header, read_marker(header, raw))
                elif not txns.is_aborted(header):
                    latest.update(keyed_offsets(raw, target.config.max_message_bytes))
                map_end = header.next_offset
                yield header.size
                if len(latest) >= limit:
                    break
        horizons = [NEVER]
        clean_end = max(map_end, min(first_dirty, end))
        txns = TxnCleaning(target.aborted_txns(target.segments[0].base_offset, clean_end))
        for group in _groups(target.segments, clean_end, target.config.segment_bytes):
            yield from self._clean_group(target, group, latest, txns, now, horizons)
        key = (target.topic, target.partition)
        self.checkpoints[key] = clean_end
        self._horizons[key] = min(horizons)
        self._write_checkpoint(os.path.dirname(target.directory))
        log.info("cleaned %s up to offset %d", target, map_end)

    def _clean_group(
        self,
        target: PartitionLog,
        group: Sequence[LogSegment],
        latest: dict[bytes, int],
        txns: TxnCleaning,
        now: int,
        horizons: list[int],
    ) -> Generator[int, None, None]:
        """Clean one group into a new segment and swap it in; notes in
        ``horizons`` the delete horizons of the tombstones and markers it keeps."""
        config = target.config
        base = group[0].base_offset
        for suffix in ("", ".swap"):  # leftovers of an abandoned job
            _remove_segment_files(target.directory, base, CLEANED_SUFFIX + suffix)
        cleaned = LogSegment.create(target.directory, base, now, CLEANED_SUFFIX)
        swapped = False
        try:
            buffers: list[bytes | memoryview] = []
            tracked: list[TrackedBatch] = []
            pending = 0
            for segment in group:
                for _, header, raw in segment.iter_batches():
                    kept = self._clean_batch(header, raw, latest, txns, cleaned, config, now)
                    if kept is not None:
                        out_header = header if kept is raw else read_header(kept)
                        if out_header.has_delete_horizon:
                            horizons.append(out_header.base_timestamp)
                        buffers.append(kept)
                        tracked.append(_tracked(out_header, len(kept)))
                        pending += len(kept)
                        if pending >= _WRITE_CHUNK:
                            cleaned.append(buffers, tracked, config.index_interval_bytes)
                            buffers, tracked, pending = [], [], 0
                    yield header.size
            if buffers:
                cleaned.append(buffers, tracked, config.index_interval_bytes)
            target.replace_segments(group, cleaned)
            swapped = True
        finally:
            if not swapped:
                cleaned.close()
                cleaned.delete()

    @staticmethod
    def _clean_batch(
        header: BatchHeader,
        raw: memoryview,
        latest: dict[bytes, int],
        txns: TxnCleaning,
        cleaned: LogSegment,
        config: LogConfig,
        now: int,
    ) -> bytes | memoryview | None:
        """What ``cleaned`` holds of one batch; a kept ABORT marker whose
        transaction still has batches goes to its ``.txnindex``."""
        if header.is_control:
            may_go, entry = txns.on_marker(header, read_marker(header, raw))
            if entry is not None:
                cleaned.txn_index.add(entry)
            return clean_marker(
                header, raw, may_go, now=now, delete_retention_ms=config.delete_retention_ms
            )
        if txns.is_aborted(header):
            return None
        return clean_batch(
            header,
            raw,
            latest,
            now=now,
            delete_retention_ms=config.delete_retention_ms,
            max_message_bytes=config.max_message_bytes,
        )

    def _write_checkpoint(self, log_dir: str) -> None:
        offsets = {
            (p.topic, p.partition): self.checkpoints[(p.topic, p.partition)]
            for p in self._logs()
            if os.path.dirname(p.directory) == log_dir
            and (p.topic, p.partition) in self.checkpoints
        }
        write_offsets(os.path.join(log_dir, CLEANER_OFFSET_CHECKPOINT), offsets)


# -- decisions -----------------------------------------------------------------


def cleanable_end(target: PartitionLog, first_dirty: int, now: int) -> int:
    """The first offset the cleaner may not touch: the active segment, the
    first segment reaching the last stable offset (the high watermark when
    no transaction is open), the first dirty segment
    younger than ``min.compaction.lag.ms`` (whichever comes first)."""
    segments = target.segments
    lag = target.config.min_compaction_lag_ms
    stable = target.last_stable_offset(target.high_watermark)
    for i, segment in enumerate(segments[:-1]):
        if segments[i + 1].base_offset > stable:
            return segment.base_offset
        young = lag > 0 and segment.largest_timestamp() > now - lag
        if young and segment.next_offset > first_dirty:
            return segment.base_offset
    return segments[-1].base_offset


def _section_sizes(segments: Sequence[LogSegment], first_dirty: int, end: int) -> tuple[int, int]:
    """Bytes of the clean section and of the cleanable dirty section."""
    clean = dirty = 0
    for segment in segments:
        if segment.base_offset >= end:
            break
        if segment.next_offset <= first_dirty:
            clean += segment.size
        else:
            dirty += segment.size
    return clean, dirty


def _dirty_since(segments: Sequence[LogSegment], first_dirty: int) -> int:
    """When the oldest dirty data was written: the first dirty segment's first
    timestamp (its creation time when records carry none)."""
    for segment in segments[:-1]:
        if segment.next_offset > first_dirty and segment.size:
            first = segment.rolling_timestamp()
            return first if first is not None and first >= 0 else segment.created_ms
    return 1 << 62


def _groups(segments: Sequence[LogSegment], map_end: int, max_bytes: int) -> list[list[LogSegment]]:
    """Consecutive segments below ``map_end`` (never the active one), grouped
    so that each group fits in one segment by bytes and by int32 offsets."""
    groups: list[list[LogSegment]] = []
    current: list[LogSegment] = []
    size = 0
    for segment in segments[:-1]:
        if segment.base_offset >= map_end:
            break
        fits = (
            current
            and size + segment.size <= max_bytes
            and segment.next_offset - 1 - current[0].base_offset <= INT32_MAX
        )
        if current and not fits:
            groups.append(current)
            current, size = [], 0
        current.append(segment)
        size += segment.size
    if current:
        groups.append(current)
    return groups


def _tracked(header: BatchHeader, size: int) -> TrackedBatch:
    return TrackedBatch(header.last_offset, header.max_timestamp, size)


def _remove_segment_files(directory: str, base: int, suffix: str) -> None:
    for kind in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, segment_file_name(base, kind) + suffix))
