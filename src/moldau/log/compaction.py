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

A batch is copied byte for byte when nothing in it changes; otherwise it is
rebuilt with the kept records, the same base offset, offset range, producer
fields and codec. A batch left with no record is dropped: offsets may have
gaps in a compacted log.
"""

from __future__ import annotations

from collections.abc import Mapping

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

__all__ = ["clean_batch", "keyed_offsets"]


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
    """The batch as the cleaned log holds it: ``raw`` itself, a rebuilt
    batch, or None when nothing of it remains."""
    if header.is_control:
        return raw
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
