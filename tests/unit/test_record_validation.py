"""Produced records are checked as Kafka's leader checks them.

Good batches of every codec and shape pass; each way a records section can
be malformed is refused with Kafka's error code; and a differential
property test holds ``scan_records`` to a plain reference parser written
from the record format, on mutated batches.
"""

from __future__ import annotations

import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldau.protocol import batch as b
from moldau.protocol.codecs import DEFAULT_MAX_MESSAGE_BYTES, compress
from moldau.protocol.record_validation import (
    _OFFSET_BYTES,
    _OFFSET_CODES,
    scan_records,
    validate_records,
)
from moldau.protocol.records import Record, build_batch

CODECS = [
    b.COMPRESSION_NONE,
    b.COMPRESSION_GZIP,
    b.COMPRESSION_SNAPPY,
    b.COMPRESSION_LZ4,
    b.COMPRESSION_ZSTD,
]
CORRUPT_MESSAGE = 2
INVALID_RECORD = 87


def check(raw: bytes, *, require_keys: bool = False) -> None:
    header = b.read_header(raw)
    b.validate(header, raw)
    validate_records(
        header, raw, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES, require_keys=require_keys
    )


def refusal(raw: bytes, *, require_keys: bool = False) -> int:
    with pytest.raises(b.RecordBatchError) as refused:
        check(raw, require_keys=require_keys)
    return refused.value.error_code


# -- records written by hand ---------------------------------------------------------


