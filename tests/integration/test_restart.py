"""Restarts on the same data directory keep what was stored.

A clean stop (SIGTERM) keeps everything: topics, their configs, offsets and
data. A kill -9 in the middle of a produce stream keeps every record the
broker acknowledged, at the offset it acknowledged, exactly once; records
sent afterwards continue where the log ends.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource

from conftest import (
    BrokerProcess,
    Rec,
    assert_round_trip,
    confluent_produce,
    confluent_read_all,
    create_topic,
    sample_records,
    wait_for,
)


def watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-marks"})
    try:
        return {
            p: tuple(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10))
            for p in range(partitions)
        }
    finally:
        consumer.close()


def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(10)
    return {name: entry.value for name, entry in entries.items() if not entry.is_default}


def test_sigterm_restart_keeps_topics_offsets_and_data(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "kept-three", 3, **{"retention.ms": "86400000"})
    create_topic(broker.bootstrap, "kept-one", 1, **{"cleanup.policy": "delete"})
    base = int(time.time() * 1000) - 60_000
    three = confluent_produce(broker.bootstrap, "kept-three", sample_records("three", 300, base))
    one = confluent_produce(broker.bootstrap, "kept-one", sample_records("one", 50, base))
    marks = watermarks(broker.bootstrap, "kept-three", 3)
    configs = topic_configs(broker.bootstrap, "kept-three")
    assert configs.get("retention.ms") == "86400000"

    assert broker.stop() == 0, broker.output()
    broker.start()

    metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert len(metadata.topics["kept-three"].partitions) == 3
    assert len(metadata.topics["kept-one"].partitions) == 1
    assert topic_configs(broker.bootstrap, "kept-three") == configs
    assert watermarks(broker.bootstrap, "kept-three", 3) == marks
    assert_round_trip(three, confluent_read_all(broker.bootstrap, "kept-three"))
    assert_round_trip(one, confluent_read_all(broker.bootstrap, "kept-one"))

    more = confluent_produce(broker.bootstrap, "kept-one", sample_records("more", 5, base + 1000))
    assert [r.offset for r in more] == [50, 51, 52, 53, 54]


@dataclass
class ProduceStream:
    """A producer thread that sends until stopped and records what was acknowledged.

    Not idempotent and without retries: a record is written at most once, so
    an acknowledged value can only be at its acknowledged offset.
    """

    bootstrap: str
    topic: str
    acked: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    failed: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "enable.idempotence": False,
                "retries": 0,
                "linger.ms": 1,
                "message.timeout.ms": 5000,
            }
        )

        def report(error: KafkaError | None, message: Message) -> None:
            if error is None:
                self.acked[message.value()] = (message.partition(), message.offset())
            else:
                self.failed += 1

        sequence = 0
        while not self.stop.is_set():
            if len(producer) >= 2000:  # keep a bounded number in flight
                producer.poll(0.01)
                continue
            try:
                producer.produce(
                    self.topic,
                    f"v{sequence}".encode(),
                    b"k%d" % (sequence % 11),
                    on_delivery=report,
                )
                sequence += 1
            except BufferError:
                producer.poll(0.05)
            producer.poll(0)
        producer.purge()
        producer.flush(10)


def test_kill_9_during_produce_keeps_every_acknowledged_record(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "crash", 3)
    stream = ProduceStream(broker.bootstrap, "crash")
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(stream.acked) >= 3000, 30, what="3000 acknowledged records")
        broker.kill()
    finally:
        stream.stop.set()
        thread.join(20)
    assert not thread.is_alive()
    acked = dict(stream.acked)

    broker.start()
    stored = confluent_read_all(broker.bootstrap, "crash")
    at = {(r.partition, r.offset): r.value for r in stored}
    assert {(p, o): v for v, (p, o) in acked.items()}.items() <= at.items(), (
        "acknowledged records lost or moved"
    )
    values = [r.value for r in stored]
    assert len(values) == len(set(values)), "a record is stored twice"
    for p in range(3):
        offsets = sorted(o for (q, o) in at if q == p)
        assert offsets == list(range(len(offsets))), f"gap in partition {p}"

    ends = {p: len([1 for (q, _) in at if q == p]) for p in range(3)}
    after = confluent_produce(
        broker.bootstrap, "crash", [Rec(b"k%d" % i, b"after-%d" % i) for i in range(30)]
    )
    for p in range(3):
        offsets = [r.offset for r in after if r.partition == p]
        assert offsets == list(range(ends[p], ends[p] + len(offsets)))


@pytest.mark.parametrize("how", ["sigterm", "kill -9"])
def test_restart_keeps_committed_offsets(broker: BrokerProcess, how: str) -> None:
    create_topic(broker.bootstrap, "committed", 2)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "keeper"})
    try:
        offsets = [TopicPartition("committed", 0, 7), TopicPartition("committed", 1, 3)]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()

    if how == "sigterm":
        assert broker.stop() == 0, broker.output()
    else:
        broker.kill()
    broker.start()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    wanted = [TopicPartition("committed", p) for p in (0, 1)]
    request = [ConsumerGroupTopicPartitions("keeper", wanted)]
    found = admin.list_consumer_group_offsets(request, request_timeout=5)["keeper"].result(10)
    assert [(tp.partition, tp.offset) for tp in found.topic_partitions] == [(0, 7), (1, 3)]


@pytest.mark.parametrize("how", ["sigterm", "kill -9"])
def test_many_segments_survive_restart(broker: BrokerProcess, how: str) -> None:
    """Tiny segments: reads, time lookups and appends span segment files, before and after."""
    create_topic(
        broker.bootstrap, "rolled", 2, **{"segment.bytes": "2000", "index.interval.bytes": "200"}
    )
    base = int(time.time() * 1000) - 60_000
    sent: list[Rec] = []
    for n in range(10):
        records = sample_records(f"round{n}", 20, base + 100 * n)
        codec = {"compression.type": "lz4" if n % 2 else "none"}
        sent += confluent_produce(broker.bootstrap, "rolled", records, **codec)
    assert len(list((broker.data_dir / "rolled-0").glob("*.log"))) > 3

    def check() -> None:
        assert_round_trip(sent, confluent_read_all(broker.bootstrap, "rolled"))
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "rolled-times"})
        try:
            for timestamp in (base + 250, base + 555, base + 910):
                query = [TopicPartition("rolled", p, timestamp) for p in range(2)]
                found = consumer.offsets_for_times(query, timeout=10)
                expected = [
                    min(r.offset for r in sent if r.partition == p and r.timestamp >= timestamp)
                    for p in range(2)
                ]
                assert [tp.offset for tp in found] == expected
        finally:
            consumer.close()

    check()
    if how == "sigterm":
        assert broker.stop() == 0, broker.output()
    else:
        broker.kill()
    broker.start()
    check()
    more = confluent_produce(broker.bootstrap, "rolled", sample_records("more", 10, base + 5000))
    sent += more
    check()
