"""confluent-kafka (librdkafka) against a real broker, over real sockets.

One topic's life: created with the admin API, filled with keyed records with
headers and timestamps in every codec librdkafka has, read back partition by
partition, its offsets listed every way librdkafka can ask, then deleted.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

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

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 40
PARTITIONS = 3


def list_offsets(admin: AdminClient, topic: str, spec: OffsetSpec) -> dict[int, int]:
    """ListOffsets through the admin API: partition -> offset."""
    wanted = {TopicPartition(topic, p): spec for p in range(PARTITIONS)}
    futures = admin.list_offsets(wanted, request_timeout=10)
    return {tp.partition: future.result(10).offset for tp, future in futures.items()}


def first_offset_at(sent: list[Rec], partition: int, timestamp: int) -> int:
    """Kafka's answer to a timestamp query: the first offset at or after ``timestamp``."""
    return min(
        (r.offset for r in sent if r.partition == partition and r.timestamp >= timestamp),
        default=-1,
    )


def test_topic_life_in_every_codec(broker: BrokerProcess) -> None:
    topic = "confluent-life"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[
        topic
    ].result(10)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == PARTITIONS

    base = int(time.time() * 1000) - 60_000
    sent: list[Rec] = []
    for n, codec in enumerate(CODECS):
        records = sample_records(codec, PER_CODEC, base + n * 1000)
        sent += confluent_produce(broker.bootstrap, topic, records, **{"compression.type": codec})
    assert {r.partition for r in sent} == set(range(PARTITIONS))

    assert_round_trip(sent, confluent_read_all(broker.bootstrap, topic))

    counts = {p: sum(r.partition == p for r in sent) for p in range(PARTITIONS)}
    assert list_offsets(admin, topic, OffsetSpec.earliest()) == dict.fromkeys(counts, 0)
    assert list_offsets(admin, topic, OffsetSpec.latest()) == counts
    newest = max(sent, key=lambda r: r.timestamp)
    for timestamp in (base - 1, base + 2500, base + 3000, base + 4000 + PER_CODEC - 1):
        expected = {p: first_offset_at(sent, p, timestamp) for p in range(PARTITIONS)}
        assert list_offsets(admin, topic, OffsetSpec.for_timestamp(timestamp)) == expected
    beyond = list_offsets(admin, topic, OffsetSpec.for_timestamp(newest.timestamp + 1))
    assert beyond == dict.fromkeys(counts, -1)

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"{topic}-offsets"})
    try:
        for p, count in counts.items():
            tp = TopicPartition(topic, p)
            assert consumer.get_watermark_offsets(tp, timeout=10) == (0, count)
        query = [TopicPartition(topic, p, base + 2000) for p in range(PARTITIONS)]
        found = consumer.offsets_for_times(query, timeout=10)
        assert {tp.partition: tp.offset for tp in found} == {
            p: first_offset_at(sent, p, base + 2000) for p in range(PARTITIONS)
        }
    finally:
        consumer.close()

    admin.delete_topics([topic])[topic].result(10)
    wait_for(
        lambda: topic not in admin.list_topics(timeout=5).topics, 10, what="topic to be deleted"
    )


def test_list_offsets_max_timestamp(broker: BrokerProcess) -> None:
    topic = "confluent-max-timestamp"
    create_topic(broker.bootstrap, topic, 1)
    base = int(time.time() * 1000) - 60_000
    records = sample_records("max", 10, base)
    records[3] = replace(records[3], timestamp=base + 100)  # newest, not last
    sent = confluent_produce(broker.bootstrap, topic, records)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.max_timestamp()})
    [answer] = [future.result(10) for future in futures.values()]
    assert (answer.offset, answer.timestamp) == (sent[3].offset, base + 100)


def test_position_past_the_end_resets_to_earliest(broker: BrokerProcess) -> None:
    """OFFSET_OUT_OF_RANGE drives auto.offset.reset; it must not drop the connection."""
    topic = "confluent-reset"
    create_topic(broker.bootstrap, topic, 1)
    sent = confluent_produce(broker.bootstrap, topic, sample_records("reset", 5, 1_000_000))
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"{topic}-reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 1000)])
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < deadline:
            got += [m.value() for m in consumer.consume(10, timeout=0.2) if m.error() is None]
    finally:
        consumer.close()
    assert got == [r.value for r in sent]


def test_records_larger_than_the_fetch_limits(broker: BrokerProcess) -> None:
    """A batch over max.partition.fetch.bytes still comes back whole (KIP-74)."""
    topic = "confluent-large"
    create_topic(broker.bootstrap, topic, 1)
    records = [Rec(b"k", bytes([i]) * 300_000 + b"%d" % i) for i in range(6)]
    sent = confluent_produce(broker.bootstrap, topic, records, **{"linger.ms": 100})
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
            "max.partition.fetch.bytes": 1000,
            "fetch.max.bytes": 2000,
            "message.max.bytes": 1000,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < len(sent) and time.monotonic() < deadline:
            for message in consumer.consume(10, timeout=0.2):
                assert message.error() is None, message.error()
                got.append(message.value())
    finally:
        consumer.close()
    assert got == [r.value for r in sent]


def test_admin_partitions_configs_and_cluster(broker: BrokerProcess) -> None:
    topic = "confluent-admin"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create_topic(broker.bootstrap, topic, 2, **{"retention.ms": "1000000"})
    admin.create_partitions([NewPartitions(topic, 5)])[topic].result(10)
    wait_for(
        lambda: len(admin.list_topics(topic, timeout=5).topics[topic].partitions) == 5,
        10,
        what="five partitions in metadata",
    )
    sent = confluent_produce(
        broker.bootstrap, topic, [Rec(b"k%d" % i, b"v%d" % i) for i in range(60)]
    )
    assert {r.partition for r in sent} == set(range(5))
    with pytest.raises(KafkaException, match="INVALID_PARTITIONS"):
        admin.create_partitions([NewPartitions(topic, 3)])[topic].result(10)
    with pytest.raises(KafkaException, match="TOPIC_ALREADY_EXISTS"):
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)

    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(10)
    assert (configs["retention.ms"].value, configs["retention.ms"].is_default) == ("1000000", False)
    assert (configs["cleanup.policy"].value, configs["cleanup.policy"].is_default) == (
        "delete",
        True,
    )
    broker_resource = ConfigResource(ConfigResource.Type.BROKER, "0")
    broker_configs = admin.describe_configs([broker_resource])[broker_resource].result(10)
    assert broker_configs["log.dirs"].value == str(broker.data_dir)

    cluster = admin.describe_cluster(request_timeout=5).result(10)
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(0, "127.0.0.1", broker.port)]
    assert cluster.controller.id == 0 and cluster.cluster_id
