"""One log segment: a ``.log`` file of batches plus its indexes.

The offset and time indexes always exist; the aborted-transaction index
(``txn_index.py``) only once the segment holds an ABORT marker.

Files are named by the segment's base offset, zero-padded to 20 digits, as
Kafka names them. The log file is written with ``pwritev`` at the
segment's end as this process counts it (not ``O_APPEND``: bytes a failed
write left past that end are overwritten, never followed); reads use
``pread`` and never move a file position, so the open file object can be
shared with ``FileSlice``s being sent by the network layer.

An append is all-or-nothing: index entries waiting for the file are written
before the data, the data write is the append's last I/O (the end, the
timestamps and the index entries are then updated in memory), and a failed
data write is cut back off the file. When the cut fails too the segment
raises ``LogDamagedError`` and its partition goes offline.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from moldau.log import fileops
from moldau.log.errors import LogDamagedError
from moldau.log.index import CorruptIndexError, OffsetIndex, TimeIndex
from moldau.log.txn_index import TXN_INDEX_SUFFIX, TransactionIndex
from moldau.protocol.batch import (
    HEADER_SIZE,
    OFFSET_RANGE_SIZE,
    BatchHeader,
    CorruptRecordError,
    RecordBatchError,
    read_header,
    read_offset_range,
    validate,
)

__all__ = ["LOG_SUFFIX", "LogSegment", "TrackedBatch", "segment_base_offset", "segment_file_name"]

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
SWAP_SUFFIX = ".swap"
INT32_MAX = (1 << 31) - 1
_SCAN_CHUNK = 1 << 20
_IOV_MAX = 1024


def segment_file_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


def segment_base_offset(file_name: str) -> int | None:
    """The base offset a segment file is named after, or None if it is not one."""
    stem, dot, _ = file_name.partition(".")
    return int(stem) if dot and len(stem) == 20 and stem.isdigit() else None


class TrackedBatch(NamedTuple):
    """What the segment keeps of a batch it stores: enough for its indexes."""

    last_offset: int
    max_timestamp: int
    size: int


class LogSegment:
    """Batches with offsets from ``base_offset`` up to the next segment's.

    ``size`` and ``next_offset`` are the segment's end as far as this process
    knows; reads never go past ``size``.
    """

    def __init__(self, directory: str, base_offset: int, created_ms: int, suffix: str = "") -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.created_ms = created_ms
        self.suffix = suffix
        self.path = self._sibling(LOG_SUFFIX)
        fd = _open_log_file(self.path)
        self.file = open(fd, "r+b", buffering=0, closefd=True)  # noqa: SIM115 - lives with the segment
        self._fd = fd
        self.offset_index = OffsetIndex(self._sibling(INDEX_SUFFIX), base_offset)
        self.time_index = TimeIndex(self._sibling(TIME_INDEX_SUFFIX), base_offset)
        self.txn_index = TransactionIndex(self._sibling(TXN_INDEX_SUFFIX))
        self.size = os.fstat(self._fd).st_size
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self._first_batch_timestamp: int | None = None
        self._bytes_since_index_entry = 0
        self._dirty = False
        #: Work on the indexes due before the next append: load them (the
        #: first append) or write the entries piled up in memory.
        self._index_work = True

    def _sibling(self, kind: str) -> str:
        name = segment_file_name(self.base_offset, kind) + self.suffix
        return os.path.join(self.directory, name)

    @classmethod
    def create(cls, directory: str, base_offset: int, now_ms: int, suffix: str = "") -> LogSegment:
        """A new, empty segment (an existing empty file at that offset is reused).

        A ``suffix`` (``.cleaned``, ``.swap``) names a segment being built by
        the cleaner beside the live one with the same base offset."""
        segment = cls(directory, base_offset, now_ms, suffix)
        if segment.size:
            segment.file.close()
            raise FileExistsError(f"{segment.path} exists and is not empty")
        try:
            segment.offset_index.reset()
            segment.time_index.reset()
            segment.txn_index.reset()
        except OSError:
            segment.file.close()
            with contextlib.suppress(OSError):
                segment.delete()
            raise
        return segment

    # -- appending -----------------------------------------------------------

    def append(
        self,
        buffers: Sequence[bytes | bytearray | memoryview],
        batches: Sequence[TrackedBatch],
        interval: int,
        total: int | None = None,
    ) -> None:
        """Write ``buffers`` (whole batches, concatenated, ``total`` bytes if
        the caller knows) and index ``batches``.

        Raises ``OSError`` with the segment as it was (a partial write is cut
        back off the file), or ``LogDamagedError`` if the cut failed.
        """
        if self._index_work:
            self._tend_indexes()
        if total is None:
            total = sum(batch.size for batch in batches)
        start = self.size
        try:
            _write_all(self._fd, buffers, total, start)
        except OSError:
            self._cut_back(start)
            raise
        self._dirty = True
        position = start
        for batch in batches:
            self._track(position, batch, interval)
            position += batch.size

    def _tend_indexes(self) -> None:
        """Load the indexes (so that tracking a batch reads no file) and
        write their pending entries; a failed index write only waits."""
        self.offset_index.ensure_loaded()
        self.time_index.ensure_loaded()
        written = self.offset_index.write_pending()
        self._index_work = not (self.time_index.write_pending() and written)

    def _cut_back(self, start: int) -> None:
        """Remove what a failed write left past ``start``."""
        try:
            if os.fstat(self._fd).st_size != start:
                fileops.ftruncate(self._fd, start)
        except OSError as exc:
            raise LogDamagedError(self.path, exc) from exc

    def _track(self, position: int, batch: TrackedBatch, interval: int) -> None:
        """Account for a batch stored at ``position``: end, timestamps, indexes.
        No I/O (the indexes were loaded before the data was written)."""
        if batch.max_timestamp > self.max_timestamp:
            self.max_timestamp = batch.max_timestamp
            self.offset_of_max_timestamp = batch.last_offset
        if self._bytes_since_index_entry > interval:
            if self.offset_index.append(batch.last_offset, position):
                self._index_work = True
            if self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp):
                self._index_work = True
            self._bytes_since_index_entry = 0
        self._bytes_since_index_entry += batch.size
        if self._first_batch_timestamp is None and position == 0:
            self._first_batch_timestamp = batch.max_timestamp
        self.next_offset = batch.last_offset + 1
        self.size = position + batch.size

    def index_full(self, max_index_bytes: int) -> bool:
        """Whether an index reached ``segment.index.bytes``: Kafka rolls then."""
        return (
            len(self.offset_index) * self.offset_index.entry.size >= max_index_bytes
            or len(self.time_index) * self.time_index.entry.size >= max_index_bytes
        )

    def rolling_timestamp(self) -> int | None:
        """Max timestamp of the first batch: Kafka measures segment.ms from it."""
        if self._first_batch_timestamp is None and self.size:
            self._first_batch_timestamp = self.header_at(0).max_timestamp
        return self._first_batch_timestamp

    def largest_timestamp(self) -> int:
        """What time retention judges the segment by: its largest record
        timestamp, or the file's modification time when no record has one."""
        if self.max_timestamp >= 0:
            return self.max_timestamp
        return os.fstat(self._fd).st_mtime_ns // 1_000_000

    # -- reading -------------------------------------------------------------

    def batch_at(self, position: int) -> tuple[int, int, int]:
        """``(base_offset, size, last_offset)`` of the batch at ``position``."""
        raw = os.pread(self._fd, OFFSET_RANGE_SIZE, position)
        if len(raw) < OFFSET_RANGE_SIZE:
            raise CorruptRecordError(f"{self.path}: no batch at position {position}")
        return read_offset_range(raw)

    def header_at(self, position: int) -> BatchHeader:
        return read_header(os.pread(self._fd, HEADER_SIZE, position))

    def read_batch(self, position: int, size: int) -> bytes:
        return os.pread(self._fd, size, position)

    def translate_offset(self, offset: int, start: int = 0) -> int | None:
        """Position of the first batch at or after ``start`` whose last offset
        is >= ``offset`` (the batch holding it, or the next one after a gap);
        None if the segment has none."""
        position = max(self.offset_index.lookup(offset), start)
        while position < self.size:
            _, size, last = self.batch_at(position)
            if last >= offset:
                return position
            position += size
        return None

    def last_boundary(self, start: int, limit: int) -> int:
        """The furthest batch end reachable from ``start`` without passing
        ``limit`` (``start`` itself if the first batch does not fit)."""
        position = max(self.offset_index.lookup_position(limit), start)
        while position < self.size:
            _, size, _ = self.batch_at(position)
            if position + size > limit:
                break
            position += size
        return position

    def batches_reaching(
        self, timestamp: int, min_offset: int
    ) -> Iterator[tuple[int, BatchHeader]]:
        """Position and header of each batch with maxTimestamp >= ``timestamp``
        holding offsets >= ``min_offset``, starting where the time index says."""
        position = self.translate_offset(max(self.time_index.lookup(timestamp), min_offset))
        while position is not None and position < self.size:
            header = self.header_at(position)
            if header.max_timestamp >= timestamp and header.last_offset >= min_offset:
                yield position, header
            position += header.size

    # -- recovery ------------------------------------------------------------

    def recover(self, interval: int) -> int:
        """Rescan the whole file, checking every batch; cut it at the first
        torn or corrupt batch and rebuild both indexes. Returns bytes cut."""
        file_size = os.fstat(self._fd).st_size
        self.offset_index.reset()
        self.time_index.reset()
        self._reset_state()
        self._replay(0, file_size, interval)
        self.offset_index.write_pending()
        self.time_index.write_pending()
        self.txn_index.truncate_to(self.next_offset)
        cut = file_size - self.size
        if cut:
            fileops.ftruncate(self._fd, self.size)
            self._dirty = True
        return cut

    def load(self, interval: int) -> bool:
        """Restore the end state of a segment whose indexes are trusted, by
        scanning only what follows the last index entry. False when the
        indexes or that tail are inconsistent: the caller then recovers."""
        file_size = os.fstat(self._fd).st_size
        try:
            last_index = self.offset_index.last_entry()
            last_time = self.time_index.last_entry()
        except (CorruptIndexError, OSError):
            return False
        self._reset_state()
        if last_index is not None:
            last_offset, self.size = last_index
            if self.size >= file_size or last_offset < self.base_offset:
                return False
        if last_time is not None:
            self.max_timestamp, self.offset_of_max_timestamp = last_time
        self._replay(self.size, file_size, interval)
        loaded = self.size == file_size and (
            last_time is None or self.base_offset <= last_time[1] < self.next_offset
        )
        if loaded:
            self.txn_index.truncate_to(self.next_offset)
        return loaded

    def _reset_state(self) -> None:
        self.size = 0
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = self.base_offset
        self._first_batch_timestamp = None
        self._bytes_since_index_entry = 0

    def _replay(self, start: int, end: int, interval: int) -> None:
        """Track the valid batches in ``[start, end)``; stops at the first bad one."""
        expected = self.base_offset
        try:
            for position, header in _iter_file_batches(self._fd, start, end):
                last = header.last_offset
                if (
                    header.base_offset < expected
                    or last < header.base_offset
                    or last - self.base_offset > INT32_MAX
                ):
                    break
                self._track(
                    position, TrackedBatch(last, header.max_timestamp, header.size), interval
                )
                expected = last + 1
        except RecordBatchError:
            pass

    # -- truncation, flush, lifecycle ----------------------------------------

    def truncate_to(self, offset: int, interval: int) -> None:
        """Drop the batch holding ``offset`` and everything after it."""
        position = self.translate_offset(offset)
        if position is None:
            return
        fileops.ftruncate(self._fd, position)
        self._dirty = True
        self.offset_index.truncate_to(offset)
        self.time_index.truncate_to(offset)
        self.txn_index.truncate_to(offset)
        if not self.load(interval):
            self.recover(interval)

    def flush(self) -> None:
        """Make everything appended so far durable, then the indexes (whose
        failure costs nothing: see ``index.py``).

        Raises ``LogDamagedError`` if the fsync fails (the kernel may have
        dropped the pages it could not write, and a later fsync would not
        say so) or the file was removed from under the broker.
        """
        dirty = self._dirty
        try:
            if self.removed():
                raise OSError(errno.ENOENT, "removed while the broker had it open")
            if dirty:
                fileops.fsync(self._fd)
        except OSError as exc:
            raise LogDamagedError(self.path, exc) from exc
        self._dirty = False
        self.offset_index.write_pending(fsync=dirty)
        self.time_index.write_pending(fsync=dirty)
        try:
            self.txn_index.flush()
        except OSError as exc:
            raise LogDamagedError(self.txn_index.path, exc) from exc

    def removed(self) -> bool:
        """Whether the log file was unlinked while open (by hand: the broker
        renames before it deletes)."""
        return os.fstat(self._fd).st_nlink == 0

    def close(self, *, write_indexes: bool = True) -> None:
        """Close the file, after writing the pending index entries unless
        the partition is offline (its files are then left to recovery)."""
        if write_indexes:
            self.offset_index.write_pending()
            self.time_index.write_pending()
        self.txn_index.close()
        self.file.close()

    def rename(self, suffix: str) -> None:
        """Give the files a new suffix (indexes first, the log last: the
        log file's name is what recovery goes by). Open files stay valid."""
        old = [self.offset_index.path, self.time_index.path, self.path]
        self.suffix = suffix
        self.txn_index.rename(self._sibling(TXN_INDEX_SUFFIX))
        self.path = self._sibling(LOG_SUFFIX)
        self.offset_index.path = self._sibling(INDEX_SUFFIX)
        self.time_index.path = self._sibling(TIME_INDEX_SUFFIX)
        for source, target in zip(
            old, [self.offset_index.path, self.time_index.path, self.path], strict=True
        ):
            fileops.replace(source, target)

    def iter_batches(self, position: int = 0) -> Iterator[tuple[int, BatchHeader, memoryview]]:
        """``(position, header, bytes)`` of each batch from ``position`` to the
        end, read in large chunks. No CRC check: the segment was checked when
        written or recovered."""
        buf = memoryview(b"")
        buf_start = position
        while position < self.size:
            offset = position - buf_start
            if len(buf) - offset < HEADER_SIZE:
                buf, buf_start, offset = self._chunk(position, HEADER_SIZE), position, 0
            header = read_header(buf, offset)
            if len(buf) - offset < header.size:
                buf, buf_start, offset = self._chunk(position, header.size), position, 0
            yield position, header, buf[offset : offset + header.size]
            position += header.size

    def _chunk(self, position: int, at_least: int) -> memoryview:
        length = min(max(_SCAN_CHUNK, at_least), self.size - position)
        data = os.pread(self._fd, length, position)
        if len(data) < at_least:
            raise CorruptRecordError(f"{self.path}: batch at {position} runs past the end")
        return memoryview(data)

    def delete(self) -> None:
        """Remove the files. The open file object is left to the garbage
        collector so that slices still being sent stay readable."""
        self.offset_index.discard()
        self.time_index.discard()
        self.txn_index.delete()
        for path in (self.path, self.offset_index.path, self.time_index.path):
            with contextlib.suppress(FileNotFoundError):
                fileops.unlink(path)

    def __repr__(self) -> str:
        return f"LogSegment({self.path!r}, size={self.size}, next_offset={self.next_offset})"


