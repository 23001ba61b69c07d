"""Bringing a partition directory back after a stop, clean or not.

After a crash the tail of the log may hold a batch cut short by a power
loss, or garbage. Everything from the recovery point on (the offset up to
which the log was last fsynced) is therefore rescanned batch by batch,
checking lengths and CRC32C; the log is cut at the first bad batch and any
later segment is removed, and the indexes of rescanned segments are rebuilt.
Segments before the recovery point are trusted: only the few batches after
their last index entry are read to restore their end, and a segment whose
index does not fit its log is rescanned like an unflushed one.

After a clean shutdown (marked by the log manager) nothing is rescanned.

A clean interrupted by a crash leaves ``.cleaned`` files (the swap had not
begun: they are removed, the old segments are intact) or a ``<base>.log.swap``
(the cleaned segment was durable and its swap begun: it is completed, as
Kafka does, by removing every old segment whose base offset lies within the
swap segment's offsets and giving the ``.swap`` files their live names).
"""

from __future__ import annotations

import contextlib
import logging
import os
from bisect import bisect_right

from moldau.log import fileops
from moldau.log.checkpoint import fsync_dir
from moldau.log.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
    LogSegment,
    segment_base_offset,
)
from moldau.log.txn_index import TXN_INDEX_SUFFIX

__all__ = ["load_segments"]

log = logging.getLogger(__name__)

# Left behind by an interrupted deletion, cleaning or checkpoint write.
_LEFTOVER_SUFFIXES = (".deleted", ".cleaned", ".tmp", SWAP_SUFFIX)
_INDEX_SUFFIXES = (INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX)


def load_segments(
    directory: str, *, recovery_point: int, clean_shutdown: bool, interval: int, now_ms: int
) -> list[LogSegment]:
    """The partition's segments, oldest first, recovered as needed. Empty if
    the directory holds none."""
    _complete_swaps(directory, interval, now_ms)
    bases = _segment_bases(directory)
    segments = [LogSegment(directory, base, now_ms) for base in bases]
    first_unflushed = len(segments) if clean_shutdown else bisect_right(bases, recovery_point) - 1
    first_unflushed = max(first_unflushed, 0)
    for segment in segments[:first_unflushed]:
        if not segment.load(interval):
            log.warning("%s: index does not match the log, rebuilding", segment.path)
            segment.recover(interval)
    for i in range(first_unflushed, len(segments)):
        segment = segments[i]
        cut = segment.recover(interval)
        if cut:
            log.warning("%s: cut %d bytes of torn or corrupt batches", segment.path, cut)
            for later in segments[i + 1 :]:
                log.warning("%s: removed, it follows a corrupt segment", later.path)
                later.delete()
            del segments[i + 1 :]
            break
    return segments


def _complete_swaps(directory: str, interval: int, now_ms: int) -> None:
    """Finish the cleaner swaps a crash interrupted (see the module doc)."""
    for name in sorted(os.listdir(directory)):
        if not name.endswith(LOG_SUFFIX + SWAP_SUFFIX):
            continue
        base = segment_base_offset(name)
        if base is None:
            continue
        swap = LogSegment(directory, base, now_ms, SWAP_SUFFIX)
        swap.recover(interval)
        end = max(swap.next_offset, base + 1)
        for old_name in os.listdir(directory):
            old_base = segment_base_offset(old_name)
            replaced = old_base is not None and base <= old_base < end
            if replaced and old_name.endswith((LOG_SUFFIX, *_INDEX_SUFFIXES)):
                fileops.unlink(os.path.join(directory, old_name))
        swap.rename("")
        swap.close()
        log.warning("%s: completed the swap of cleaned segment %d", directory, base)
    fsync_dir(directory)


def _segment_bases(directory: str) -> list[int]:
    """Base offsets of the ``.log`` files; removes leftovers and orphan indexes."""
    names = os.listdir(directory)
    bases = sorted(
        base
        for name in names
        if name.endswith(LOG_SUFFIX) and (base := segment_base_offset(name)) is not None
    )
    present = set(bases)
    for name in names:
        base = segment_base_offset(name)
        orphan = name.endswith(_INDEX_SUFFIXES) and base not in present
        if orphan or name.endswith(_LEFTOVER_SUFFIXES):
            log.info("%s: removing leftover file %s", directory, name)
            with contextlib.suppress(FileNotFoundError):
                fileops.unlink(os.path.join(directory, name))
    return bases
