"""Records inside a batch: varint encoding, every codec, framing variants."""

from __future__ import annotations

import struct

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldau.protocol import batch as b
from moldau.protocol.codecs import decompress as bounded_decompress
from moldau.protocol.records import (
    Record,
    build_batch,
    compress,
    decode_batch,
    rebuild_batch,
    record_timestamp,
    scan_keys,
)

LIMIT = 1 << 20

CODECS = [
    b.COMPRESSION_NONE,
    b.COMPRESSION_GZIP,
    b.COMPRESSION_SNAPPY,
    b.COMPRESSION_LZ4,
    b.COMPRESSION_ZSTD,
]


def sample(n: int = 50) -> list[Record]:
    return [
        Record(
            i,
            i * 3,
            None if i % 7 == 0 else f"key-{i}".encode(),
            None if i % 11 == 0 else b"value " * i,
            [("h", b"1"), ("null", None)] if i % 2 else [],
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec(codec: int) -> None:
    records = sample(2000)  # > one 64 KiB lz4 block and several 32 KiB snappy blocks
    raw = build_batch(
        records,
        base_offset=10,
        base_timestamp=1_700_000_000_000,
        compression=codec,
        producer_id=4,
        producer_epoch=1,
        base_sequence=0,
    )
    header, got = decode_batch(raw)
    assert got == records
    assert header.compression == codec
    assert header.records_count == 2000 and header.last_offset == 10 + 1999
    assert header.max_timestamp == 1_700_000_000_000 + 1999 * 3
    b.validate(header, raw)  # a valid client batch
    if codec != b.COMPRESSION_NONE:
        assert len(raw) < sum(len(r.value or b"") for r in records)


def decompress(codec: int, data: bytes) -> bytes:
    return bytes(bounded_decompress(codec, data, LIMIT))


def test_snappy_is_xerial_framed_and_raw_is_read() -> None:
    data = b"abc" * 50_000
    framed = compress(b.COMPRESSION_SNAPPY, data)
    assert framed.startswith(b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01")
    assert decompress(b.COMPRESSION_SNAPPY, framed) == data
    # librdkafka writes raw snappy
    assert decompress(b.COMPRESSION_SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data
    # concatenated xerial streams
    assert decompress(b.COMPRESSION_SNAPPY, framed + framed) == data + data


def test_lz4_writes_independent_blocks_frame() -> None:
    framed = compress(b.COMPRESSION_LZ4, b"x" * 200_000)
    assert framed[:4] == b"\x04\x22\x4d\x18"
    flg = framed[4]
    assert flg >> 6 == 1 and flg & 0x20  # version 1, independent blocks (Java requires)
    # frames written by other encoders (linked blocks, content checksum) are read too
    assert decompress(b.COMPRESSION_LZ4, bytes(cramjam.lz4.compress(b"y" * 1000))) == b"y" * 1000


def test_log_append_time_and_flags() -> None:
    raw = bytearray(build_batch(sample(3), base_timestamp=100, is_transactional=True))
    header, records = decode_batch(raw)
    assert header.is_transactional and not header.is_control
    assert record_timestamp(header, records[2]) == 106
    b.stamp_log_append_time(raw, 0, 999)
    header, records = decode_batch(raw)
    assert record_timestamp(header, records[0]) == 999


def test_empty_batch_keeps_offset_range() -> None:
    raw = build_batch([], base_offset=5, last_offset_delta=9, is_control=True)
    header, records = decode_batch(raw)
    assert records == [] and header.last_offset == 14 and header.is_control
    with pytest.raises(ValueError):
        build_batch([])


def test_corrupt_records_detected() -> None:
    raw = bytearray(build_batch(sample(3)))
    raw[-1] ^= 0xFF
    with pytest.raises(b.CorruptRecordError):
        decode_batch(raw)
    # same damage with a recomputed CRC: caught while parsing records
    struct.pack_into(">I", raw, b.CRC_OFFSET, b.compute_crc(raw))
    with pytest.raises(b.CorruptRecordError):
        decode_batch(raw)
    with pytest.raises(b.CorruptRecordError):
        decode_batch(raw[:-1])


def test_garbage_compressed_payload_is_corrupt() -> None:
    raw = b.assemble_batch(
        payload=b"not gzip", records_count=1, last_offset_delta=0, attributes=b.COMPRESSION_GZIP
    )
    with pytest.raises(b.CorruptRecordError):
        decode_batch(raw)


def test_varint_extremes() -> None:
    records = [Record(0, -(1 << 62), b"", b""), Record(1, (1 << 62), None, None)]
    assert decode_batch(build_batch(records))[1] == records


headers = st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3)
record_fields = st.tuples(
    st.integers(-(1 << 40), 1 << 40),
    st.none() | st.binary(max_size=64),
    st.none() | st.binary(max_size=300),
    headers,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(record_fields, min_size=1, max_size=30), st.sampled_from(CODECS))
def test_hypothesis_round_trip(
    fields: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    codec: int,
) -> None:
    records = [Record(i, ts, k, v, h) for i, (ts, k, v, h) in enumerate(fields)]
    assert decode_batch(build_batch(records, compression=codec))[1] == records


@settings(max_examples=60, deadline=None)
@given(st.lists(record_fields, min_size=1, max_size=30), st.sampled_from(CODECS))
def test_scan_keys_agrees_with_decoding(
    fields: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    codec: int,
) -> None:
    records = [Record(i * 3, ts, k, v, h) for i, (ts, k, v, h) in enumerate(fields)]
    raw = build_batch(records, compression=codec)
    header, scanned = scan_keys(raw)
    assert header == b.read_header(raw)
    assert scanned == [(r.offset_delta, r.key, r.value is not None) for r in records]
    with pytest.raises(b.CorruptRecordError):
        scan_keys(raw[:-2])


def test_rebuild_batch_keeps_the_batch_identity() -> None:
    original = build_batch(
        sample(6),
        base_offset=100,
        base_timestamp=5_000,
        compression=b.COMPRESSION_ZSTD,
        producer_id=9,
        producer_epoch=2,
        base_sequence=40,
        partition_leader_epoch=3,
    )
    header = b.read_header(original)
    kept = [r for r in decode_batch(original)[1] if r.offset_delta % 2]
    rebuilt = rebuild_batch(
        header, kept, base_timestamp=5_000, max_timestamp=5_999, attributes=header.attributes
    )
    new_header, records = decode_batch(rebuilt)
    assert records == kept
    same = ("base_offset", "last_offset_delta", "partition_leader_epoch", "attributes")
    assert all(getattr(new_header, f) == getattr(header, f) for f in same)
    assert (new_header.producer_id, new_header.producer_epoch, new_header.base_sequence) == (
        9,
        2,
        40,
    )
    assert (new_header.records_count, new_header.max_timestamp) == (3, 5_999)


@pytest.mark.parametrize("codec", CODECS)
def test_interoperates_with_kafka_python(codec: int) -> None:
    """kafka-python builds and parses v2 batches in pure Python with the
    framings real clients use (xerial snappy, lz4 frame)."""
    kafka_records = pytest.importorskip("kafka.record.default_records")
    builder = kafka_records.DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i in range(300):
        builder.append(i, 1_000 + i, f"k{i}".encode(), b"v" * i, [("h", b"x")])
    theirs = bytes(builder.build())
    header, records = decode_batch(theirs)
    assert [(r.key, r.value, r.headers) for r in records] == [
        (f"k{i}".encode(), b"v" * i, [("h", b"x")]) for i in range(300)
    ]
    assert record_timestamp(header, records[7]) == 1_007

    ours = build_batch(records, base_timestamp=header.base_timestamp, compression=codec)
    parsed = kafka_records.DefaultRecordBatch(ours)
    assert parsed.validate_crc() and parsed.compression_type == codec
    assert [(r.offset, r.timestamp, r.value) for r in parsed] == [
        (i, 1_000 + i, b"v" * i) for i in range(300)
    ]
