"""Choosing a partition for a record.

Keyed records must land where every other Kafka client puts them, or two
producers in different languages split one key's history across partitions.
The Java client's default is ``toPositive(murmur2(key)) % numPartitions``
(librdkafka calls it ``murmur2_random``); librdkafka's own default hashes with
CRC32. Both are here, bit for bit, plus round-robin.

Records without a key have no natural home. Spreading them one by one over
partitions makes many tiny batches; the Java client (KIP-480) instead sticks
to one partition until the batch being filled there is closed, then moves on.
``StickyChooser`` does that; the producer tells the partitioner when a batch
closes through ``on_new_batch``.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "PARTITIONER_NAMES",
    "Crc32Partitioner",
    "FunctionPartitioner",
    "HashPartitioner",
    "Murmur2Partitioner",
    "Partitioner",
    "RoundRobinPartitioner",
    "StickyChooser",
    "make_partitioner",
    "murmur2",
    "to_positive",
]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK32 = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 (32 bit) as Kafka's Java ``Utils.murmur2``: a signed int32.

    Java works on wrapping signed ints; we keep every intermediate in 32 unsigned
    bits and only reinterpret the final value as signed. Java's ``>>>`` is a
    logical shift, which on the unsigned form is plain ``>>``.
    """
    length = len(data)
    h = (_SEED ^ length) & _MASK32
    whole = length & ~3
    for i in range(0, whole, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK32
        k ^= k >> 24
        k = (k * _M) & _MASK32
        h = ((h * _M) & _MASK32) ^ k
    tail = length & 3
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK32
    h ^= h >> 13
    h = (h * _M) & _MASK32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(value: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not ``abs``, which
    would map two hashes to one and overflow on ``Integer.MIN_VALUE``)."""
    return value & 0x7FFFFFFF


class Partitioner(Protocol):
    """Picks the partition of one record of ``topic``.

    ``on_new_batch`` is called when the producer closes the batch it was
    filling for ``partition``; partitioners that do not care ignore it.
    """

    def partition(self, topic: str, key: bytes | None, num_partitions: int) -> int: ...

    def on_new_batch(self, topic: str, partition: int, num_partitions: int) -> None: ...


class StickyChooser:
    """The KIP-480 choice for records without a key: one partition per topic
    until its batch closes, then a different one at random."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._current: dict[str, int] = {}

    def partition(self, topic: str, num_partitions: int) -> int:
        current = self._current.get(topic)
        if current is None or current >= num_partitions:
            current = self._rng.randrange(num_partitions)
            self._current[topic] = current
        return current

    def on_new_batch(self, topic: str, partition: int, num_partitions: int) -> None:
        if self._current.get(topic) != partition or num_partitions < 2:
            return
        choice = self._rng.randrange(num_partitions - 1)
        self._current[topic] = choice if choice < partition else choice + 1


class HashPartitioner:
    """Keyed records by ``hash(key) % n``; keyless ones stick (see module doc)."""

    def __init__(self, hash_key: Callable[[bytes], int], rng: random.Random | None = None) -> None:
        self._hash = hash_key
        self._sticky = StickyChooser(rng)

    def partition(self, topic: str, key: bytes | None, num_partitions: int) -> int:
        if key is None:
            return self._sticky.partition(topic, num_partitions)
        return self._hash(key) % num_partitions

    def on_new_batch(self, topic: str, partition: int, num_partitions: int) -> None:
        self._sticky.on_new_batch(topic, partition, num_partitions)


class Murmur2Partitioner(HashPartitioner):
    """The Java client's default (``BuiltInPartitioner.partitionForKey``)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(lambda key: to_positive(murmur2(key)), rng)


class Crc32Partitioner(HashPartitioner):
    """librdkafka's ``consistent`` partitioner: ``crc32(key) % n``."""

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(zlib.crc32, rng)


class RoundRobinPartitioner:
    """Every record to the next partition of its topic, keys ignored (as the
    Java client's ``RoundRobinPartitioner``)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def partition(self, topic: str, key: bytes | None, num_partitions: int) -> int:
        n = self._next.get(topic, 0)
        self._next[topic] = n + 1
        return n % num_partitions

    def on_new_batch(self, topic: str, partition: int, num_partitions: int) -> None:
        pass


class FunctionPartitioner:
    """A user function ``(key, num_partitions) -> partition`` as a partitioner."""

    def __init__(self, choose: Callable[[bytes | None, int], int]) -> None:
        self._choose = choose

    def partition(self, topic: str, key: bytes | None, num_partitions: int) -> int:
        chosen = self._choose(key, num_partitions)
        if not 0 <= chosen < num_partitions:
            raise ValueError(f"partitioner chose {chosen} of {num_partitions} partitions")
        return chosen

    def on_new_batch(self, topic: str, partition: int, num_partitions: int) -> None:
        pass


_BY_NAME: dict[str, Callable[[], Partitioner]] = {
    "murmur2": Murmur2Partitioner,
    "crc32": Crc32Partitioner,
    "round-robin": RoundRobinPartitioner,
}

PARTITIONER_NAMES = tuple(_BY_NAME)


def make_partitioner(
    spec: str | Partitioner | Callable[[bytes | None, int], int],
) -> Partitioner:
    """A partitioner from a name (``murmur2``, ``crc32``, ``round-robin``), an
    object with ``partition``/``on_new_batch``, or a plain function."""
    if isinstance(spec, str):
        try:
            return _BY_NAME[spec]()
        except KeyError:
            raise ValueError(
                f"unknown partitioner {spec!r} (choose from {', '.join(_BY_NAME)})"
            ) from None
    if hasattr(spec, "partition") and hasattr(spec, "on_new_batch"):
        return spec
    if callable(spec):
        return FunctionPartitioner(spec)
    raise TypeError(f"not a partitioner: {spec!r}")
