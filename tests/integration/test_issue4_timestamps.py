"""Timestamps seen by real clients: LogAppendTime, lookups by time, limits.

A LogAppendTime topic hands out the broker's clock whatever the producer
put in; a CreateTime topic answers offsets_for_times from its time index
across segments, and ListOffsets -3 names the record with the largest
timestamp; timestamps too far from the broker's clock are refused.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import InvalidTimestampError

from conftest import BrokerProcess, create_topic, wait_for

CODECS = ("none", "gzip", "lz4", "zstd")
#: 2001-09-09: a CreateTime nobody would mistake for the broker's clock.
LONG_AGO = 1_000_000_000_000


def now_ms() -> int:
    return int(time.time() * 1000)


def produce_timed(
    bootstrap: str, topic: str, records: list[tuple[bytes, int]], **config: Any
) -> list[Any]:
    """Send (value, timestamp) pairs to partition 0; the delivered messages in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **config})
    delivered: list[Any] = []
    errors: list[Any] = []

    def report(error: Any, message: Any) -> None:
        (delivered if error is None else errors).append(message if error is None else error)

    for value, timestamp in records:
        producer.produce(topic, value=value, partition=0, timestamp=timestamp, on_delivery=report)
    assert producer.flush(15) == 0
    assert errors == []
    return delivered


def consume_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "timestamps"})
    got: list[Any] = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 10
        while len(got) < count:
            assert time.monotonic() < deadline, f"read {len(got)} of {count}"
            for message in consumer.consume(count, timeout=0.2):
                assert message.error() is None, message.error()
                got.append(message)
    finally:
        consumer.close()
    return got


def test_log_append_time_topic_stamps_the_brokers_clock(broker: BrokerProcess) -> None:
    topic = "appended-at"
    create_topic(broker.bootstrap, topic, 1, **{"message.timestamp.type": "LogAppendTime"})
    before = now_ms()
    delivered: list[Any] = []
    for codec in CODECS:
        records = [(f"{codec}-{i}".encode(), LONG_AGO + i) for i in range(10)]
        delivered += produce_timed(broker.bootstrap, topic, records, **{"compression.type": codec})
    after = now_ms()
    for message in delivered:
        kind, stamp = message.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before <= stamp <= after, message.timestamp()

    consumed = consume_all(broker.bootstrap, topic, 10 * len(CODECS))
    assert [m.value() for m in consumed] == [m.value() for m in delivered]
    for message in consumed:
        kind, stamp = message.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before <= stamp <= after, message.timestamp()

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        tp = KafkaTopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = [r for batch in consumer.poll(5000, max_records=1000).values() for r in batch]
    finally:
        consumer.close()
    assert records, "kafka-python read nothing"
    assert all(r.timestamp_type == 1 and before <= r.timestamp <= after for r in records)


@pytest.fixture
def timed_topic(broker: BrokerProcess) -> tuple[str, list[int]]:
    """A CreateTime topic over several segments: record i at LONG_AGO + 10 * i,
    except record 37, the newest of all."""
    topic = "timed"
    create_topic(broker.bootstrap, topic, 1, **{"segment.bytes": "2048"})
    stamps = [LONG_AGO + 10 * i for i in range(60)]
    stamps[37] = LONG_AGO + 10_000
    for first in range(0, 60, 6):  # ten batches of six: several segments
        produce_timed(
            broker.bootstrap,
            topic,
            [(b"%02d:" % i + b"x" * 150, stamps[i]) for i in range(first, first + 6)],
        )
    return topic, stamps


def expected_offset(stamps: list[int], target: int) -> int:
    """Kafka's answer: the first offset whose timestamp is at or after ``target``."""
    return next((offset for offset, stamp in enumerate(stamps) if stamp >= target), -1)


TARGETS = [
    LONG_AGO - 5,
    LONG_AGO,
    LONG_AGO + 1,
    LONG_AGO + 125,
    LONG_AGO + 370,
    LONG_AGO + 371,
    LONG_AGO + 590,
    LONG_AGO + 591,
    LONG_AGO + 10_000,
    LONG_AGO + 10_001,
]


def test_offsets_for_times_find_the_first_record_at_or_after(
    broker: BrokerProcess, timed_topic: tuple[str, list[int]]
) -> None:
    topic, stamps = timed_topic
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "by-time"})
    try:
        for target in TARGETS:
            [found] = consumer.offsets_for_times([TopicPartition(topic, 0, target)], timeout=10)
            assert found.error is None
            assert found.offset == expected_offset(stamps, target), target
    finally:
        consumer.close()

    kafka_consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    try:
        tp = KafkaTopicPartition(topic, 0)
        for target in TARGETS:
            answer = kafka_consumer.offsets_for_times({tp: target})[tp]
            want = expected_offset(stamps, target)
            if want < 0:
                assert answer is None, target
            else:
                assert answer is not None and answer.offset == want, target
                assert answer.timestamp == stamps[want]
    finally:
        kafka_consumer.close()


