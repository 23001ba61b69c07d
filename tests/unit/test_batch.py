"""Record batch v2 header codec: framing, validation and in-place edits."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moldau.protocol import batch as b


def make(payload: bytes = b"x" * 20, count: int = 3, **kw: int) -> bytes:
    return b.assemble_batch(payload=payload, records_count=count, last_offset_delta=count - 1, **kw)


def test_header_fields_and_derived_properties() -> None:
    raw = make(
        base_offset=100,
        attributes=b.COMPRESSION_LZ4 | b.TRANSACTIONAL_BIT,
        base_timestamp=1000,
        max_timestamp=1500,
        producer_id=7,
        producer_epoch=2,
        base_sequence=5,
    )
    h = b.read_header(raw)
    assert b.HEADER_SIZE == 61
    assert h.base_offset == 100 and h.magic == 2
    assert h.size == len(raw) == 61 + 20
    assert h.last_offset == 102 and h.next_offset == 103
    assert h.compression == b.COMPRESSION_LZ4
    assert h.is_transactional and not h.is_control
    assert h.timestamp_type == 0
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (7, 2, 5)
    b.validate(h, raw)


def test_iter_batches_yields_views_without_copy() -> None:
    raws = [make(b"a" * n, base_offset=i) for i, n in enumerate((0, 5, 300))]
    buf = bytearray(b"".join(raws))
    got = list(b.iter_batches(buf))
    assert [bytes(v) for _, v in got] == raws
    assert [h.base_offset for h, _ in got] == [0, 1, 2]
    got[1][1][0] = 0xFF  # a view into buf, not a copy
    assert buf[len(raws[0])] == 0xFF


def test_truncated_tail_is_corrupt_unless_allowed() -> None:
    raw = make() + make()
    for cut in (1, 30, 70):
        with pytest.raises(b.CorruptRecordError):
            list(b.iter_batches(raw[:-cut]))
        assert len(list(b.iter_batches(raw[:-cut], allow_partial_tail=True))) == 1


def test_bad_length_is_corrupt() -> None:
    raw = bytearray(make())
    struct.pack_into(">i", raw, 8, 10)
    with pytest.raises(b.CorruptRecordError) as e:
        b.read_header(raw)
    assert e.value.error_code == 2


@pytest.mark.parametrize("magic", [0, 1])
def test_old_magic_refused(magic: int) -> None:
    raw = bytearray(make())
    raw[16] = magic
    with pytest.raises(b.UnsupportedMagicError) as e:
        list(b.iter_batches(raw))
    assert e.value.error_code == 43
    # a v0 message shorter than a v2 header is still recognised
    with pytest.raises(b.UnsupportedMagicError):
        b.read_header(raw[:40])


def test_unknown_magic_is_corrupt() -> None:
    raw = bytearray(make())
    raw[16] = 3
    with pytest.raises(b.CorruptRecordError):
        b.read_header(raw)


def test_crc_mismatch() -> None:
    raw = bytearray(make())
    raw[-1] ^= 1
    h = b.read_header(raw)
    with pytest.raises(b.CorruptRecordError):
        b.validate(h, raw)


@pytest.mark.parametrize(
    ("kw", "count", "delta"),
    [
        ({}, 0, -1),
        ({}, 3, 1),
        ({"attributes": b.CONTROL_BIT}, 1, 0),
        ({"producer_id": 5, "base_sequence": -1}, 1, 0),
    ],
)
def test_client_rules(kw: dict[str, int], count: int, delta: int) -> None:
    raw = b.assemble_batch(payload=b"", records_count=count, last_offset_delta=delta, **kw)
    h = b.read_header(raw)
    with pytest.raises(b.InvalidRecordError) as e:
        b.validate(h, raw)
    assert e.value.error_code == 87
    b.validate(h, raw, from_client=False)


def test_patches_outside_crc_keep_batch_valid() -> None:
    buf = bytearray(make() + make())
    second = len(buf) // 2
    b.patch_base_offset(buf, second, 1 << 40)
    b.patch_leader_epoch(buf, second, 9)
    h = b.read_header(buf, second)
    assert (h.base_offset, h.partition_leader_epoch) == (1 << 40, 9)
    b.validate(h, memoryview(buf)[second:])
    assert b.read_header(buf).base_offset == 0


def test_stamp_log_append_time_recomputes_crc() -> None:
    buf = bytearray(make(attributes=b.COMPRESSION_GZIP, max_timestamp=5))
    b.stamp_log_append_time(memoryview(buf), 0, 123456)
    h = b.read_header(buf)
    assert h.timestamp_type == b.TIMESTAMP_LOG_APPEND_TIME
    assert h.max_timestamp == 123456 and h.compression == b.COMPRESSION_GZIP
    b.validate(h, buf)


@given(st.lists(st.tuples(st.binary(max_size=200), st.integers(1, 1000)), min_size=1, max_size=10))
def test_iter_batches_round_trip(specs: list[tuple[bytes, int]]) -> None:
    raws = [make(p, count=c) for p, c in specs]
    got = list(b.iter_batches(b"".join(raws)))
    assert [bytes(v) for _, v in got] == raws
    for h, v in got:
        b.validate(h, v)


def test_read_offset_range_needs_only_the_prefix() -> None:
    raw = make(count=5, base_offset=40)
    assert b.read_offset_range(raw[: b.OFFSET_RANGE_SIZE]) == (40, len(raw), 44)


def test_unchecked_prefix_equals_patching_in_place() -> None:
    raw = make(count=4)
    h = b.read_header(raw)
    patched = bytearray(raw)
    b.patch_base_offset(patched, 0, 77)
    b.patch_leader_epoch(patched, 0, 3)
    assert b.unchecked_prefix(h, 77, 3) + raw[b.CRC_OFFSET :] == patched
