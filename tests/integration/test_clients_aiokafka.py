"""aiokafka against a real broker, over real sockets.

One topic's life: created with AIOKafkaAdminClient, filled with keyed records
with headers and timestamps in every codec aiokafka has, read back partition
by partition, its offsets listed through the consumer, then deleted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from conftest import BrokerProcess, Rec, assert_round_trip, sample_records

CODECS = (None, "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 40
PARTITIONS = 3


async def produce(bootstrap: str, topic: str, codec: str | None, records: list[Rec]) -> list[Rec]:
    """Send ``records`` with one producer; returns them with their acknowledged place."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, compression_type=codec, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                value=record.value,
                key=record.key,
                headers=list(record.headers),
                timestamp_ms=record.timestamp,
            )
            for record in records
        ]
        placed = await asyncio.wait_for(asyncio.gather(*futures), 15)
    finally:
        await producer.stop()
    return [
        replace(r, partition=m.partition, offset=m.offset)
        for r, m in zip(records, placed, strict=True)
    ]


async def consume_all(consumer: AIOKafkaConsumer, topic: str, expected: int) -> list[Rec]:
    """Read every partition from the beginning until ``expected`` records arrived."""
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    await consumer.seek_to_beginning()
    got: list[Rec] = []
    deadline = time.monotonic() + 20
    while len(got) < expected and time.monotonic() < deadline:
        for messages in (await consumer.getmany(timeout_ms=500)).values():
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


async def topic_life(bootstrap: str) -> None:
    topic = "aiokafka-life"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        [described] = await admin.describe_topics([topic])
        assert len(described["partitions"]) == PARTITIONS

        base = int(time.time() * 1000) - 60_000
        sent: list[Rec] = []
        for n, codec in enumerate(CODECS):
            records = sample_records(codec or "none", PER_CODEC, base + n * 1000)
            sent += await produce(bootstrap, topic, codec, records)
        assert {r.partition for r in sent} == set(range(PARTITIONS))

        assert_round_trip(sent, await consume_all(consumer, topic, len(sent)))

        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        counts = {tp: sum(r.partition == tp.partition for r in sent) for tp in partitions}
        assert await consumer.beginning_offsets(partitions) == dict.fromkeys(counts, 0)
        assert await consumer.end_offsets(partitions) == counts
        for timestamp in (base - 1, base + 2500, base + 4000 + PER_CODEC - 1, base + 10_000):
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, timestamp))
            answers = {tp: None if f is None else f.offset for tp, f in found.items()}
            assert answers == {tp: first_offset_at(sent, tp.partition, timestamp) for tp in counts}

        # A consumer still assigned to the topic would refresh its metadata
        # and auto-create it again (auto.create.topics.enable), as with Kafka.
        consumer.unsubscribe()
        await admin.delete_topics([topic])
        deadline = time.monotonic() + 10
        while topic in await admin.list_topics():
            assert time.monotonic() < deadline, "topic still listed after DeleteTopics"
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()
        await admin.close()


def test_topic_life_in_every_codec(broker: BrokerProcess) -> None:
    asyncio.run(asyncio.wait_for(topic_life(broker.bootstrap), 60))


async def reset_past_the_end(bootstrap: str) -> None:
    topic = "aiokafka-reset"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    sent = await produce(bootstrap, topic, None, sample_records("reset", 5, 1_000_000))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 1000)
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            got += [m.value for ms in batches.values() for m in ms]
    finally:
        await consumer.stop()
    assert got == [r.value for r in sent]


def test_position_past_the_end_resets_to_earliest(broker: BrokerProcess) -> None:
    asyncio.run(asyncio.wait_for(reset_past_the_end(broker.bootstrap), 30))
