"""Records inside a v2 batch: encoding, decoding and compression.

The broker never needs this on the produce/fetch path (batches stay opaque,
see ``batch.py``); the Python client, the CLI and log compaction do.

One record, all integers zigzag varints unless noted::

    length            varint   bytes after this field
    attributes        int8     unused, 0
    timestampDelta    varlong  relative to the batch's baseTimestamp
    offsetDelta       varint   relative to the batch's baseOffset
    keyLength         varint   -1 for a null key
    key               bytes
    valueLength       varint   -1 for a null value
    value             bytes
    headerCount       varint
    headers           (keyLength varint, key utf-8, valueLength varint, value)*

With compression, the whole records section (everything after the 61-byte
header) is one compressed stream; the header stays uncompressed. The codecs,
and the bound on what a batch may decompress to, are in ``codecs.py``; every
reader here decompresses within that bound, so a hostile batch (from a
client, or written to a log by hand) fails with ``CorruptRecordError``
instead of exhausting memory. The produce path checks records with the
faster ``record_validation.py`` and decodes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from moldau.protocol.batch import (
    COMPRESSION_MASK,
    COMPRESSION_NONE,
    CONTROL_BIT,
    HEADER_SIZE,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_TYPE_BIT,
    TRANSACTIONAL_BIT,
    BatchHeader,
    CorruptRecordError,
    assemble_batch,
    read_header,
    validate,
)
from moldau.protocol.codecs import (
    DEFAULT_MAX_MESSAGE_BYTES,
    compress,
    decompress,
    decompression_limit,
)

__all__ = [
    "Record",
    "build_batch",
    "compress",
    "decode_batch",
    "rebuild_batch",
    "record_timestamp",
    "scan_keys",
]

Header = tuple[str, bytes | None]


@dataclass(frozen=True, slots=True)
class Record:
    """One record; offsets and timestamps are relative to its batch."""

    offset_delta: int
    timestamp_delta: int
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)


def record_timestamp(header: BatchHeader, record: Record) -> int:
    """The record's timestamp: LogAppendTime batches carry one for all records."""
    if header.timestamp_type == TIMESTAMP_LOG_APPEND_TIME:
        return header.max_timestamp
    return header.base_timestamp + record.timestamp_delta


# --- varints ----------------------------------------------------------------


def _write_varint(out: bytearray, value: int) -> None:
    """Zigzag varint; also serves varlongs (Python ints are unbounded)."""
    v = (value << 1) ^ (value >> 63)
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CorruptRecordError("varint runs past the end of the records")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint longer than 10 bytes")


def _write_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        _write_varint(out, -1)
    else:
        _write_varint(out, len(data))
        out += data


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = _read_varint(buf, pos)
    if length < 0:
        return None, pos
    end = pos + length
    if end > len(buf):
        raise CorruptRecordError("record field runs past the end of the records")
    return buf[pos:end], end


# --- records ----------------------------------------------------------------


def _encode_record(out: bytearray, record: Record) -> None:
    body = bytearray(b"\x00")  # attributes
    _write_varint(body, record.timestamp_delta)
    _write_varint(body, record.offset_delta)
    _write_bytes(body, record.key)
    _write_bytes(body, record.value)
    _write_varint(body, len(record.headers))
    for name, value in record.headers:
        _write_bytes(body, name.encode())
        _write_bytes(body, value)
    _write_varint(out, len(body))
    out += body


def _decode_records(buf: bytes, count: int) -> list[Record]:
    records = []
    pos = 0
    for _ in range(count):
        length, pos = _read_varint(buf, pos)
        end = pos + length
        if length < 1 or end > len(buf):
            raise CorruptRecordError(f"record length {length} out of bounds")
        pos += 1  # attributes
        timestamp_delta, pos = _read_varint(buf, pos)
        offset_delta, pos = _read_varint(buf, pos)
        key, pos = _read_bytes(buf, pos)
        value, pos = _read_bytes(buf, pos)
        header_count, pos = _read_varint(buf, pos)
        headers: list[Header] = []
        for _ in range(header_count):
            name, pos = _read_bytes(buf, pos)
            if name is None:
                raise CorruptRecordError("null header key")
            header_value, pos = _read_bytes(buf, pos)
            headers.append((name.decode(errors="replace"), header_value))
        if pos != end:
            raise CorruptRecordError("record length does not match its fields")
        records.append(Record(offset_delta, timestamp_delta, key, value, headers))
    if pos != len(buf):
        raise CorruptRecordError(f"{len(buf) - pos} bytes after the last record")
    return records


