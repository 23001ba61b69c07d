"""The consumer protocol: what Kafka consumers put inside JoinGroup and SyncGroup.

To the coordinator a member's protocol metadata and assignment are opaque
bytes; only the clients agree on their meaning. Groups whose protocol type is
``"consumer"`` all use this layout, and the broker reads it in a few places:
to know which topics an active group consumes (OffsetDelete refuses those,
offset expiry spares them) and to show subscriptions and assignments in
describe and lag output.

Subscription
    version int16, topics [string], userData bytes?,
    ownedPartitions [topic string, partitions [int32]] (v1+),
    generationId int32 (v2+), rackId string? (v3+)
Assignment
    version int16, assignedPartitions [topic string, partitions [int32]],
    userData bytes?  (versions 1-3 add nothing to version 0)

Newer versions only ever append fields, so, as Kafka's clients do, a version
above the newest we know is read as the newest we know.
"""

from __future__ import annotations

from dataclasses import dataclass

from moldau.group._codec import DecodeError, Reader, Writer

PROTOCOL_TYPE = "consumer"
SUBSCRIPTION_VERSION = 3
ASSIGNMENT_VERSION = 3

TopicPartitions = tuple[tuple[str, tuple[int, ...]], ...]
"""Partitions grouped by topic, in the order they appear on the wire."""


@dataclass(frozen=True)
class Subscription:
    topics: tuple[str, ...]
    user_data: bytes | None = None
    owned_partitions: TopicPartitions = ()
    generation_id: int = -1
    rack_id: str | None = None
    version: int = SUBSCRIPTION_VERSION


@dataclass(frozen=True)
class Assignment:
    partitions: TopicPartitions
    user_data: bytes | None = None
    version: int = ASSIGNMENT_VERSION


def _write_topic_partitions(w: Writer, item: tuple[str, tuple[int, ...]]) -> None:
    topic, partitions = item
    w.string(topic).array(partitions, Writer.int32)


def _read_topic_partitions(r: Reader) -> tuple[str, tuple[int, ...]]:
    return r.string(), tuple(r.array(Reader.int32))


def _read_version(r: Reader) -> int:
    version = r.int16()
    if version < 0:
        raise DecodeError(f"negative consumer protocol version {version}")
    return version


def encode_subscription(s: Subscription) -> bytes:
    w = Writer().int16(s.version).array(s.topics, Writer.string).bytes(s.user_data)
    if s.version >= 1:
        w.array(s.owned_partitions, _write_topic_partitions)
    if s.version >= 2:
        w.int32(s.generation_id)
    if s.version >= 3:
        w.string(s.rack_id)
    return w.getvalue()


def decode_subscription(data: bytes) -> Subscription:
    r = Reader(data)
    version = _read_version(r)
    topics = tuple(r.array(Reader.string))
    user_data = r.nullable_bytes()
    owned = tuple(r.array(_read_topic_partitions)) if version >= 1 else ()
    generation_id = r.int32() if version >= 2 else -1
    rack_id = r.nullable_string() if version >= 3 else None
    return Subscription(topics, user_data, owned, generation_id, rack_id, version)


def encode_assignment(a: Assignment) -> bytes:
    w = Writer().int16(a.version).array(a.partitions, _write_topic_partitions)
    return w.bytes(a.user_data).getvalue()


def decode_assignment(data: bytes) -> Assignment:
    r = Reader(data)
    version = _read_version(r)
    partitions = tuple(r.array(_read_topic_partitions))
    return Assignment(partitions, r.nullable_bytes(), version)
