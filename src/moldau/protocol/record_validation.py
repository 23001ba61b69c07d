"""The records of a produced batch, checked as Kafka's leader checks them.

Kafka's ``LogValidator`` iterates every record of every batch a client
produces, compressed or not, before the batch is stored; a batch whose
records do not parse is refused. Without that, bytes that merely carry a
valid CRC get stored, and consumers stall on them forever. The checks, on
the records section (decompressed within the bound of ``codecs.py``):

- exactly ``recordsCount`` records parse, with nothing after the last;
- each record's length covers exactly its fields;
- the offset deltas are 0, 1, ... n-1 in order, so they match
  ``lastOffsetDelta`` (``batch.validate`` checks that n - 1 is it);
- varints are at most 5 bytes, varlongs at most 10, with no overflow;
- key, value and header value lengths are >= -1, header key lengths >= 0,
  and every field fits inside its record;
- on a compacted topic, every record has a key.

Errors are Kafka's: a record that does not parse is INVALID_RECORD (Kafka's
``InvalidRecordException`` from ``DefaultRecord.readFrom``), a payload that
cannot be decompressed, or decompresses past the bound, CORRUPT_MESSAGE.
moldau departs from Kafka on offset deltas out of order in a compressed
batch: Kafka rewrites such a batch (old clients wrote them), moldau refuses
it, as it stores batches as sent.

Speed. This runs on every produced record. It builds nothing: it reads the
length fields and hops over keys, values and headers, in one loop over
local variables with the common 1- and 2-byte varints decoded inline
(about 0.5 µs a record in CPython 3.11). Overruns are caught once: fields
that run past their record show up as a record that does not end where its
length says, and reads past the end of the data as an ``IndexError``.
Runs of records of one shape, common in practice, are checked all at once
in C (see "runs" below), at a small fraction of that.
"""

from __future__ import annotations

from typing import NamedTuple

from moldau.protocol.batch import (
    HEADER_SIZE,
    BatchHeader,
    InvalidRecordError,
    KeylessRecordError,
)
from moldau.protocol.codecs import decompress, decompression_limit
from moldau.protocol.records import scan_keys

__all__ = ["scan_records", "validate_records"]

Buffer = bytes | bytearray | memoryview


def validate_records(
    header: BatchHeader, batch: Buffer, *, max_message_bytes: int, require_keys: bool = False
) -> None:
    """Check the records of a client's (CRC-checked) ``batch`` as Kafka's
    leader does; raises ``InvalidRecordError`` or ``CorruptRecordError``.

    Keyless records sent to a compacted topic (``require_keys``) are all
    named in the error's ``record_errors``, as Kafka's LogValidator names
    them, so a client can tell which records failed."""
    try:
        _scan_batch(header, batch, max_message_bytes, require_keys)
    except KeylessRecordError:
        _scan_batch(header, batch, max_message_bytes, require_keys=False)  # otherwise sound?
        _, keys = scan_keys(batch, max_message_bytes=max_message_bytes)
        keyless = [i for i, (_, key, _) in enumerate(keys) if key is None]
        raise InvalidRecordError(
            f"One or more records have been rejected due to {len(keyless)} record errors "
            f"in total: records {keyless[:3]}{'...' if len(keyless) > 3 else ''} "
            "have no key",
            [(i, "Compacted topic cannot accept message without key.") for i in keyless],
        ) from None


def _scan_batch(
    header: BatchHeader, batch: Buffer, max_message_bytes: int, require_keys: bool
) -> None:
    if header.compression:
        limit = decompression_limit(header.size, max_message_bytes)
        data = decompress(header.compression, memoryview(batch)[HEADER_SIZE:], limit, reuse=True)
        scan_records(data, 0, header.records_count, require_keys)
    else:
        # Scanned in place: a copy of a large batch costs the broker more
        # than the copy itself (a fresh mapping per batch, page faults), far
        # more than indexing a memoryview costs over indexing bytes.
        scan_records(batch, HEADER_SIZE, header.records_count, require_keys)


