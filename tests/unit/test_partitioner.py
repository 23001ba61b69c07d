"""Partitioners: keyed records must land where the Java client puts them."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moldau.client.partitioner import (
    Crc32Partitioner,
    Murmur2Partitioner,
    RoundRobinPartitioner,
    StickyChooser,
    make_partitioner,
    murmur2,
    to_positive,
)

# Test vectors of Kafka's own UtilsTest.testMurmur2 (signed Java ints).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
    b"1": -1993445489,
    b"12": 126087238,
    b"123": -267702483,
    b"1234": -1614185708,
    b"12345": -1188365604,
}


@pytest.mark.parametrize(("key", "expected"), JAVA_MURMUR2.items())
def test_murmur2_matches_java_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_murmur2_of_empty_key() -> None:
    # Only the seed and length mixing: a fixed value, still a signed int32.
    assert -(2**31) <= murmur2(b"") < 2**31


@given(st.binary(max_size=64))
def test_murmur2_agrees_with_kafka_python(key: bytes) -> None:
    """kafka-python's port (unsigned result) is an independent implementation."""
    from kafka.partitioner.default import murmur2 as kafka_python_murmur2

    assert murmur2(key) & 0xFFFFFFFF == kafka_python_murmur2(key)


def test_to_positive_clears_the_sign_bit_like_java() -> None:
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-(2**31)) == 0
    assert to_positive(5) == 5


@pytest.mark.parametrize(("key", "expected"), JAVA_MURMUR2.items())
def test_murmur2_partition_is_java_formula(key: bytes, expected: int) -> None:
    part = Murmur2Partitioner()
    for n in (1, 3, 7, 100):
        assert part.partition("t", key, n) == (expected & 0x7FFFFFFF) % n


def test_known_java_placements() -> None:
    # toPositive(murmur2("foobar")) % 3 computed by hand from the vector above.
    assert Murmur2Partitioner().partition("t", b"foobar", 3) == (-790332482 & 0x7FFFFFFF) % 3
    assert Murmur2Partitioner().partition("t", b"21", 10) == 1173551340 % 10


@given(st.binary(max_size=40), st.integers(min_value=1, max_value=1000))
def test_crc32_partitioner(key: bytes, n: int) -> None:
    assert Crc32Partitioner().partition("t", key, n) == zlib.crc32(key) % n


def test_round_robin_ignores_keys_and_is_per_topic() -> None:
    part = RoundRobinPartitioner()
    assert [part.partition("a", b"k", 3) for _ in range(5)] == [0, 1, 2, 0, 1]
    assert part.partition("b", None, 3) == 0


def test_null_keys_stick_until_batch_closes() -> None:
    part = Murmur2Partitioner(rng=random.Random(7))
    first = part.partition("t", None, 4)
    assert all(part.partition("t", None, 4) == first for _ in range(10))
    part.on_new_batch("t", first, 4)
    second = part.partition("t", None, 4)
    assert second != first
    # A batch closing on another partition does not move the sticky choice.
    part.on_new_batch("t", (second + 1) % 4, 4)
    assert part.partition("t", None, 4) == second


def test_sticky_with_one_partition_and_shrunk_topic() -> None:
    chooser = StickyChooser(random.Random(1))
    assert chooser.partition("t", 1) == 0
    chooser.on_new_batch("t", 0, 1)
    assert chooser.partition("t", 1) == 0
    # A sticky choice beyond the current partition count is chosen afresh.
    chooser = StickyChooser(random.Random(1))
    while chooser.partition("t", 10) < 2:
        chooser.on_new_batch("t", chooser.partition("t", 10), 10)
    assert chooser.partition("t", 2) < 2


def test_make_partitioner() -> None:
    assert isinstance(make_partitioner("murmur2"), Murmur2Partitioner)
    assert isinstance(make_partitioner("crc32"), Crc32Partitioner)
    custom = make_partitioner(lambda key, n: n - 1)
    assert custom.partition("t", b"x", 5) == 4
    with pytest.raises(ValueError, match="unknown partitioner"):
        make_partitioner("nope")
    bad = make_partitioner(lambda key, n: n)
    with pytest.raises(ValueError):
        bad.partition("t", None, 2)