def _open_log_file(path: str) -> int:
    """The segment's file, for reading and writing; for reading only on a
    read-only file system, so that a broker started there still serves
    reads (its appends then fail and are refused)."""
    try:
        return fileops.open_fd(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
        return os.open(path, os.O_RDONLY)


def _write_all(
    fd: int, buffers: Sequence[bytes | bytearray | memoryview], total: int, position: int
) -> None:
    """pwritev the ``total`` bytes of ``buffers`` at ``position``, resuming
    after short writes (rare for regular files, but allowed)."""
    views = list(buffers)
    i = 0
    while True:
        written = fileops.pwritev(fd, views[i : i + _IOV_MAX], position)
        position += written
        total -= written
        if total <= 0:
            return
        if not written:
            raise OSError(f"writev wrote nothing, {total} bytes left")
        while written >= len(views[i]):
            written -= len(views[i])
            i += 1
        if written:
            views[i] = memoryview(views[i])[written:]


def _iter_file_batches(fd: int, start: int, end: int) -> Iterator[tuple[int, BatchHeader]]:
    """``(position, header)`` of each batch in ``[start, end)`` of a file,
    CRC-checked, reading in large chunks. Raises ``RecordBatchError`` at the
    first torn or corrupt batch."""
    buf = b""
    buf_start = start
    position = start
    while position < end:
        offset = position - buf_start
        if len(buf) - offset < HEADER_SIZE:
            buf, buf_start, offset = (
                os.pread(fd, min(_SCAN_CHUNK, end - position), position),
                position,
                0,
            )
        header = read_header(buf, offset)
        if header.size > end - position:
            raise CorruptRecordError(f"batch at {position} runs past the end of the segment")
        if len(buf) - offset < header.size:
            length = max(min(_SCAN_CHUNK, end - position), header.size)
            buf, buf_start, offset = os.pread(fd, length, position), position, 0
        validate(header, memoryview(buf)[offset : offset + header.size], from_client=False)
        yield position, header
        position += header.size