def _uvarint(data: Buffer, pos: int, max_bytes: int) -> tuple[int, int]:
    """The unsigned (still zigzag-encoded) varint at ``pos`` of at most
    ``max_bytes`` bytes (5: int32, 10: int64), and the position after it."""
    result = shift = 0
    for _ in range(max_bytes):
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result >> (32 if max_bytes == 5 else 64):
                raise InvalidRecordError(f"varint of {max_bytes} bytes overflows")
            return result, pos
        shift += 7
    raise InvalidRecordError(f"varint longer than {max_bytes} bytes")


_MIN_RECORD_SIZE = 7
"""length, attributes, timestampDelta, offsetDelta, key length, value length
and header count, each one byte: the smallest record."""


_OFFSET_CODES = [(d << 1, -1, d) for d in range(64)] + [
    ((d << 1) & 0x7F | 0x80, d >> 6, d) for d in range(64, 1 << 13)
]
"""``(first byte, second byte or -1, delta)`` of the encoding of every
offset delta of one or two bytes, what the scan compares the bytes with
(batches of up to 8192 records; it takes the rest as they come)."""


def scan_records(data: Buffer, pos: int, count: int, require_keys: bool = False) -> None:
    """Check that ``data[pos:]`` holds exactly ``count`` well-formed records
    with offset deltas 0..count-1 (and keys, if ``require_keys``).

    Records are checked one by one (:func:`_scan`), except runs of records
    shaped like the one before them, which are checked all at once
    (:func:`_uniform_run`).
    """
    if count > (len(data) - pos) // _MIN_RECORD_SIZE:
        raise InvalidRecordError(f"{len(data) - pos} bytes cannot hold {count} records")
    delta = 0
    backoff = _FIRST_RUN_CHUNK
    while delta < count:
        if count - delta < _MIN_RUN:  # too few for a run to pay
            pos = _scan(data, pos, delta, count, require_keys)
            break
        start = pos
        pos = _scan(data, pos, delta, delta + 1, require_keys)
        pos, delta, whole = _uniform_run(data, start, pos, delta + 1, count)
        if not whole:  # scan some records one by one before trying a run again
            stop = min(count, delta + backoff)
            pos = _scan(data, pos, delta, stop, require_keys)
            delta = stop
            backoff *= 2
    if pos != len(data):
        raise InvalidRecordError(f"{len(data) - pos} bytes after the last of {count} records")


# -- runs of records of one shape ----------------------------------------------------
#
# Producers often send records of one shape: same key length, same value
# length, no headers, timestamp and offset deltas encoded in as many bytes
# (librdkafka's benchmark, fixed-size encodings, metrics). Records of the shape of a checked one
# differ from it only in the attributes, timestampDelta and offsetDelta
# bytes, the key and the value, each at the same place in every record. So
# a run of them is checked with one strided slice per byte position, in C:
# the length, key length, value length and header count bytes equal the
# checked record's, the timestampDelta bytes form a varint of the same
# width, and the offsetDelta bytes are the expected encodings of
# consecutive deltas. A run is checked in chunks of growing size; after a
# chunk that differs, records are scanned one by one for a while (longer
# after each such chunk, so that batches of ever-changing shapes cost
# little more than the scan alone) before a run is tried again.

_RUN_DELTAS = 1 << 15
"""Runs cover offset deltas below this (encodings of up to three bytes)."""
_WIDTH_STARTS = {1: 0, 2: 64, 3: 1 << 13}
_WIDTH_ENDS = {1: 64, 2: 1 << 13, 3: _RUN_DELTAS}
"""Offset deltas whose (shortest) encoding has each width: a run covers
only deltas of the width its shape has, so that the bytes it compares
are whole varints (a shape with a padded encoding runs nowhere)."""


def _offset_byte(delta: int, k: int) -> int:
    raw = delta << 1
    more = raw >> (7 * k + 7)
    return (raw >> (7 * k)) & 0x7F | (0x80 if more else 0)


