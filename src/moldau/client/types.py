"""The small value types the client hands to its callers."""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "EARLIEST_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "MAX_TIMESTAMP",
    "ConsumerRecord",
    "OffsetAndTimestamp",
    "RecordMetadata",
    "TopicPartition",
]

#: ListOffsets' special timestamps (Kafka's ``ListOffsetsRequest`` constants).
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
MAX_TIMESTAMP = -3


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class RecordMetadata(NamedTuple):
    """Where a produced record was stored. ``offset`` is -1 with acks=0, as
    the broker does not answer; ``timestamp`` is the broker's LogAppendTime
    when the topic uses it, else the record's own."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class ConsumerRecord(NamedTuple):
    topic: str
    partition: int
    offset: int
    timestamp: int
    #: 0 = CreateTime, 1 = LogAppendTime
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


class OffsetAndTimestamp(NamedTuple):
    """A ListOffsets answer: -1/-1 when no record has a timestamp that late."""

    offset: int
    timestamp: int
    leader_epoch: int = -1