def uvarint(value: int) -> bytes:
    """``value`` as an unsigned varint (already zigzag encoded, if wanted)."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint(value: int) -> bytes:
    return uvarint((value << 1) ^ (value >> 63))


def field(data: bytes | None) -> bytes:
    return varint(-1) if data is None else varint(len(data)) + data


def record(
    offset_delta: int,
    *,
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    headers: bytes = varint(0),
    timestamp_delta: bytes = varint(0),
    length_change: int = 0,
) -> bytes:
    body = b"\x00" + timestamp_delta + varint(offset_delta) + field(key) + field(value) + headers
    return varint(len(body) + length_change) + body


def batch_of(payload: bytes, count: int, codec: int = b.COMPRESSION_NONE) -> bytes:
    return b.assemble_batch(
        payload=compress(codec, payload),
        records_count=count,
        last_offset_delta=count - 1,
        attributes=codec,
    )


def good(n: int) -> bytes:
    return b"".join(record(i) for i in range(n))


# -- good batches pass -----------------------------------------------------------------


def shapes() -> list[list[Record]]:
    return [
        [Record(0, 0, None, None)],
        [Record(i, i, b"k%d" % i, b"v" * 100) for i in range(10_000)],  # 3-byte offset deltas
        [Record(i, -(1 << 40) * i, b"k", os.urandom(70_000)) for i in range(3)],  # long varints
        [
            Record(i, 7, b"", b"", [("h", b"1"), ("null", None), ("", b"")] * (i % 3))
            for i in range(300)
        ],
    ]


@pytest.mark.parametrize("codec", CODECS)
def test_good_batches_of_every_codec_and_shape_pass(codec: int) -> None:
    for records in shapes():
        check(build_batch(records, base_timestamp=1_700_000_000_000, compression=codec))


def test_compacted_topic_needs_a_key_on_every_record() -> None:
    keyed = build_batch([Record(0, 0, b"k", b"v"), Record(1, 0, b"", None)])
    check(keyed, require_keys=True)
    unkeyed = build_batch([Record(0, 0, b"k", b"v"), Record(1, 0, None, b"v")])
    assert refusal(unkeyed, require_keys=True) == INVALID_RECORD
    check(unkeyed)


# -- malformed records are refused ------------------------------------------------------

MALFORMED: dict[str, tuple[bytes, int]] = {
    "fewer records than the count": (good(2), 3),
    "more records than the count": (good(3), 2),
    "bytes after the last record": (good(2) + b"\x00", 2),
    "offset deltas out of order": (record(0) + record(2) + record(1), 3),
    "offset deltas starting at 1": (record(1) + record(2), 2),
    "repeated offset delta": (record(0) + record(0), 2),
    "negative record length": (varint(-5) + record(0)[1:], 1),
    "record length longer than its fields": (record(0, length_change=1) + b"\x00", 1),
    "record length shorter than its fields": (record(0, length_change=-1), 1),
    "varint of 6 bytes": (record(0, headers=b"\x80\x80\x80\x80\x80\x00"), 1),
    "varint of 5 bytes over 32 bits": (record(0, headers=b"\x80\x80\x80\x80\x10"), 1),
    "varlong of 11 bytes": (record(0, timestamp_delta=b"\x80" * 10 + b"\x00"), 1),
    "varlong of 10 bytes over 64 bits": (record(0, timestamp_delta=b"\x80" * 9 + b"\x02"), 1),
    "key length -2": (varint(7) + b"\x00\x00\x00" + varint(-2) + b"k" + field(b"v") + b"\x00", 1),
    "key past the record": (record(0, key=None)[:-4] + varint(50) + b"kv\x00", 1),
    "value length -3": (varint(5) + b"\x00\x00\x00" + field(b"k")[:2] + varint(-3) + b"\x00", 1),
    "value past the end of the batch": (record(0)[:-3] + varint(90) + b"v\x00", 1),
    "negative header count": (record(0, headers=varint(-1)), 1),
    "header count past the record": (record(0, headers=varint(3) + field(b"h") + field(b"1")), 1),
    "header key length -1": (record(0, headers=varint(1) + field(None) + field(b"1")), 1),
    "header value length -2": (record(0, headers=varint(1) + field(b"h") + varint(-2)), 1),
}


@pytest.mark.parametrize("codec", CODECS)
def test_records_written_by_hand_pass(codec: int) -> None:
    check(batch_of(good(3), 3, codec))
    headers = varint(2) + field(b"h") + field(None) + field(b"") + field(b"")
    with_headers = record(0, headers=headers)
    check(batch_of(with_headers + record(1, key=None, value=None), 2, codec))


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("name", MALFORMED.keys())
def test_malformed_records_are_invalid_record(name: str, codec: int) -> None:
    payload, count = MALFORMED[name]
    assert refusal(batch_of(payload, count, codec)) == INVALID_RECORD


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_with_a_valid_crc_are_refused(seed: int) -> None:
    """What the trial stored: only the records can tell these from good batches."""
    rng = random.Random(seed)
    junk = rng.randbytes(rng.randrange(1, 3000))
    assert refusal(batch_of(junk, rng.randrange(1, 50))) == INVALID_RECORD
    for codec in CODECS[1:]:  # junk where a compressed stream should be
        compressed_junk = b.assemble_batch(
            payload=junk, records_count=1, last_offset_delta=0, attributes=codec
        )
        assert refusal(compressed_junk) == CORRUPT_MESSAGE


def test_a_padded_offset_delta_does_not_make_a_run_of_misaligned_records() -> None:
    """Record 0 encodes offset delta 0 in two bytes (a valid, padded varint);
    the records after it have the same length and bytes at the same places,
    but a one-byte offset delta, so every later field is read one byte
    earlier and the records do not parse. Runs must not take them for
    records of record 0's shape."""
    body = b"\x00\x00" + b"\x80\x00" + b"\x01" + field(b"v") + b"\x00"
    first = varint(len(body)) + body
    later = [
        varint(len(body)) + b"\x00\x00" + bytes([i << 1]) + b"\x00\x01" + field(b"v") + b"\x00"
        for i in range(1, 40)
    ]
    check(batch_of(first, 1))
    assert refusal(batch_of(first + b"".join(later), 40)) == INVALID_RECORD


# -- differential: scan_records agrees with a plain reference parser ---------------


class Reject(Exception):
    pass