def _offset_bytes() -> tuple[bytes, bytes, bytes]:
    """Bytes 0, 1 and 2 of the encoding of every offset delta a run covers,
    built a block at a time (a byte per delta costs 20 ms at start-up):
    byte 0 repeats every 64 deltas past the first 64, bytes 1 and 2 are
    the same for the 64 deltas of an aligned block."""
    blocks = range(_RUN_DELTAS // 64)
    low = bytes(range(0, 0x80, 2)) + bytes(range(0x80, 0x100, 2)) * (len(blocks) - 1)
    middle = b"".join(bytes((_offset_byte(64 * block, 1),)) * 64 for block in blocks)
    high = b"".join(bytes((_offset_byte(64 * block, 2),)) * 64 for block in blocks)
    return low, middle, high


_OFFSET_BYTES = _offset_bytes()
"""Byte ``k`` of the encoding of every offset delta a run covers."""
_FIRST_RUN_CHUNK = 16
_MIN_RUN = 32
"""Fewer records than this are scanned one by one: finding a shape and
slicing costs more than the scan of a few records."""


_HIGH_BYTES = bytes(range(0x80, 0x100))


class _Shape(NamedTuple):
    size: int  # bytes of the whole record
    fixed: list[tuple[int, bytes]]  # (position in the record, byte) the run repeats
    timestamp_at: int
    timestamp_width: int  # 1 to 3
    offset_at: int
    offset_width: int  # 1 to 3


def _shape(data: Buffer, start: int, end: int) -> _Shape | None:
    """The shape of the checked record at ``data[start:end]``, or None if
    it has headers or a varint a run cannot repeat."""
    _, pos = _uvarint(data, start, 5)
    fixed = [(i, bytes((data[start + i],))) for i in range(pos - start)]  # length
    timestamp_at = pos + 1 - start
    timestamp_width = _width(data, pos + 1)
    pos += 1 + timestamp_width
    offset_at = pos - start
    offset_width = _width(data, pos)
    if timestamp_width > 3 or offset_width > 3:
        return None
    pos += offset_width
    for _ in range(2):  # key, then value: length bytes fixed, content free
        raw, after = _uvarint(data, pos, 5)
        fixed += [(i - start, bytes((data[i],))) for i in range(pos, after)]
        pos = after + (0 if raw & 1 else raw >> 1)
    if pos != end - 1:
        return None  # headers
    fixed.append((end - 1 - start, b"\x00"))
    return _Shape(end - start, fixed, timestamp_at, timestamp_width, offset_at, offset_width)


def _width(data: Buffer, pos: int) -> int:
    """Bytes of the (checked) varint at ``pos``."""
    width = 1
    while data[pos + width - 1] >= 0x80:
        width += 1
    return width


def _uniform_run(
    data: Buffer, start: int, end: int, delta: int, count: int
) -> tuple[int, int, bool]:
    """Check the records from ``end`` (offset delta ``delta``) on that have
    the shape of the checked record ``data[start:end]``. Returns the
    position and delta after them, and False if the run ended on a record
    of another shape (rather than on the last record, the end of the data
    or a change of the offset delta's width)."""
    shape = _shape(data, start, end)
    if shape is None:
        return end, delta, False
    size = shape.size
    if delta < _WIDTH_STARTS[shape.offset_width]:
        return end, delta, False
    stop = min(count, _WIDTH_ENDS[shape.offset_width])
    stop = min(stop, delta + (len(data) - end) // size)
    view = memoryview(data)
    pos = end
    chunk = _FIRST_RUN_CHUNK
    while delta < stop:
        run = min(chunk, stop - delta)
        region = view[pos : pos + run * size]
        if not _repeats(region, run, shape, delta):
            return pos, delta, False
        pos += run * size
        delta += run
        chunk *= 2
    return pos, delta, True


def _repeats(region: memoryview, run: int, shape: _Shape, delta: int) -> bool:
    """Whether ``region`` holds ``run`` records of ``shape`` with offset
    deltas from ``delta`` on."""
    size = shape.size
    for at, byte in shape.fixed:
        if region[at::size].tobytes() != byte * run:
            return False
    last = shape.timestamp_at + shape.timestamp_width - 1
    for at in range(shape.timestamp_at, last):  # continuation bytes: all >= 0x80
        if region[at::size].tobytes().translate(None, _HIGH_BYTES):
            return False
    if not region[last::size].tobytes().isascii():
        return False
    for k in range(shape.offset_width):
        expected = _OFFSET_BYTES[k][delta : delta + run]
        if region[shape.offset_at + k :: size].tobytes() != expected:
            return False
    return True


def _scan(data: Buffer, pos: int, start: int, stop: int, require_keys: bool) -> int:
    """Check the records with offset deltas ``start``..``stop - 1`` from
    ``pos`` on, one by one; returns the position after them.

    Varints are zigzag encoded, so a length ``n`` arrives as ``2n`` and -1
    (null) as 1: an odd raw value other than 1 is a negative length. Offset
    deltas are compared with their expected encoding byte by byte.
    """
    codes = _OFFSET_CODES[start:stop]
    if stop > len(_OFFSET_CODES):
        first = max(start, len(_OFFSET_CODES))
        codes += [(-1, -1, delta) for delta in range(first, stop)]
    uvarint = _uvarint
    try:
        for first, second, delta in codes:
            # length (varint): the record must end exactly there
            b = data[pos]
            if b < 0x80:
                raw = b
                pos += 1
            elif (c := data[pos + 1]) < 0x80:
                raw = b - 0x80 + (c << 7)
                pos += 2
            else:
                raw, pos = uvarint(data, pos, 5)
            if raw & 1:
                raise InvalidRecordError(f"negative length of record {delta}")
            end = pos + (raw >> 1)
            # attributes (int8, unused), then timestampDelta (varlong)
            if data[pos + 1] < 0x80:
                pos += 2
            elif data[pos + 2] < 0x80:
                pos += 3
            else:
                raw, pos = uvarint(data, pos + 1, 10)
            # offsetDelta (varint): must be ``delta``
            if data[pos] == first:
                if second < 0:
                    pos += 1
                elif data[pos + 1] == second:
                    pos += 2
                else:
                    raise InvalidRecordError(f"record {delta} has another offset delta")
            else:
                raw, pos = uvarint(data, pos, 5)
                if raw != delta << 1:
                    raise InvalidRecordError(f"record {delta} has another offset delta")
            # key
            b = data[pos]
            if b == 1:
                if require_keys:
                    raise KeylessRecordError("compacted topic cannot accept a record without a key")
                pos += 1
            elif b < 0x80:
                if b & 1:
                    raise InvalidRecordError(f"negative key length in record {delta}")
                pos += 1 + (b >> 1)
            else:
                raw, pos = uvarint(data, pos, 5)
                if raw & 1:
                    raise InvalidRecordError(f"negative key length in record {delta}")
                pos += raw >> 1
            # value
            b = data[pos]
            if b < 0x80:
                if b & 1 and b != 1:
                    raise InvalidRecordError(f"negative value length in record {delta}")
                pos += 1 + (b >> 1)
            else:
                if (c := data[pos + 1]) < 0x80:
                    raw = b - 0x80 + (c << 7)
                    pos += 2
                else:
                    raw, pos = uvarint(data, pos, 5)
                if raw & 1:
                    raise InvalidRecordError(f"negative value length in record {delta}")
                pos += raw >> 1
            # headers
            if data[pos]:
                pos = _skip_headers(data, pos)
            else:
                pos += 1
            if pos != end:
                raise InvalidRecordError(f"record {delta} fields do not add up to its length")
    except IndexError:
        raise InvalidRecordError("record runs past the end of the batch") from None
    return pos


def _skip_headers(data: Buffer, pos: int) -> int:
    """Position after the header count at ``pos`` and the headers it counts."""
    raw, pos = _uvarint(data, pos, 5)
    if raw & 1:
        raise InvalidRecordError("negative header count")
    for _ in range(raw >> 1):
        raw, pos = _uvarint(data, pos, 5)
        if raw & 1:
            raise InvalidRecordError("negative header key length")
        raw, pos = _uvarint(data, pos + (raw >> 1), 5)
        if raw & 1:
            if raw != 1:
                raise InvalidRecordError("negative header value length")
        else:
            pos += raw >> 1
        if pos > len(data):
            raise IndexError
    return pos
