"""What log compaction keeps of one batch: Kafka's record retention rules.

Pure functions over batch bytes; the cleaner (``cleaner.py``) walks the
segments and writes what these return.

A record is kept unless

- it has no key (a compacted log has no use for it; appends refuse them);
- a later record with the same key exists (``latest`` maps each key seen in
  the dirty section to its last offset there);
- it is a tombstone (null value) whose batch's delete horizon has passed.

Tombstones must outlive ``delete.retention.ms`` so that a consumer reading
from the start sees the delete. As in Kafka since KIP-534, the first clean
that keeps a tombstone stamps its batch with a delete horizon (attribute
bit 0x40, baseTimestamp = now + delete.retention.ms, record timestamp deltas
rebased on it so record timestamps do not change); a later clean past the
horizon drops the tombstone.

Transactions, as Kafka's cleaner (``CleanedTransactionMetadata``): the
cleaner never reads past the last stable offset, so every transaction it
sees has ended. The records of aborted transactions are removed (their keys
never enter the offset map either), and a marker once no batch of its
transaction is left (:class:`TxnCleaning`): such a marker is first stamped
with a delete horizon (now + ``delete.retention.ms``, as a tombstone is, so
that a consumer part way through the transaction still sees it) and dropped
by a clean past it. An ABORT marker kept because its transaction still had
batches in this clean keeps its entry in the cleaned segment's
``.txnindex``; the entry of a marker that may go is dropped at once, as in
Kafka (no data is left for it to hide).

A batch is copied byte for byte when nothing in it changes; otherwise it is
rebuilt with the kept records, the same base offset, offset range, producer
fields and codec. A batch left with no record is dropped: offsets may have
gaps in a compacted log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from moldau.log.control import TxnMarker
from moldau.log.txn_index import AbortedTxn
from moldau.protocol.batch import (
    DELETE_HORIZON_BIT,
    TIMESTAMP_LOG_APPEND_TIME,
    BatchHeader,
)
from moldau.protocol.records import (
    Record,
    decode_batch,
    rebuild_batch,
    record_timestamp,
    scan_keys,
)

__all__ = ["TxnCleaning", "clean_batch", "clean_marker", "keyed_offsets"]


@dataclass
class _AbortedInClean:
    txn: AbortedTxn
    #: Whether this clean met a batch of the transaction.
    observed: bool = False


class TxnCleaning:
    """What one pass over the log, in offset order, learns of transactions:
    which batches belong to aborted ones, and which markers have no batch of
    their transaction left. ``aborted`` are the aborted transactions
    overlapping the pass (``PartitionLog.aborted_txns``)."""

    def __init__(self, aborted: Iterable[AbortedTxn]) -> None:
        self._pending = deque(sorted(aborted, key=lambda txn: txn.first_offset))
        self._aborted: dict[int, _AbortedInClean] = {}
        self._committed: set[int] = set()

    def _reach(self, offset: int) -> None:
        pending = self._pending
        while pending and pending[0].first_offset <= offset:
            txn = pending.popleft()
            self._aborted.setdefault(txn.producer_id, _AbortedInClean(txn))

    def is_aborted(self, header: BatchHeader) -> bool:
        """Note a data batch; whether it belongs to an aborted transaction."""
        self._reach(header.last_offset)
        if not header.is_transactional:
            return False
        ongoing = self._aborted.get(header.producer_id)
        if ongoing is not None:
            ongoing.observed = True
            return True
        self._committed.add(header.producer_id)
        return False

    def on_marker(
        self, header: BatchHeader, marker: TxnMarker | None
    ) -> tuple[bool, AbortedTxn | None]:
        """Note a control batch: whether it may go (no batch of its
        transaction met), and the index entry to keep for it if not."""
        self._reach(header.last_offset)
        if marker is None:  # emptied by an earlier clean, or not a marker
            return True, None
        producer_id = header.producer_id
        if marker.committed:
            met = producer_id in self._committed
            self._committed.discard(producer_id)
            return not met, None
        ongoing = self._aborted.pop(producer_id, None)
        if ongoing is not None and ongoing.observed:
            return False, ongoing.txn
        return True, None


def keyed_offsets(raw: bytes | memoryview, max_message_bytes: int) -> list[tuple[bytes, int]]:
    """``(key, offset)`` of each keyed record of a batch, in order: what the
    cleaner's offset map is built from. ``max_message_bytes`` (the topic's)
    bounds decompression, as everywhere stored batches are read."""
    header, records = scan_keys(raw, max_message_bytes=max_message_bytes)
    if header.is_control:
        return []
    base = header.base_offset
    return [(key, base + delta) for delta, key, _ in records if key is not None]


def clean_batch(
    header: BatchHeader,
    raw: memoryview,
    latest: Mapping[bytes, int],
    *,
    now: int,
    delete_retention_ms: int,
    max_message_bytes: int,
) -> bytes | memoryview | None:
    """The data batch as the cleaned log holds it: ``raw`` itself, a rebuilt
    batch, or None when nothing of it remains (control batches:
    :func:`clean_marker`)."""
    _, scanned = scan_keys(raw, max_message_bytes=max_message_bytes)
    base = header.base_offset
    horizon_passed = header.has_delete_horizon and now > header.base_timestamp
    keep: list[int] = []
    tombstones = False
    for i, (delta, key, has_value) in enumerate(scanned):
        if key is None or base + delta < latest.get(key, -1):
            continue
        if not has_value and horizon_passed:
            continue
        keep.append(i)
        tombstones = tombstones or not has_value
    if not keep:
        return None
    if len(keep) == len(scanned) and tombstones == header.has_delete_horizon:
        return raw
    _, records = decode_batch(raw, verify_crc=False, max_message_bytes=max_message_bytes)
    kept = [records[i] for i in keep]
    # A horizon is stamped on a batch with tombstones and only on one: the
    # cleaner takes every horizon it sees as a reason to clean again.
    attributes = header.attributes & ~DELETE_HORIZON_BIT
    if tombstones:
        attributes |= DELETE_HORIZON_BIT
        base_timestamp = (
            header.base_timestamp if header.has_delete_horizon else now + delete_retention_ms
        )
    else:
        base_timestamp = min(record_timestamp(header, r) for r in kept)
    return _rebuild(header, kept, base_timestamp, attributes)


def clean_marker(
    header: BatchHeader,
    raw: memoryview,
    may_go: bool,
    *,
    now: int,
    delete_retention_ms: int,
) -> bytes | memoryview | None:
    """A control batch as the cleaned log holds it: kept while its
    transaction has batches left (``may_go`` False, see :class:`TxnCleaning`),
    else stamped with a delete horizon, and dropped once past it."""
    if not may_go:
        return raw
    if header.has_delete_horizon:
        return None if now > header.base_timestamp else raw
    _, records = decode_batch(raw, verify_crc=False)
    attributes = header.attributes | DELETE_HORIZON_BIT
    return _rebuild(header, records, now + delete_retention_ms, attributes)


def _rebuild(
    header: BatchHeader, kept: list[Record], base_timestamp: int, attributes: int
) -> bytes:
    """``header``'s batch holding ``kept`` with a new base timestamp, record
    timestamp deltas rebased on it so that record timestamps do not change."""
    if header.timestamp_type == TIMESTAMP_LOG_APPEND_TIME:
        max_timestamp = header.max_timestamp
    else:
        max_timestamp = max(record_timestamp(header, r) for r in kept)
    rebased = [
        Record(
            r.offset_delta,
            header.base_timestamp + r.timestamp_delta - base_timestamp,
            r.key,
            r.value,
            r.headers,
        )
        for r in kept
    ]
    return rebuild_batch(
        header,
        rebased,
        base_timestamp=base_timestamp,
        max_timestamp=max_timestamp,
        attributes=attributes,
    )