def reference(data: bytes, count: int) -> None:
    """The record format, parsed the obvious way (raises Reject)."""
    pos = 0

    def read(max_bytes: int) -> int:
        nonlocal pos
        result = 0
        for i in range(max_bytes):
            if pos >= len(data):
                raise Reject
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                if result >= 1 << (32 if max_bytes == 5 else 64):
                    raise Reject
                return (result >> 1) ^ -(result & 1)
        raise Reject

    def skip(length: int, allow_null: bool = True) -> None:
        nonlocal pos
        if length < (-1 if allow_null else 0):
            raise Reject
        pos += max(length, 0)

    for i in range(count):
        length = read(5)
        start = pos
        if pos >= len(data):
            raise Reject
        pos += 1
        read(10)
        if read(5) != i:
            raise Reject
        skip(read(5))
        skip(read(5))
        headers = read(5)
        if headers < 0:
            raise Reject
        for _ in range(headers):
            skip(read(5), allow_null=False)
            skip(read(5))
            if pos > len(data):
                raise Reject
        if pos - start != length or pos > len(data):
            raise Reject
    if pos != len(data):
        raise Reject


def accepted_by_reference(data: bytes, count: int) -> bool:
    try:
        reference(data, count)
    except Reject:
        return False
    return True


def accepted_by_scan(data: bytes, count: int) -> bool:
    try:
        scan_records(data, 0, count)
    except b.InvalidRecordError:
        return False
    return True


records_strategy = st.lists(
    st.builds(
        lambda ts, key, value, headers: (ts, key, value, headers),
        st.integers(-(1 << 62), 1 << 62),
        st.none() | st.binary(max_size=200),
        st.none() | st.binary(max_size=300),
        st.lists(st.tuples(st.text(max_size=5), st.none() | st.binary(max_size=5)), max_size=3),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    records_strategy,
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=3),
    st.integers(-2, 2),
    st.integers(0, 5),
)
def test_scan_agrees_with_the_reference_parser(
    records: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    edits: list[tuple[int, int]],
    count_change: int,
    cut: int,
) -> None:
    raw = build_batch(
        [Record(i, ts, key, value, headers) for i, (ts, key, value, headers) in enumerate(records)]
    )
    data = bytearray(raw[b.HEADER_SIZE :])
    assert accepted_by_scan(bytes(data), len(records))
    assert accepted_by_reference(bytes(data), len(records))
    for position, byte in edits:
        data[position % len(data)] = byte
    data = data[: len(data) - cut]
    count = max(len(records) + count_change, 0)
    assert accepted_by_scan(bytes(data), count) == accepted_by_reference(bytes(data), count)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 300),
    st.none() | st.integers(0, 20),
    st.integers(0, 200),
    st.integers(0, 200),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=3),
    st.integers(0, 3),
)
def test_runs_of_one_shape_agree_with_the_reference_parser(
    count: int,
    key_size: int | None,
    value_size: int,
    timestamp_spread: int,
    edits: list[tuple[int, int]],
    cut: int,
) -> None:
    """Batches of same-shaped records (what runs check all at once), then
    the same with a few bytes changed: accepted exactly when the reference
    parser accepts them."""
    rng = random.Random(count * 7919 + value_size)
    records = [
        Record(
            i,
            rng.randrange(timestamp_spread + 1),
            None if key_size is None else rng.randbytes(key_size),
            rng.randbytes(value_size),
        )
        for i in range(count)
    ]
    data = bytearray(build_batch(records)[b.HEADER_SIZE :])
    assert accepted_by_scan(bytes(data), count)
    for position, byte in edits:
        data[position % len(data)] = byte
    data = data[: len(data) - cut]
    assert accepted_by_scan(bytes(data), count) == accepted_by_reference(bytes(data), count)


def test_tables_hold_the_encoding_of_every_offset_delta() -> None:
    for first, second, delta in _OFFSET_CODES:  # the record-by-record scan's
        assert bytes([first] if second < 0 else [first, second]) == varint(delta)
    for delta in range(len(_OFFSET_BYTES[0])):  # the runs'
        encoded = varint(delta)
        assert bytes(_OFFSET_BYTES[k][delta] for k in range(len(encoded))) == encoded


def test_counts_in_the_header_are_checked_before_the_records() -> None:
    raw = bytearray(build_batch([Record(0, 0, b"k", b"v")]))
    struct.pack_into(">i", raw, 57, 2)  # recordsCount 2, lastOffsetDelta 0
    struct.pack_into(">I", raw, b.CRC_OFFSET, b.compute_crc(raw))
    assert refusal(bytes(raw)) == INVALID_RECORD
