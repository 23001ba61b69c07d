"""parse_fetched: records out of a fetch answer's bytes, from a position on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moldau.client.consumer import parse_fetched
from moldau.protocol.batch import COMPRESSION_LZ4, CorruptRecordError
from moldau.protocol.records import Record, build_batch


def batch(base_offset: int, count: int, *, control: bool = False, **kw: int) -> bytes:
    records = [
        Record(i, i * 10, f"k{base_offset + i}".encode(), f"v{base_offset + i}".encode(), [])
        for i in range(count)
    ]
    return build_batch(
        records, base_offset=base_offset, base_timestamp=1000, is_control=control, **kw
    )


def offsets(data: bytes, position: int) -> list[int]:
    return [r.offset for r in parse_fetched("t", 0, data, position).records]


def test_records_of_whole_batches() -> None:
    data = batch(0, 3) + batch(3, 2, compression=COMPRESSION_LZ4)
    fetched = parse_fetched("t", 4, data, 0)
    assert [r.offset for r in fetched.records] == [0, 1, 2, 3, 4]
    first = fetched.records[0]
    assert (first.topic, first.partition, first.key, first.value) == ("t", 4, b"k0", b"v0")
    assert [r.timestamp for r in fetched.records] == [1000, 1010, 1020, 1000, 1010]
    assert fetched.next_offset == 5 and not fetched.truncated


def test_records_before_the_position_are_skipped() -> None:
    data = batch(0, 3) + batch(3, 2)
    assert offsets(data, 2) == [2, 3, 4]
    assert offsets(data, 3) == [3, 4]
    assert parse_fetched("t", 0, data, 5).next_offset == 5


def test_partial_trailing_batch_is_left_for_the_next_fetch() -> None:
    whole = batch(0, 2)
    tail = batch(2, 5)
    for cut in (1, 12, 61, len(tail) - 1):
        fetched = parse_fetched("t", 0, whole + tail[:cut], 0)
        assert [r.offset for r in fetched.records] == [0, 1]
        assert fetched.next_offset == 2 and not fetched.truncated


def test_only_a_partial_batch_means_the_fetch_size_is_too_small() -> None:
    fetched = parse_fetched("t", 0, batch(0, 5)[:40], 0)
    assert not fetched.records and fetched.truncated and fetched.next_offset == 0


def test_control_batches_are_skipped_but_advance_the_position() -> None:
    data = batch(0, 2) + batch(2, 1, control=True)
    fetched = parse_fetched("t", 0, data, 0)
    assert [r.offset for r in fetched.records] == [0, 1]
    assert fetched.next_offset == 3


def test_gaps_from_compaction_are_jumped() -> None:
    gappy = build_batch(
        [Record(0, 0, b"a", b"1", []), Record(4, 0, b"b", b"2", [])],
        base_offset=10,
        last_offset_delta=6,
    )
    fetched = parse_fetched("t", 0, gappy, 10)
    assert [r.offset for r in fetched.records] == [10, 14]
    assert fetched.next_offset == 17


def test_empty_or_missing_records() -> None:
    for data in (None, b""):
        fetched = parse_fetched("t", 0, data, 7)
        assert not fetched.records and fetched.next_offset == 7 and not fetched.truncated


def test_corrupt_batch_raises() -> None:
    data = bytearray(batch(0, 2))
    data[17] ^= 0xFF  # the stored CRC no longer matches
    with pytest.raises(CorruptRecordError, match="CRC"):
        parse_fetched("t", 0, bytes(data), 0)
    assert len(parse_fetched("t", 0, bytes(data), 0, check_crcs=False).records) == 2


@given(st.lists(st.integers(1, 5), min_size=1, max_size=6), st.data())
def test_any_position_and_cut(sizes: list[int], data: st.DataObject) -> None:
    wire = b""
    base = 0
    for size in sizes:
        wire += batch(base, size)
        base += size
    position = data.draw(st.integers(0, base))
    cut = data.draw(st.integers(0, len(wire)))
    fetched = parse_fetched("t", 0, wire[:cut], position)
    got = [r.offset for r in fetched.records]
    assert got == list(range(position, position + len(got)))
    assert fetched.next_offset == max(position, position + len(got))
