"""The aborted-transaction index of one segment (``<base>.txnindex``).

Kafka's ``TransactionIndex``: one entry per aborted transaction whose ABORT
marker lies in the segment, in marker order, each 34 bytes: version int16
(0), producer id int64, first offset int64, last offset int64 (the
marker's), last stable offset int64 (the first unstable offset once the
transaction ended). A read_committed fetch collects the entries that
overlap what it returns (``PartitionLog.aborted_transactions``) so the
client drops the aborted records.

The file is created on the first entry (most segments never hold an
aborted transaction) and written through ``fileops`` like every log file;
entries live in memory too (a segment has few). It is made durable with its
segment (``flush``). A kill -9 may leave entries for markers recovery cut
off (``truncate_to`` the segment's end drops them) or miss entries whose
markers survived (replay after the producer snapshot adds them again:
:meth:`TransactionIndex.add` ignores an entry it already holds).
"""

from __future__ import annotations

import contextlib
import os
import struct
from typing import NamedTuple

from moldau.log import fileops

__all__ = ["TXN_INDEX_SUFFIX", "AbortedTxn", "TransactionIndex"]

TXN_INDEX_SUFFIX = ".txnindex"
_ENTRY = struct.Struct(">hqqqq")
_VERSION = 0


class AbortedTxn(NamedTuple):
    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int


class TransactionIndex:
    """The entries of one segment's ``.txnindex`` at ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: list[AbortedTxn] = _read(path)
        self._fd: int | None = None
        self._dirty = False

    def add(self, txn: AbortedTxn) -> None:
        """Append ``txn`` unless the index already holds its marker (a replay
        of what was indexed before a restart). Raises ``OSError``."""
        if self.entries and self.entries[-1].last_offset >= txn.last_offset:
            return
        fd = self._open()
        data = _ENTRY.pack(_VERSION, *txn)
        fileops.pwrite(fd, data, len(self.entries) * _ENTRY.size)
        self.entries.append(txn)
        self._dirty = True

    def collect(self, start: int, upper: int, into: list[AbortedTxn]) -> bool:
        """Add to ``into`` the transactions overlapping [``start``, ``upper``);
        whether the search is complete (an entry's last stable offset reached
        ``upper``: no later segment holds an overlapping one), as Kafka's
        ``collectAbortedTxns``."""
        for txn in self.entries:
            if txn.last_offset >= start and txn.first_offset < upper:
                into.append(txn)
            if txn.last_stable_offset >= upper:
                return True
        return False

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at or past ``offset``."""
        keep = len(self.entries)
        while keep and self.entries[keep - 1].last_offset >= offset:
            keep -= 1
        if keep == len(self.entries) and not self._torn():
            return
        del self.entries[keep:]
        if os.path.exists(self.path):
            fileops.truncate(self.path, keep * _ENTRY.size)
            self._dirty = True

    def _torn(self) -> bool:
        """Whether the file holds more than the entries (a torn last write)."""
        try:
            return os.stat(self.path).st_size != len(self.entries) * _ENTRY.size
        except FileNotFoundError:
            return False

    def reset(self) -> None:
        """Empty the index (a new segment at a base offset used before)."""
        self.close()
        self.entries = []
        with contextlib.suppress(FileNotFoundError):
            fileops.unlink(self.path)

    def flush(self) -> None:
        if self._dirty and self._fd is not None:
            fileops.fsync(self._fd)
        self._dirty = False

    def rename(self, path: str) -> None:
        if os.path.exists(self.path):
            fileops.replace(self.path, path)
        self.path = path

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def delete(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            fileops.unlink(self.path)

    def _open(self) -> int:
        if self._fd is None:
            self._fd = fileops.open_fd(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        return self._fd


def _read(path: str) -> list[AbortedTxn]:
    """The entries of the file, up to a torn or unknown one; none if absent."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    entries = []
    for version, *fields in _ENTRY.iter_unpack(data[: len(data) - len(data) % _ENTRY.size]):
        if version != _VERSION:
            break
        entries.append(AbortedTxn(*fields))
    return entries
