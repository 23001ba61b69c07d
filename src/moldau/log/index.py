"""Sparse offset and time indexes of one segment, in Kafka's file layout.

``.index``: 8-byte entries (offset relative to the segment base int32, file
position int32). ``.timeindex``: 12-byte entries (timestamp int64, relative
offset int32). Both big endian, sorted, one entry every
``index.interval.bytes`` of log.

An index can always be rebuilt from its log segment, so it is written
lazily: new entries collect in memory and reach the file on flush (or when
enough pile up). A crash can therefore leave an index shorter than its
segment, which only makes lookups scan a little further; recovery rebuilds
the indexes of every segment it scans anyway.

Entries are kept in memory for binary search and loaded from the file on
first use, so a broker with many idle segments does not read every index at
startup.
"""

from __future__ import annotations

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
    """Sorted ``(key, value)`` entries; keys are what lookups search."""

    entry: ClassVar[struct.Struct]

    def __init__(self, path: str, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._keys: array[int] | None = None  # None until loaded
        self._values: array[int] = array("q")
        self._pending = bytearray()
        self._discarded = False

    # -- file ---------------------------------------------------------------

    def _encode(self, key: int, value: int) -> bytes:
        raise NotImplementedError

    def _decode(self, raw: tuple[int, ...]) -> tuple[int, int]:
        raise NotImplementedError

    def _loaded(self) -> array[int]:
        """The keys, loading the file on first use.

        Entries stop at the first one out of order (a zero-filled tail, as
        Kafka's preallocated files have, or damage) and the file is cut
        there: a shorter index is still correct, lookups just scan further.
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
            if len(keys) * self.entry.size != len(data):
                log.warning("%s: keeping the first %d entries", self.path, len(keys))
                os.truncate(self.path, len(keys) * self.entry.size)
            self._keys, self._values = keys, values
        return self._keys

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
        self._keys, self._values = array("q"), array("q")
        self._pending.clear()
        with open(self.path, "wb"):
            pass

    def _append(self, key: int, value: int) -> None:
        """Add an entry past the last one; others are already covered (a
        replay of batches the index has seen)."""
        keys = self._loaded()
        if keys and key <= keys[-1]:
            return
        keys.append(key)
        self._values.append(value)
        self._pending += self._encode(key, value)
        if len(self._pending) >= _PENDING_LIMIT:
            self.write_pending()

    def write_pending(self, *, fsync: bool = False) -> None:
        """Put collected entries into the file (and on disk with ``fsync``)."""
        if self._discarded or (not self._pending and not fsync):
            return
        fd = fileops.open_fd(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fileops.pwrite(fd, self._pending, os.fstat(fd).st_size)
            if fsync:
                fileops.fsync(fd)
        finally:
            os.close(fd)
        self._pending.clear()

    def discard(self) -> None:
        """Stop writing the file: the segment is being deleted."""
        self._discarded = True
        self._pending.clear()

    def _truncate_keys(self, key: int) -> None:
        """Remove entries with key >= ``key`` and rewrite the file."""
        keys = self._loaded()
        keep = bisect_right(keys, key - 1)
        if keep == len(keys):
            return
        del keys[keep:]
        del self._values[keep:]
        self._pending.clear()
        with open(self.path, "wb") as f:
            f.write(b"".join(self._encode(k, v) for k, v in zip(keys, self._values, strict=True)))

    def _floor(self, key: int) -> int:
        """Index of the last entry with key <= ``key``, or -1."""
        return bisect_right(self._loaded(), key) - 1

    def __len__(self) -> int:
        return len(self._loaded())


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

    def append(self, offset: int, position: int) -> None:
        self._append(offset, position)

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

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add an entry if ``timestamp`` is newer than the last one."""
        self._append(timestamp, offset)

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
