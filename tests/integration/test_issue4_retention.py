"""Retention and DeleteRecords seen by real clients: the log start offset moves.

Retention runs every 100 ms in these brokers and topics roll 1 KiB
segments, so expired data goes within a second or two of retention.ms.
A reader below the log start is told OFFSET_OUT_OF_RANGE and, with
auto.offset.reset=earliest, starts again at the new log start.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import OffsetOutOfRangeError

from conftest import BrokerProcess, create_topic, wait_for

SEGMENT_BYTES = 1024


@pytest.fixture
def retention_broker(broker_factory: Any) -> BrokerProcess:
    broker: BrokerProcess = broker_factory(log_retention_check_interval_ms="100")
    return broker


def produce_batches(
    bootstrap: str, topic: str, batches: int, per_batch: int, partition: int = 0, age_ms: int = 0
) -> None:
    """``batches`` flushes of ``per_batch`` 100-byte records: one batch each, so
    several segments of ``SEGMENT_BYTES``; timestamped ``age_ms`` in the past."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for b in range(batches):
        for r in range(per_batch):
            producer.produce(
                topic,
                value=b"%04d-%04d:" % (b, r) + b"x" * 90,
                partition=partition,
                timestamp=int(time.time() * 1000) - age_ms,
            )
        assert producer.flush(10) == 0


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        consumer.close()
    return int(low), int(high)


def list_offset(bootstrap: str, topic: str, partition: int, spec: OffsetSpec) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tp = TopicPartition(topic, partition)
    return int(admin.list_offsets({tp: spec}, request_timeout=10)[tp].result(10).offset)


def first_offset_read_from(bootstrap: str, topic: str, partition: int, start: int) -> int:
    """Where a confluent-kafka consumer with auto.offset.reset=earliest told to
    start at ``start`` actually starts."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "resetting",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, start)])
        message = wait_for(lambda: consumer.poll(0.2), 10, 0, "a record")
        assert message.error() is None, message.error()
        return int(message.offset())
    finally:
        consumer.close()


def assert_out_of_range_for_kafka_python(
    bootstrap: str, topic: str, partition: int, offset: int
) -> None:
    """kafka-python without an offset reset policy reports OFFSET_OUT_OF_RANGE."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="none", enable_auto_commit=False
    )
    try:
        tp = KafkaTopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        deadline = time.monotonic() + 5
        with pytest.raises(OffsetOutOfRangeError):
            while time.monotonic() < deadline:
                consumer.poll(200)
    finally:
        consumer.close()


def test_time_retention_moves_the_log_start(retention_broker: BrokerProcess) -> None:
    bootstrap, topic = retention_broker.bootstrap, "expiring-by-time"
    create_topic(
        bootstrap, topic, 1, **{"segment.bytes": str(SEGMENT_BYTES), "retention.ms": "5000"}
    )
    # Records a minute old expire at the next check; the fresh ones stay.
    produce_batches(bootstrap, topic, batches=6, per_batch=5, age_ms=60_000)
    produce_batches(bootstrap, topic, batches=4, per_batch=5)
    # One batch per segment: once every old segment is gone, the log starts at
    # the first fresh record. (Waiting for any move would race a pass that ran
    # while the old batches were still being written, seen under load.)
    low, high = wait_for(
        lambda: (marks := watermarks(bootstrap, topic))[0] == 30 and marks, 15, 0.1, "retention"
    )
    assert high == 50
    assert list_offset(bootstrap, topic, 0, OffsetSpec.earliest()) == low
    assert list_offset(bootstrap, topic, 0, OffsetSpec.latest()) == high
    assert_out_of_range_for_kafka_python(bootstrap, topic, 0, 0)
    assert first_offset_read_from(bootstrap, topic, 0, 0) == low


