"""The records of ``__transaction_state``, in Kafka's formats. Pure.

Kafka's tools (``kafka-dump-log --transaction-log-decoder``) and any broker
that replays the topic read these bytes, so they follow Kafka 3.9's
``TransactionLogKey`` and ``TransactionLogValue`` exactly:

- key, version 0: int16 version, then the transactional id as an
  int16-length string;
- value, version 0 (classic encoding, what Kafka 3.9 writes): int16 version,
  int64 producer id, int16 producer epoch, int32 transaction timeout, int8
  state id, a nullable array of (topic string, int32 array of partitions),
  int64 last update time, int64 start time. Version 1 is the same fields in
  the flexible encoding (compact lengths, tagged fields), which a later Kafka
  writes once ``transaction.version`` 1 is on: it is read, never written.

A null value is a tombstone: the transactional id expired. The partitions
are null in an Empty state, as Kafka writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from moldau.group._codec import DecodeError, Reader, Writer

from .state import TxnState

KEY_VERSION = 0
VALUE_VERSION = 0
_FLEXIBLE_VALUE_VERSION = 1

__all__ = [
    "TRANSACTION_STATE_TOPIC",
    "DecodeError",
    "TxnRecord",
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
]

#: Kafka's name for the log of transaction states (``Topic.TRANSACTION_STATE_TOPIC_NAME``).
TRANSACTION_STATE_TOPIC = "__transaction_state"


@dataclass(frozen=True)
class TxnRecord:
    """What the log keeps of one transactional id."""

    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: frozenset[tuple[str, int]]
    last_update_ms: int
    start_ms: int


def encode_key(transactional_id: str) -> bytes:
    return Writer().int16(KEY_VERSION).string(transactional_id).getvalue()


def decode_key(data: bytes) -> str:
    reader = Reader(data)
    version = reader.int16()
    if version != KEY_VERSION:
        raise DecodeError(f"unknown transaction log key version {version}")
    return reader.string()


def encode_value(record: TxnRecord) -> bytes:
    topics: dict[str, list[int]] = {}
    for topic, index in sorted(record.partitions):
        topics.setdefault(topic, []).append(index)
    groups = None if record.state is TxnState.EMPTY else sorted(topics.items())
    return (
        Writer()
        .int16(VALUE_VERSION)
        .int64(record.producer_id)
        .int16(record.producer_epoch)
        .int32(record.timeout_ms)
        .int8(record.state.value)
        .array(
            groups,
            lambda w, item: w.string(item[0]).array(item[1], lambda w2, p: w2.int32(p)),
        )
        .int64(record.last_update_ms)
        .int64(record.start_ms)
        .getvalue()
    )


def decode_value(data: bytes | None) -> TxnRecord | None:
    """The record, or None for a tombstone."""
    if data is None:
        return None
    version = Reader(data).int16()
    if version not in (VALUE_VERSION, _FLEXIBLE_VALUE_VERSION):
        raise DecodeError(f"unknown transaction log value version {version}")
    reader = Reader(data[2:], flexible=version == _FLEXIBLE_VALUE_VERSION)
    producer_id = reader.int64()
    epoch = reader.int16()
    timeout_ms = reader.int32()
    state_id = reader.int8()
    try:
        state = TxnState(state_id)
    except ValueError:
        raise DecodeError(f"unknown transaction state {state_id}") from None

    def read_topic(r: Reader) -> list[tuple[str, int]]:
        topic = r.string()
        indexes = r.array(lambda r2: r2.int32())
        r.end_struct()
        return [(topic, i) for i in indexes]

    groups = reader.nullable_array(read_topic) or []
    last_update_ms = reader.int64()
    start_ms = reader.int64()
    reader.end_struct()
    partitions = frozenset(tp for group in groups for tp in group)
    return TxnRecord(producer_id, epoch, timeout_ms, state, partitions, last_update_ms, start_ms)