# --- batches ----------------------------------------------------------------


def build_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    base_timestamp: int = 0,
    compression: int = COMPRESSION_NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    timestamp_type: int = 0,
    is_transactional: bool = False,
    is_control: bool = False,
    partition_leader_epoch: int = -1,
    last_offset_delta: int | None = None,
) -> bytes:
    """A complete v2 batch holding ``records``.

    ``last_offset_delta`` defaults to the last record's; compaction passes the
    original batch's so a cleaned batch keeps its offset range (and may then
    even be empty).
    """
    if last_offset_delta is None:
        if not records:
            raise ValueError("an empty batch needs an explicit last_offset_delta")
        last_offset_delta = records[-1].offset_delta
    body = bytearray()
    for record in records:
        _encode_record(body, record)
    attributes = compression
    if timestamp_type == TIMESTAMP_LOG_APPEND_TIME:
        attributes |= TIMESTAMP_TYPE_BIT
    if is_transactional:
        attributes |= TRANSACTIONAL_BIT
    if is_control:
        attributes |= CONTROL_BIT
    max_delta = max((r.timestamp_delta for r in records), default=0)
    return assemble_batch(
        payload=compress(compression, bytes(body)),
        records_count=len(records),
        last_offset_delta=last_offset_delta,
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        attributes=attributes,
        base_timestamp=base_timestamp,
        max_timestamp=base_timestamp + max_delta,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
    )


def rebuild_batch(
    header: BatchHeader,
    records: Sequence[Record],
    *,
    base_timestamp: int,
    max_timestamp: int,
    attributes: int,
) -> bytes:
    """``header``'s batch holding only ``records`` (a subset of its own, with
    timestamp deltas already relative to ``base_timestamp``), as compaction
    writes it: same base offset, offset range, producer fields and codec
    (taken from ``attributes``), so offsets and sequence numbers still line up."""
    body = bytearray()
    for record in records:
        _encode_record(body, record)
    return assemble_batch(
        payload=compress(attributes & COMPRESSION_MASK, bytes(body)),
        records_count=len(records),
        last_offset_delta=header.last_offset_delta,
        base_offset=header.base_offset,
        partition_leader_epoch=header.partition_leader_epoch,
        attributes=attributes,
        base_timestamp=base_timestamp,
        max_timestamp=max_timestamp,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
    )


def _records_section(
    header: BatchHeader, buf: bytes | bytearray | memoryview, max_message_bytes: int
) -> bytes | bytearray | memoryview:
    """The batch's records section, decompressed within the bound."""
    if len(buf) < header.size:
        raise CorruptRecordError(f"truncated batch: {len(buf)} of {header.size} bytes")
    limit = decompression_limit(header.size, max_message_bytes)
    return decompress(header.compression, memoryview(buf)[HEADER_SIZE : header.size], limit)


def scan_keys(
    buf: bytes | bytearray | memoryview, *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> tuple[BatchHeader, list[tuple[int, bytes | None, bool]]]:
    """Header and ``(offset delta, key, has value)`` of each record of the
    (CRC-checked) batch at the start of ``buf``: what log compaction decides
    on, several times faster than :func:`decode_batch` because values and
    headers are skipped, not decoded."""
    header = read_header(buf)
    data = bytes(_records_section(header, buf, max_message_bytes))
    out: list[tuple[int, bytes | None, bool]] = []
    pos = 0
    try:
        for _ in range(header.records_count):
            length, pos = _read_varint(data, pos)
            end = pos + length
            if length < 1 or end > len(data):
                raise CorruptRecordError(f"record length {length} out of bounds")
            pos += 1  # attributes
            while data[pos] & 0x80:  # timestampDelta, skipped
                pos += 1
            offset_delta, pos = _read_varint(data, pos + 1)
            key, pos = _read_bytes(data, pos)
            value_length, pos = _read_varint(data, pos)
            out.append((offset_delta, key, value_length >= 0))
            pos = end
    except IndexError as exc:
        raise CorruptRecordError("record runs past the end of the batch") from exc
    return header, out


def decode_batch(
    buf: bytes | bytearray | memoryview,
    *,
    verify_crc: bool = True,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> tuple[BatchHeader, list[Record]]:
    """Header and records of the single batch at the start of ``buf``;
    ``max_message_bytes`` (the topic's, where known) bounds decompression."""
    header = read_header(buf)
    if verify_crc and len(buf) >= header.size:
        validate(header, memoryview(buf)[: header.size], from_client=False)
    payload = bytes(_records_section(header, buf, max_message_bytes))
    return header, _decode_records(payload, header.records_count)