def test_size_retention_keeps_the_newest_bytes(retention_broker: BrokerProcess) -> None:
    bootstrap, topic = retention_broker.bootstrap, "expiring-by-size"
    create_topic(
        bootstrap,
        topic,
        1,
        **{"segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(3 * SEGMENT_BYTES)},
    )
    produce_batches(bootstrap, topic, batches=20, per_batch=5)
    # About 8 records of 100 bytes per segment; at most 3 segments and the
    # active one stay. A retention pass may run while the batches are still
    # arriving, so wait for one that saw them all.
    low, high = wait_for(
        lambda: 0 < (marks := watermarks(bootstrap, topic))[1] - marks[0] <= 5 * 10 and marks,
        15,
        0.1,
        "retention to keep at most 50 records",
    )
    assert high == 100
    assert first_offset_read_from(bootstrap, topic, 0, 0) == low


def test_delete_records_moves_the_low_watermark(retention_broker: BrokerProcess) -> None:
    bootstrap, topic = retention_broker.bootstrap, "deleted-records"
    create_topic(bootstrap, topic, 3)
    for partition in range(3):
        produce_batches(bootstrap, topic, batches=4, per_batch=5, partition=partition)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    [future] = admin.delete_records([TopicPartition(topic, 0, 7)]).values()
    assert future.result(10).low_watermark == 7
    assert watermarks(bootstrap, topic, 0) == (7, 20)
    assert list_offset(bootstrap, topic, 0, OffsetSpec.earliest()) == 7
    assert first_offset_read_from(bootstrap, topic, 0, 2) == 7
    assert_out_of_range_for_kafka_python(bootstrap, topic, 0, 6)

    kafka_admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        result = kafka_admin.delete_records({KafkaTopicPartition(topic, 1): 12})
    finally:
        kafka_admin.close()
    assert len(result) == 1
    assert watermarks(bootstrap, topic, 1) == (12, 20)
    assert first_offset_read_from(bootstrap, topic, 1, 0) == 12

    # -1 is the high watermark: everything goes; new records carry on at 20.
    [future] = admin.delete_records([TopicPartition(topic, 2, OFFSET_END)]).values()
    assert future.result(10).low_watermark == 20
    assert watermarks(bootstrap, topic, 2) == (20, 20)
    produce_batches(bootstrap, topic, batches=1, per_batch=1, partition=2)
    assert first_offset_read_from(bootstrap, topic, 2, 0) == 20

    # Deleting back below the log start changes nothing; beyond the end is refused.
    [future] = admin.delete_records([TopicPartition(topic, 0, 3)]).values()
    assert future.result(10).low_watermark == 7
    [future] = admin.delete_records([TopicPartition(topic, 0, 21)]).values()
    with pytest.raises(KafkaException) as refused:
        future.result(10)
    assert refused.value.args[0].code() == 1  # OFFSET_OUT_OF_RANGE
    assert watermarks(bootstrap, topic, 0) == (7, 20)


def test_expired_active_segment_is_rolled_and_removed(retention_broker: BrokerProcess) -> None:
    """With nothing newer arriving, the data of the active segment still expires:
    the log rolls (segment.ms) and the old segment goes; offsets carry on."""
    bootstrap, topic = retention_broker.bootstrap, "expiring-active"
    create_topic(bootstrap, topic, 1, **{"retention.ms": "300", "segment.ms": "100"})
    produce_batches(bootstrap, topic, batches=1, per_batch=5)
    wait_for(lambda: watermarks(bootstrap, topic) == (5, 5), 10, 0.05, "all records to expire")
    assert list_offset(bootstrap, topic, 0, OffsetSpec.earliest()) == 5
    produce_batches(bootstrap, topic, batches=1, per_batch=1)
    assert watermarks(bootstrap, topic)[1] == 6, "offsets did not carry on"


def test_log_start_survives_kill_9(retention_broker: BrokerProcess) -> None:
    """A log start moved by DeleteRecords (inside a segment) and by retention
    (whole segments) is where it was after a crash and a restart."""
    bootstrap, topic = retention_broker.bootstrap, "start-kept"
    create_topic(
        bootstrap, topic, 2, **{"segment.bytes": str(SEGMENT_BYTES), "retention.ms": "60000"}
    )
    produce_batches(bootstrap, topic, batches=4, per_batch=5, partition=0)
    produce_batches(bootstrap, topic, batches=6, per_batch=5, partition=1, age_ms=3_600_000)
    produce_batches(bootstrap, topic, batches=2, per_batch=5, partition=1)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [future] = admin.delete_records([TopicPartition(topic, 0, 13)]).values()
    assert future.result(10).low_watermark == 13
    expired = wait_for(lambda: watermarks(bootstrap, topic, 1)[0], 10, 0.05, "retention")
    retention_broker.kill()
    retention_broker.start()
    assert watermarks(bootstrap, topic, 0) == (13, 20)
    low, high = watermarks(bootstrap, topic, 1)
    # Retention may have removed more before the kill, never fresh records.
    assert expired <= low <= 30 and high == 40
    assert first_offset_read_from(bootstrap, topic, 0, 0) == 13
