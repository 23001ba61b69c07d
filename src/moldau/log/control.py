"""Transaction markers: the control batches that end a transaction.

A marker is a batch with the control and transactional bits set, written by
a partition's leader when the transaction coordinator asks (WriteTxnMarkers),
holding one control record (Kafka's ``EndTransactionMarker``):

- key: version int16 (0) and type int16 (0 abort, 1 commit; Kafka's
  ``ControlRecordType``, whose other types, such as the KRaft ones, are not
  transaction markers and are ignored here);
- value: version int16 (0) and the coordinator epoch int32.

The batch carries the producer id and epoch of the transaction it ends, no
sequence number, and is never compressed (as Kafka writes it). Pure: no I/O.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from moldau.protocol.batch import HEADER_SIZE, BatchHeader, CorruptRecordError
from moldau.protocol.records import Record, _read_bytes, _read_varint, build_batch, decode_batch

__all__ = ["ABORT", "COMMIT", "TxnMarker", "build_marker_batch", "read_marker"]

ABORT = 0
COMMIT = 1
_KEY = struct.Struct(">hh")
_VALUE = struct.Struct(">hi")
_VERSION = 0


class TxnMarker(NamedTuple):
    """What a COMMIT or ABORT control record says."""

    committed: bool
    coordinator_epoch: int


def build_marker_batch(
    producer_id: int,
    producer_epoch: int,
    committed: bool,
    coordinator_epoch: int,
    *,
    base_offset: int,
    timestamp: int,
    leader_epoch: int,
) -> bytes:
    """The control batch of one marker, ready to be written at ``base_offset``."""
    key = _KEY.pack(_VERSION, COMMIT if committed else ABORT)
    value = _VALUE.pack(_VERSION, coordinator_epoch)
    return build_batch(
        [Record(0, 0, key, value)],
        base_offset=base_offset,
        base_timestamp=timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=True,
        is_control=True,
        partition_leader_epoch=leader_epoch,
    )


def read_marker(header: BatchHeader, batch: bytes | bytearray | memoryview) -> TxnMarker | None:
    """The marker a control batch holds, or None if it holds none (an empty
    batch left by compaction, or another control type).

    The record is decoded only up to its key when the batch is uncompressed
    (as markers are): replay reads every marker of the log."""
    if not header.is_control or header.records_count < 1:
        return None
    if header.compression:
        _, records = decode_batch(batch, verify_crc=False)
        key, value = records[0].key, records[0].value
    else:
        key, value = _first_key_value(bytes(batch[HEADER_SIZE : header.size]))
    if key is None or value is None or len(key) < _KEY.size:
        raise CorruptRecordError(f"control record at {header.base_offset} without a marker key")
    _, kind = _KEY.unpack_from(key)
    if kind not in (ABORT, COMMIT):
        return None
    if len(value) < _VALUE.size:
        raise CorruptRecordError(f"marker at {header.base_offset} without a coordinator epoch")
    _, coordinator_epoch = _VALUE.unpack_from(value)
    return TxnMarker(kind == COMMIT, coordinator_epoch)


def _first_key_value(data: bytes) -> tuple[bytes | None, bytes | None]:
    """Key and value of the first record of an uncompressed records section:
    length, attributes, timestampDelta, offsetDelta, key, value (varints)."""
    _, pos = _read_varint(data, 0)  # length
    _, pos = _read_varint(data, pos + 1)  # after attributes: timestampDelta
    _, pos = _read_varint(data, pos)  # offsetDelta
    key, pos = _read_bytes(data, pos)
    value, _ = _read_bytes(data, pos)
    return key, value
