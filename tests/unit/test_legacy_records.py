"""Message formats v0/v1: parsing, up- and down-conversion (legacy_records).

kafka-python's own v0/v1 reader and writer (an independent implementation)
serve as the oracle for the wire format; hand-built messages pin the CRC.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.record import MemoryRecords
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from moldau.protocol.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    TIMESTAMP_LOG_APPEND_TIME,
    CorruptRecordError,
    InvalidRecordError,
)
from moldau.protocol.legacy_records import (
    LegacyMessage,
    compress_legacy,
    down_convert,
    is_legacy,
    parse_message_set,
    up_convert,
)
from moldau.protocol.records import Record, build_batch, compress, decode_batch

CODECS = [COMPRESSION_NONE, COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4]
#: kafka-python's LegacyRecordBatchBuilder codec ids are Kafka's.
KP_CODEC = {COMPRESSION_NONE: 0, COMPRESSION_GZIP: 1, COMPRESSION_SNAPPY: 2, COMPRESSION_LZ4: 3}

#: A v0 message by hand: offset 7, null key, value "hi". Its CRC32 is
#: 0xfd6ebddb over 00 00 ffffffff 00000002 6869 (magic..end).
HAND_V0 = bytes.fromhex("000000000000000700000010fd6ebddb0000ffffffff000000026869")


def _message(
    magic: int, attributes: int, key: bytes | None, value: bytes | None, *, timestamp: int = 1234
) -> bytes:
    body = struct.pack(">bb", magic, attributes)
    if magic == 1:
        body += struct.pack(">q", timestamp)
    for field in (key, value):
        body += struct.pack(">i", -1 if field is None else len(field)) + (field or b"")
    crc = struct.pack(">I", zlib.crc32(body))
    return struct.pack(">qi", 0, len(body) + 4) + crc + body


def _set(magic: int, messages: Sequence[LegacyMessage]) -> bytes:
    return b"".join(_message(magic, 0, m.key, m.value, timestamp=m.timestamp) for m in messages)


def _kafka_python_set(magic: int, codec: int, messages: Sequence[LegacyMessage]) -> bytes:
    builder = LegacyRecordBatchBuilder(magic, KP_CODEC[codec], 1 << 30)
    for i, m in enumerate(messages):
        builder.append(i, m.timestamp if magic else None, m.key, m.value)
    return bytes(builder.build())


def _kafka_python_read(data: bytes) -> list[tuple[int, int | None, bytes | None, bytes | None]]:
    records = MemoryRecords(data)
    out = []
    while (batch := records.next_batch()) is not None:
        out += [(r.offset, r.timestamp, r.key, r.value) for r in batch]
    return out


def _messages(magic: int, count: int = 5) -> list[LegacyMessage]:
    stamp = (lambda i: 1000 + i) if magic else (lambda i: -1)
    return [
        LegacyMessage(stamp(i), b"k%d" % i if i % 2 else None, b"v%d" % i) for i in range(count)
    ]


def test_hand_built_v0_message() -> None:
    assert is_legacy(HAND_V0)
    assert parse_message_set(HAND_V0) == (COMPRESSION_NONE, [LegacyMessage(-1, None, b"hi")])


def test_a_v2_batch_is_not_legacy() -> None:
    assert not is_legacy(build_batch([Record(0, 0, None, b"x")]))


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("magic", [0, 1])
def test_kafka_python_message_sets_parse(magic: int, codec: int) -> None:
    if magic == 0 and codec == COMPRESSION_LZ4:
        pytest.skip("kafka-python writes v0 LZ4 only with xxhash; see the broken-checksum test")
    messages = _messages(magic)
    assert parse_message_set(_kafka_python_set(magic, codec, messages)) == (codec, messages)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("magic", [0, 1])
def test_round_trip_through_v2(magic: int, codec: int) -> None:
    """v0/v1 -> one v2 batch (codec kept, v1 timestamps, v0 NO_TIMESTAMP) ->
    back, read by kafka-python with the offsets the log gave."""
    messages = _messages(magic)
    legacy = _set(magic, messages)
    if codec != COMPRESSION_NONE:
        legacy = _message(magic, codec, None, compress_legacy(codec, legacy, magic))
    batch = bytearray(up_convert(legacy))
    batch[:8] = struct.pack(">q", 100)  # the log's base offset
    header, records = decode_batch(batch, verify_crc=False)
    assert header.compression == codec
    assert (header.producer_id, header.timestamp_type) == (-1, 0)
    assert header.base_timestamp == (1000 if magic else -1)
    assert [(r.key, r.value) for r in records] == [(m.key, m.value) for m in messages]

    converted = down_convert(header, records, magic, 100)
    assert parse_message_set(converted) == (codec, messages)
    if magic == 0 and codec == COMPRESSION_LZ4:
        return  # kafka-python reads it only with xxhash; librdkafka does (integration)
    assert _kafka_python_read(converted) == [
        (100 + i, m.timestamp if magic else None, m.key, m.value) for i, m in enumerate(messages)
    ]


def test_down_convert_keeps_offsets_across_gaps_and_skips_before_fetch_offset() -> None:
    """A compacted batch (offset deltas 0, 3, 4) fetched from its second record:
    v1 wrapper offsets are relative, so the consumer maps them back exactly."""
    records = [Record(d, d, b"k", b"v%d" % d) for d in (0, 3, 4)]
    header, decoded = decode_batch(
        build_batch(records, base_offset=50, base_timestamp=10, compression=COMPRESSION_GZIP)
    )
    for magic in (0, 1):
        read = _kafka_python_read(down_convert(header, decoded, magic, 51))
        assert [(o, v) for o, _, _, v in read] == [(53, b"v3"), (54, b"v4")]
    assert down_convert(header, decoded, 1, 55) == b""


def test_down_convert_log_append_time_and_control_batches() -> None:
    batch = build_batch(
        [Record(0, 0, None, b"a"), Record(1, 5, None, b"b")],
        base_timestamp=10,
        timestamp_type=TIMESTAMP_LOG_APPEND_TIME,
    )
    header, records = decode_batch(batch)
    message = down_convert(header, records, 1, 0)
    assert message[17] & 0x08  # attributes: LogAppendTime
    assert [t for _, t, _, _ in _kafka_python_read(message)] == [15, 15]
    control = build_batch([Record(0, 0, b"\0\0\0\0", b"")], is_control=True)
    assert down_convert(*decode_batch(control), 1, 0) == b""


def test_v1_wrapper_with_log_append_time_gives_its_timestamp() -> None:
    inner = _message(1, 0, None, b"x")
    wrapper = bytearray(_message(1, COMPRESSION_GZIP | 0x08, None, gzip.compress(inner)))
    _, [message] = parse_message_set(wrapper)
    assert message.timestamp == 1234


def test_lz4_header_checksum_broken_in_v0_only() -> None:
    """Kafka 0.8's LZ4 header checksum covers the magic number: v0 writes and
    accepts it, v1 refuses it."""
    inner = _message(0, 0, None, b"payload" * 10)
    broken = compress_legacy(COMPRESSION_LZ4, inner, 0)
    assert broken != compress(COMPRESSION_LZ4, inner)
    assert parse_message_set(_message(0, COMPRESSION_LZ4, None, broken))[1][0].value
    v1_inner = _message(1, 0, None, b"payload")
    bad_v1 = compress_legacy(COMPRESSION_LZ4, v1_inner, 0)
    with pytest.raises(CorruptRecordError, match="checksum"):
        parse_message_set(_message(1, COMPRESSION_LZ4, None, bad_v1))


def test_bad_crc_and_truncation_are_corrupt() -> None:
    bad = bytearray(HAND_V0)
    bad[-1] ^= 1
    with pytest.raises(CorruptRecordError, match="CRC"):
        parse_message_set(bad)
    for cut in (5, 20, len(HAND_V0) - 1):
        with pytest.raises(CorruptRecordError):
            parse_message_set(HAND_V0[:cut] + b"\0" * 17 if cut < 17 else HAND_V0[:cut])


@pytest.mark.parametrize("codec", [COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4])
def test_decompression_bombs_are_refused(codec: int) -> None:
    """A wrapper inflating past the bound is refused before it is inflated whole."""
    inner = _message(1, 0, None, b"\0" * (1 << 20))
    wrapper = _message(1, codec, None, compress_legacy(codec, inner, 1))
    assert len(wrapper) < 1 << 16
    with pytest.raises(CorruptRecordError, match="more than the limit"):
        parse_message_set(wrapper, max_inflated=1 << 16)
    assert parse_message_set(wrapper, max_inflated=2 << 20)[1][0].value == b"\0" * (1 << 20)


def test_nested_and_mismatched_wrappers_are_invalid() -> None:
    inner = _message(1, COMPRESSION_GZIP, None, gzip.compress(_message(1, 0, None, b"x")))
    with pytest.raises(InvalidRecordError, match="inside"):
        parse_message_set(_message(1, COMPRESSION_GZIP, None, gzip.compress(inner)))
    with pytest.raises(InvalidRecordError, match="magic"):
        parse_message_set(
            _message(1, COMPRESSION_GZIP, None, gzip.compress(_message(0, 0, None, b"x")))
        )
    with pytest.raises(InvalidRecordError, match="null"):
        parse_message_set(_message(0, COMPRESSION_GZIP, None, None))


@pytest.mark.parametrize("codec", [4, 5, 7])
def test_codecs_unknown_to_v0_v1_are_corrupt(codec: int) -> None:
    with pytest.raises(CorruptRecordError, match="codec"):
        parse_message_set(_message(1, codec, None, b"whatever"))


def test_garbage_inside_a_wrapper_is_corrupt() -> None:
    for codec, payload in (
        (COMPRESSION_GZIP, b"not gzip"),
        (COMPRESSION_SNAPPY, b"\x05garbage"),
        (COMPRESSION_LZ4, b"\x04\x22\x4d\x18garbage"),
    ):
        with pytest.raises(CorruptRecordError):
            parse_message_set(_message(1, codec, None, payload))


_bytes = st.one_of(st.none(), st.binary(max_size=40))


@settings(max_examples=60, deadline=None)
@given(
    magic=st.sampled_from([0, 1]),
    codec=st.sampled_from(CODECS),
    items=st.lists(st.tuples(_bytes, _bytes, st.integers(0, 2**40)), min_size=1, max_size=8),
)
def test_any_message_set_round_trips(
    magic: int, codec: int, items: list[tuple[bytes | None, bytes | None, int]]
) -> None:
    messages = [LegacyMessage(t if magic else -1, k, v) for k, v, t in items]
    legacy = _set(magic, messages)
    if codec != COMPRESSION_NONE:
        legacy = _message(magic, codec, None, compress_legacy(codec, legacy, magic))
    header, records = decode_batch(up_convert(legacy))
    assert parse_message_set(down_convert(header, records, magic, 0)) == (codec, messages)