def test_aiokafka_offsets_for_times_and_ends(
    broker: BrokerProcess, timed_topic: tuple[str, list[int]]
) -> None:
    topic, stamps = timed_topic

    async def look_up() -> tuple[dict[int, int | None], int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            tp = KafkaTopicPartition(topic, 0)
            found = {}
            for target in TARGETS:
                answer = (await consumer.offsets_for_times({tp: target}))[tp]
                found[target] = None if answer is None else answer.offset
            start = (await consumer.beginning_offsets([tp]))[tp]
            end = (await consumer.end_offsets([tp]))[tp]
        finally:
            await consumer.stop()
        return found, start, end

    found, start, end = asyncio.run(look_up())
    for target in TARGETS:
        want = expected_offset(stamps, target)
        assert found[target] == (None if want < 0 else want), target
    assert (start, end) == (0, len(stamps))


def test_max_timestamp_lookup_names_the_newest_record(
    broker: BrokerProcess, timed_topic: tuple[str, list[int]]
) -> None:
    topic, stamps = timed_topic
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic, 0)
    answer = admin.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=10)[tp].result(10)
    assert (answer.offset, answer.timestamp) == (37, stamps[37])
    by_time = admin.list_offsets({tp: OffsetSpec.for_timestamp(LONG_AGO + 371)})[tp].result(10)
    assert (by_time.offset, by_time.timestamp) == (37, stamps[37])


def test_timestamps_too_far_from_the_brokers_clock_are_refused(broker: BrokerProcess) -> None:
    topic = "bounded-times"
    create_topic(
        broker.bootstrap,
        topic,
        1,
        **{
            "message.timestamp.before.max.ms": "60000",
            "message.timestamp.after.max.ms": "60000",
        },
    )
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    outcomes: list[Any] = []
    for stamp in (now_ms() - 3_600_000, now_ms() + 3_600_000, now_ms()):
        producer.produce(
            topic,
            value=b"%d" % stamp,
            timestamp=stamp,
            on_delivery=lambda error, message: outcomes.append(error),
        )
        assert producer.flush(10) == 0
    codes = [None if error is None else error.code() for error in outcomes]
    assert codes == [KafkaError.INVALID_TIMESTAMP, KafkaError.INVALID_TIMESTAMP, None]

    kafka_producer = KafkaProducer(bootstrap_servers=broker.bootstrap, retries=0)
    try:
        with pytest.raises(InvalidTimestampError):
            kafka_producer.send(topic, b"old", timestamp_ms=now_ms() - 3_600_000).get(10)
        stored = kafka_producer.send(topic, b"fresh", timestamp_ms=now_ms()).get(10)
    finally:
        kafka_producer.close(5)
    assert stored.offset == 1, "only the two fresh records were stored"
    consumed = consume_all(broker.bootstrap, topic, 2)
    assert [m.timestamp()[0] for m in consumed] == [TIMESTAMP_CREATE_TIME] * 2


def test_log_append_time_topic_ignores_limits_and_is_searched_by_append_time(
    broker: BrokerProcess,
) -> None:
    """The broker's clock replaces the producer's, so the limits on a producer's
    timestamp do not apply, and lookups by time search the appended times."""
    topic = "appended-and-bounded"
    create_topic(
        broker.bootstrap,
        topic,
        1,
        **{"message.timestamp.type": "LogAppendTime", "message.timestamp.before.max.ms": "1000"},
    )
    [first] = produce_timed(broker.bootstrap, topic, [(b"first", LONG_AGO)])
    between = now_ms() + 1
    second = wait_for(
        lambda: (
            (d := produce_timed(broker.bootstrap, topic, [(b"second", LONG_AGO)]))
            and d[0].timestamp()[1] >= between
            and d[0]
        ),
        5,
        0.001,
        "a later append time",
    )
    assert (first.offset(), first.timestamp()[0]) == (0, TIMESTAMP_LOG_APPEND_TIME)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "by-append-time"})
    try:
        for target, want in [
            (LONG_AGO, 0),
            (first.timestamp()[1], 0),
            (between, second.offset()),
            (second.timestamp()[1] + 1, -1),
        ]:
            [found] = consumer.offsets_for_times([TopicPartition(topic, 0, target)], timeout=10)
            assert found.offset == want, (target, found)
    finally:
        consumer.close()


def test_lookups_on_an_empty_partition(broker: BrokerProcess) -> None:
    """Nothing to find: max timestamp and a time lookup answer offset -1."""
    topic = "empty-lookups"
    create_topic(broker.bootstrap, topic, 1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic, 0)
    for spec in (OffsetSpec.max_timestamp(), OffsetSpec.for_timestamp(LONG_AGO)):
        answer = admin.list_offsets({tp: spec}, request_timeout=10)[tp].result(10)
        assert (answer.offset, answer.timestamp) == (-1, -1), spec
    for spec, offset in ((OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 0)):
        assert admin.list_offsets({tp: spec})[tp].result(10).offset == offset
