"""kafka-python against a real broker, over real sockets.

One topic's life: created with KafkaAdminClient, filled with keyed records
with headers and timestamps in every codec kafka-python has (snappy, lz4 and
zstd through the packages of the ``test`` extra), read back partition by
partition, its offsets listed through both the consumer and the admin API,
then deleted.
"""

from __future__ import annotations

import time
from dataclasses import replace

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec

from conftest import (
    BrokerProcess,
    Rec,
    assert_round_trip,
    create_topic,
    sample_records,
    wait_for,
)

CODECS = (None, "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 40
PARTITIONS = 3


def produce(
    bootstrap: str, topic: str, codec: str | None, records: list[Rec], idempotent: bool = False
) -> list[Rec]:
    """Send ``records`` with one producer; returns them with their acknowledged place.

    kafka-python 3 is idempotent by default (InitProducerId, sequence
    numbers); the codec tests turn that off to test one thing at a time.
    """
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        compression_type=codec,
        acks="all",
        linger_ms=5,
        enable_idempotence=idempotent,
    )
    try:
        futures = [
            producer.send(
                topic,
                value=record.value,
                key=record.key,
                headers=list(record.headers),
                timestamp_ms=record.timestamp,
            )
            for record in records
        ]
        producer.flush(15)
        placed = [future.get(0) for future in futures]
    finally:
        producer.close(5)
    return [
        replace(r, partition=m.partition, offset=m.offset)
        for r, m in zip(records, placed, strict=True)
    ]


def consume_all(consumer: KafkaConsumer, topic: str, expected: int) -> list[Rec]:
    """Read every partition from the beginning until ``expected`` records arrived."""
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    consumer.seek_to_beginning()
    got: list[Rec] = []
    deadline = time.monotonic() + 20
    while len(got) < expected and time.monotonic() < deadline:
        for messages in consumer.poll(timeout_ms=500).values():
            for message in messages:
                assert message.timestamp_type == 0  # CreateTime
                got.append(
                    Rec(
                        key=message.key,
                        value=message.value,
                        headers=tuple(message.headers),
                        timestamp=message.timestamp,
                        partition=message.partition,
                        offset=message.offset,
                    )
                )
    return got


def first_offset_at(sent: list[Rec], partition: int, timestamp: int) -> int | None:
    """Kafka's answer to a timestamp query: the first offset at or after ``timestamp``."""
    return min(
        (r.offset for r in sent if r.partition == partition and r.timestamp >= timestamp),
        default=None,
    )


def test_topic_life_in_every_codec(broker: BrokerProcess) -> None:
    topic = "kafka-python-life"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        admin.create_topics({topic: {"num_partitions": PARTITIONS, "replication_factor": 1}})
        wait_for(lambda: topic in admin.list_topics(), 10, what="topic in metadata")
        [described] = admin.describe_topics([topic])
        assert len(described["partitions"]) == PARTITIONS

        base = int(time.time() * 1000) - 60_000
        sent: list[Rec] = []
        for n, codec in enumerate(CODECS):
            records = sample_records(codec or "none", PER_CODEC, base + n * 1000)
            sent += produce(broker.bootstrap, topic, codec, records)
        assert {r.partition for r in sent} == set(range(PARTITIONS))

        assert_round_trip(sent, consume_all(consumer, topic, len(sent)))

        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        counts = {TopicPartition(topic, p): sum(r.partition == p for r in sent) for p in range(3)}
        assert consumer.beginning_offsets(partitions) == dict.fromkeys(counts, 0)
        assert consumer.end_offsets(partitions) == counts
        for timestamp in (base - 1, base + 2500, base + 4000 + PER_CODEC - 1, base + 10_000):
            found = consumer.offsets_for_times(dict.fromkeys(partitions, timestamp))
            answers = {tp: None if f is None else f.offset for tp, f in found.items()}
            assert answers == {tp: first_offset_at(sent, tp.partition, timestamp) for tp in counts}

        by_admin = admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.LATEST))
        assert {tp: found.offset for tp, found in by_admin.items()} == counts
        by_admin = admin.list_partition_offsets(dict.fromkeys(partitions, OffsetSpec.EARLIEST))
        assert {tp: found.offset for tp, found in by_admin.items()} == dict.fromkeys(counts, 0)

        admin.delete_topics([topic])
        wait_for(lambda: topic not in admin.list_topics(), 10, what="topic to be deleted")
    finally:
        consumer.close()
        admin.close()


def test_default_producer_is_idempotent_and_works(broker: BrokerProcess) -> None:
    topic = "kafka-python-idempotent"
    create_topic(broker.bootstrap, topic, 1)
    records = sample_records("idempotent", 10, int(time.time() * 1000))
    sent = produce(broker.bootstrap, topic, "gzip", records, idempotent=True)
    assert [r.offset for r in sent] == list(range(10))


def test_list_offsets_max_timestamp(broker: BrokerProcess) -> None:
    topic = "kafka-python-max-timestamp"
    create_topic(broker.bootstrap, topic, 1)
    base = int(time.time() * 1000) - 60_000
    records = sample_records("max", 10, base)
    records[3] = replace(records[3], timestamp=base + 100)  # newest, not last
    sent = produce(broker.bootstrap, topic, None, records)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        found = admin.list_partition_offsets({tp: OffsetSpec.MAX_TIMESTAMP})[tp]
    finally:
        admin.close()
    assert (found.offset, found.timestamp) == (sent[3].offset, base + 100)


def test_position_past_the_end_resets_to_earliest(broker: BrokerProcess) -> None:
    topic = "kafka-python-reset"
    create_topic(broker.bootstrap, topic, 1)
    sent = produce(broker.bootstrap, topic, None, sample_records("reset", 5, 1_000_000))
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 1000)
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < deadline:
            got += [m.value for ms in consumer.poll(timeout_ms=200).values() for m in ms]
    finally:
        consumer.close()
    assert got == [r.value for r in sent]
