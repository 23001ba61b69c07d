"""Exactly-once consume-transform-produce with confluent-kafka, as Kafka
Streams and Flink's sink do it: a group member reads an input topic, and a
transactional producer writes the transformed values and the member's offsets
(send_offsets_to_transaction) in one transaction. An aborted transaction and
a processor that dies mid-transaction are redone from the last committed
offsets, and a read_committed reader of the output sees every input value
transformed exactly once."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from conftest import BrokerProcess, confluent_read_isolated, create_topic

PARTITIONS = 3
VALUES = 120


class Processor:
    """One incarnation of the application: a group member and its
    transactional producer (``transactional.id`` fixed per application, so a
    new incarnation fences the one before)."""

    def __init__(self, broker: BrokerProcess, source: str, sink: str) -> None:
        self.source, self.sink = source, sink
        self.consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": f"{source}-etl",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "log_level": 2,
            }
        )
        self.consumer.subscribe([source])
        self.producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "transactional.id": f"{source}-etl",
                "linger.ms": 5,
                "log_level": 2,
            }
        )
        self.producer.init_transactions(30)

    def transaction(self, batch: int, *, end: str) -> int:
        """Read up to ``batch`` values and write them transformed with the
        offsets in one transaction, ended by ``end``: commit, abort, or
        nothing at all (the process dies). How many values it read."""
        messages = [m for m in self.consumer.consume(batch, timeout=1.0) if m.error() is None]
        if not messages:
            return 0
        self.producer.begin_transaction()
        for message in messages:
            self.producer.produce(self.sink, (message.value() or b"").upper())
        positions = self.consumer.position(self.consumer.assignment())
        self.producer.send_offsets_to_transaction(
            positions, self.consumer.consumer_group_metadata(), 30
        )
        if end == "commit":
            self.producer.commit_transaction(30)
        elif end == "abort":
            self.producer.abort_transaction(30)
            self._rewind()
        return len(messages)

    def _rewind(self) -> None:
        """After an abort, read again from the last committed offsets."""
        committed = self.consumer.committed(self.consumer.assignment(), timeout=10)
        for tp in committed:
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))

    def close(self) -> None:
        self.consumer.close()


def _committed_offsets(broker: BrokerProcess, source: str) -> int:
    reader = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"{source}-etl"})
    try:
        found = reader.committed([TopicPartition(source, p) for p in range(PARTITIONS)], 10)
        return sum(max(tp.offset, 0) for tp in found)
    finally:
        reader.close()


def test_consume_transform_produce_is_exactly_once_across_an_abort_and_a_crash(
    broker: BrokerProcess,
) -> None:
    source, sink = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("in", "out"))
    create_topic(broker.bootstrap, source, PARTITIONS)
    create_topic(broker.bootstrap, sink, PARTITIONS)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(VALUES):
        producer.produce(source, f"v{i}".encode(), partition=i % PARTITIONS)
    assert producer.flush(10) == 0

    first = Processor(broker, source, sink)
    deadline = time.monotonic() + 60
    read = 0
    while read == 0 and time.monotonic() < deadline:  # until the group has formed
        read = first.transaction(20, end="commit")
    assert read and first.transaction(20, end="abort")
    # The first incarnation dies with a transaction open: its outputs and
    # offsets are written but never committed.
    assert first.transaction(20, end="none")
    crashed = first.producer
    first.close()

    second = Processor(broker, source, sink)  # fences the first, aborting its transaction
    while _committed_offsets(broker, source) < VALUES and time.monotonic() < deadline:
        second.transaction(50, end="commit")
    second.close()
    del crashed

    assert _committed_offsets(broker, source) == VALUES
    outputs = confluent_read_isolated(broker.bootstrap, sink, PARTITIONS, "read_committed", VALUES)
    assert sorted(outputs) == sorted(f"V{i}".encode() for i in range(VALUES))
    # The aborted and the crashed transactions' outputs are in the log, unread.
    everything = confluent_read_isolated(
        broker.bootstrap, sink, PARTITIONS, "read_uncommitted", VALUES + 2
    )
    assert len(everything) > VALUES
