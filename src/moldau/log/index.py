"""Sparse offset and time indexes of one segment, in Kafka's file layout.

``.index``: 8-byte entries (offset relative to the segment base int32, file
position int32). ``.timeindex``: 12-byte entries (timestamp int64, relative
offset int32). Both big endian, sorted, one entry every
``index.interval.bytes`` of log.

An index can always be rebuilt from its log segment, so it is written
lazily: new entries collect in memory and reach the file on flush (or, when
enough pile up, before the segment's next append, never after its data
write). A crash can therefore leave an index shorter than its segment, which
only makes lookups scan a little further; recovery rebuilds the indexes of
every segment it scans anyway. For the same reason a failed index write
(a full disk) fails nothing: the entries wait in memory for the next try.

Entries are kept in memory for binary search and loaded from the file on
first use, so a broker with many idle segments does not read every index at
startup.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
from array import array
from bisect import bisect_right
from typing import ClassVar

from moldau.log import fileops

log = logging.getLogger(__name__)

__all__ = ["CorruptIndexError", "OffsetIndex", "TimeIndex"]

_PENDING_LIMIT = 64 * 1024


class CorruptIndexError(Exception):
    """The index file cannot belong to its segment; rebuild it."""


class _SparseIndex:
    """Sorted ``(key, value)`` entries; keys are what lookups search.

    The file holds the first ``_written`` bytes of the entries; the rest are
    ``_pending`` in memory. Writing them can fail (a full disk) without any
    harm: the file is cut back to what it held, the entries stay pending and
    the next flush tries again, so a failed index write never fails an append.
    """

    entry: ClassVar[struct.Struct]

    def __init__(self, path: str, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._keys: array[int] | None = None  # None until loaded
        self._values: array[int] = array("q")
        self._pending = bytearray()
        self._written = 0
        self._discarded = False
        self._failing = False

    # -- file ---------------------------------------------------------------

    def _encode(self, key: int, value: int) -> bytes:
        raise NotImplementedError

    def _decode(self, raw: tuple[int, ...]) -> tuple[int, int]:
        raise NotImplementedError

    def _loaded(self) -> array[int]:
        """The keys, loading the file on first use.

        Entries stop at the first one out of order (a zero-filled tail, as
        Kafka's preallocated files have, or damage) and the file is cut
        there (if it cannot be, the next write replaces what follows them).
        A shorter index is still correct: lookups just scan further.
        """
        if self._keys is None:
            keys: array[int] = array("q")
            values: array[int] = array("q")
            try:
                with open(self.path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                data = b""
            whole = len(data) - len(data) % self.entry.size
            for raw in self.entry.iter_unpack(memoryview(data)[:whole]):
                key, value = self._decode(raw)
                if keys and (key <= keys[-1] or value < values[-1]):
                    break
                keys.append(key)
                values.append(value)
            self._written = len(keys) * self.entry.size
            if self._written != len(data):
                log.warning("%s: keeping the first %d entries", self.path, len(keys))
                with contextlib.suppress(OSError):
                    fileops.truncate(self.path, self._written)
            self._keys, self._values = keys, values
        return self._keys

    def ensure_loaded(self) -> None:
        self._loaded()

    def last_entry(self) -> tuple[int, int] | None:
        """The last entry, without loading the index: a cheap check at open."""
        if self._keys is not None:
            return (self._keys[-1], self._values[-1]) if self._keys else None
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size % self.entry.size:
                    raise CorruptIndexError(f"{self.path}: size {size} is not whole entries")
                if size == 0:
                    return None
                raw = os.pread(f.fileno(), self.entry.size, size - self.entry.size)
        except FileNotFoundError as exc:
            raise CorruptIndexError(f"{self.path} is missing") from exc
        return self._decode(self.entry.unpack(raw))

    def reset(self) -> None:
        """Drop every entry, in memory and on disk (before a rebuild)."""
        os.close(fileops.open_fd(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
        self._keys, self._values = array("q"), array("q")
        self._pending.clear()
        self._written = 0

    def _append(self, key: int, value: int) -> bool:
        """Add an entry past the last one; others are already covered (a
        replay of batches the index has seen). True when enough entries are
        pending to be worth writing."""
        keys = self._loaded()
        if keys and key <= keys[-1]:
            return False
        keys.append(key)
        self._values.append(value)
        self._pending += self._encode(key, value)
        return len(self._pending) >= _PENDING_LIMIT

    def write_pending(self, *, fsync: bool = False) -> bool:
        """Put pending entries into the file (and on disk with ``fsync``).

        False, after one warning, if that failed: the entries stay pending.
        If even cutting the file back failed, or the fsync did, the whole
        index is rewritten next time, so no torn or unsynced entry stays.
        """
        if self._discarded or self._keys is None or (not self._pending and not fsync):
            return True
        try:
            fd = fileops.open_fd(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            return self._write_failed(exc)
        try:
            if self._pending:
                end = self._written + len(self._pending)
                _pwrite_all(fd, bytes(self._pending), self._written)
                if os.fstat(fd).st_size > end:
                    fileops.ftruncate(fd, end)
                self._written = end
                self._pending.clear()
        except OSError as exc:
            self._cut_back(fd)
            os.close(fd)
            return self._write_failed(exc)
        try:
            if fsync:
                fileops.fsync(fd)
        except OSError as exc:  # the kernel may have dropped the pages: write them again
            self._rewrite_all()
            return self._write_failed(exc)
        finally:
            os.close(fd)
        if self._failing:
            log.info("%s: written again", self.path)
            self._failing = False
        return True

    def _cut_back(self, fd: int) -> None:
        """After a failed write: cut the file to the entries it held, or
        plan to rewrite them all when even that fails."""
        try:
            fileops.ftruncate(fd, self._written)
        except OSError:
            self._rewrite_all()

    def _rewrite_all(self) -> None:
        self._written = 0
        self._pending = bytearray(
            b"".join(self._encode(k, v) for k, v in zip(self._loaded(), self._values, strict=True))
        )

    def _write_failed(self, exc: OSError) -> bool:
        if not self._failing:
            log.warning("cannot write the index, keeping it in memory: %s", str(exc))
        self._failing = True
        return False

    def discard(self) -> None:
        """Stop writing the file: the segment is being deleted."""
        self._discarded = True
        self._pending.clear()

    def _truncate_keys(self, key: int) -> None:
        """Remove entries with key >= ``key``, from memory and the file."""
        keys = self._loaded()
        keep = bisect_right(keys, key - 1)
        if keep == len(keys):
            return
        del keys[keep:]
        del self._values[keep:]
        size = self.entry.size
        on_file = self._written // size
        if keep > on_file:
            del self._pending[(keep - on_file) * size :]
            return
        self._pending.clear()
        self._written = keep * size
        fd = fileops.open_fd(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fileops.ftruncate(fd, self._written)
        except OSError:
            self._rewrite_all()
            raise
        finally:
            os.close(fd)

    def _floor(self, key: int) -> int:
        """Index of the last entry with key <= ``key``, or -1."""
        return bisect_right(self._loaded(), key) - 1

    def __len__(self) -> int:
        return len(self._loaded())


def _pwrite_all(fd: int, data: bytes, position: int) -> None:
    view = memoryview(data)
    while view:
        written = fileops.pwrite(fd, view, position)
        if not written:
            raise OSError(f"pwrite wrote nothing, {len(view)} bytes left")
        view = view[written:]
        position += written


class OffsetIndex(_SparseIndex):
    """Maps offsets to file positions of batch starts.

    As in Kafka, an entry's offset is the *last* offset of the batch that
    starts at its position, so the entry found for an offset points at or
    before the batch holding it.
    """

    entry = struct.Struct(">ii")

    def _encode(self, key: int, value: int) -> bytes:
        return self.entry.pack(key - self.base_offset, value)

    def _decode(self, raw: tuple[int, ...]) -> tuple[int, int]:
        return raw[0] + self.base_offset, raw[1]

    def append(self, offset: int, position: int) -> bool:
        return self._append(offset, position)

    def lookup(self, offset: int) -> int:
        """A batch-start position at or before the batch holding ``offset``."""
        i = self._floor(offset)
        return self._values[i] if i >= 0 else 0

    def lookup_position(self, position: int) -> int:
        """The greatest indexed batch start <= ``position`` (0 if none)."""
        self._loaded()
        i = bisect_right(self._values, position) - 1
        return self._values[i] if i >= 0 else 0

    def truncate_to(self, offset: int) -> None:
        """Forget entries for offsets >= ``offset``."""
        self._truncate_keys(offset)


class TimeIndex(_SparseIndex):
    """Maps timestamps to offsets: each entry is the largest timestamp seen so
    far in the segment and the last offset of the batch that carried it."""

    entry = struct.Struct(">qi")

    def _encode(self, key: int, value: int) -> bytes:
        return self.entry.pack(key, value - self.base_offset)

    def _decode(self, raw: tuple[int, ...]) -> tuple[int, int]:
        return raw[0], raw[1] + self.base_offset

    def maybe_append(self, timestamp: int, offset: int) -> bool:
        """Add an entry if ``timestamp`` is newer than the last one."""
        return self._append(timestamp, offset)

    def lookup(self, timestamp: int) -> int:
        """An offset at or before the first batch with a timestamp >= ``timestamp``."""
        i = self._floor(timestamp - 1)
        return self._values[i] if i >= 0 else self.base_offset

    def truncate_to(self, offset: int) -> None:
        """Forget entries for offsets >= ``offset``."""
        keys = self._loaded()
        keep = next((i for i, v in enumerate(self._values) if v >= offset), len(keys))
        if keep < len(keys):
            self._truncate_keys(keys[keep])
