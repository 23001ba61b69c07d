"""Clients forced to the protocol versions Kafka 4.0 dropped and Kafka 3.9 serves.

kafka-python with an old ``api_version`` and librdkafka without ApiVersions
(``api.version.request=false`` and a ``broker.version.fallback`` below 0.10,
since from 0.10 on librdkafka asks ApiVersions anyway) pick their request
versions from the broker version they are told: Metadata v0, ListOffsets v0,
FindCoordinator v0, JoinGroup v0/v1, SyncGroup, Heartbeat and LeaveGroup v0,
OffsetCommit v0-v2, OffsetFetch v0-v1. All of that works against moldau.

What part 1 of issue 12 leaves to part 2 is asserted as it stands: these
clients produce message format v0/v1, refused per partition with
UNSUPPORTED_FOR_MESSAGE_FORMAT, and their fetches (v0-v3) get
UNSUPPORTED_VERSION per partition until down-conversion exists.
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import UnsupportedForMessageFormatError, UnsupportedVersionError
from kafka.structs import OffsetAndMetadata

from conftest import BrokerProcess, RawConnection, create_topic, wait_for
from moldau.protocol.records import Record, build_batch

PRODUCE, FETCH, LIST_OFFSETS, METADATA, API_VERSIONS, DESCRIBE_ACLS = 0, 1, 2, 3, 18, 29
UNKNOWN_TOPIC_OR_PARTITION = 3
UNSUPPORTED_VERSION = 35
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
LATEST, EARLIEST = -1, -2


def _fill(broker: BrokerProcess, topic: str, partitions: int = 2, per_partition: int = 5) -> None:
    """A topic with ``per_partition`` records in each partition, written by a current client."""
    create_topic(broker.bootstrap, topic, partitions)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for p in range(partitions):
        for i in range(per_partition):
            producer.produce(topic, value=f"{p}-{i}".encode(), partition=p)
    assert producer.flush(15) == 0


def _committed_by_a_current_client(bootstrap: str, group: str, topic: str) -> int:
    """The group's offset of partition 0 as confluent-kafka (OffsetFetch v9) reads it."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        [committed] = consumer.committed([ConfluentPartition(topic, 0)], timeout=10)
        return int(committed.offset)
    finally:
        consumer.close()


@pytest.mark.parametrize("api_version", [(0, 9), (0, 10, 1)], ids=["0.9", "0.10.1"])
def test_kafka_python_old_protocol(broker: BrokerProcess, api_version: tuple[int, ...]) -> None:
    """Metadata, offsets and a whole group life at 0.9's and 0.10.1's versions."""
    topic, group = f"old-kp-{len(api_version)}", f"group-{len(api_version)}"
    _fill(broker, topic)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        api_version=api_version,
        group_id=group,
        enable_auto_commit=False,
        heartbeat_interval_ms=100,
    )
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1}
        partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        assert consumer.end_offsets(partitions) == dict.fromkeys(partitions, 5)
        assert consumer.beginning_offsets(partitions) == dict.fromkeys(partitions, 0)

        consumer.subscribe([topic])
        fetch_errors: list[Exception] = []

        def joined() -> bool:
            try:
                consumer.poll(100)
            except UnsupportedVersionError as exc:  # Fetch v1/v3: part 2 of issue 12
                fetch_errors.append(exc)
            return bool(consumer.assignment())

        wait_for(joined, what="JoinGroup and SyncGroup")
        assert consumer.assignment() == set(partitions)
        heartbeat = consumer._coordinator.heartbeat  # no public view of it
        wait_for(lambda: math.isfinite(heartbeat.last_receive), what="a Heartbeat answered")

        consumer.commit({partitions[0]: OffsetAndMetadata(3, "", -1)})
        assert consumer.committed(partitions[0]) == 3
        assert _committed_by_a_current_client(broker.bootstrap, group, topic) == 3

        wait_for(lambda: joined() and fetch_errors, what="a fetch answered")
        assert all(e.errno == UNSUPPORTED_VERSION for e in fetch_errors)
    finally:
        consumer.close()  # LeaveGroup v0

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=api_version)
    try:
        future = producer.send(topic, b"old format", partition=0)
        with pytest.raises(UnsupportedForMessageFormatError):  # part 2 of issue 12
            future.get(10)
    finally:
        producer.close()


@pytest.mark.parametrize(
    ("api_version", "commit_version"), [((0, 8, 1), 0), ((0, 8, 2), 1)], ids=["0.8.1", "0.8.2"]
)
def test_kafka_python_offset_commit_v0_v1(
    broker: BrokerProcess, api_version: tuple[int, ...], commit_version: int
) -> None:
    """OffsetCommit and OffsetFetch v0 (ZooKeeper's in Kafka) and v1 land in
    __consumer_offsets, where a current client reads them."""
    topic, group = f"commit-v{commit_version}", f"group-v{commit_version}"
    create_topic(broker.bootstrap, topic, 1)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        api_version=api_version,
        group_id=group,
        enable_auto_commit=False,
    )
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.commit({partition: OffsetAndMetadata(7, "meta", -1)})
        assert consumer.committed(partition) == 7
    finally:
        consumer.close()
    assert _committed_by_a_current_client(broker.bootstrap, group, topic) == 7


@pytest.mark.parametrize("fallback", ["0.9.0", "0.8.2"])
def test_librdkafka_without_api_versions(broker: BrokerProcess, fallback: str) -> None:
    """Metadata v0, ListOffsets v0, FindCoordinator v0, OffsetCommit v1/v2."""
    topic = "rdk-" + fallback.replace(".", "")
    _fill(broker, topic)
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "g-" + topic,
            "api.version.request": False,
            "broker.version.fallback": fallback,
            "enable.auto.commit": False,
            "log_level": 3,
        }
    )
    try:
        assert len(consumer.list_topics(topic, timeout=10).topics[topic].partitions) == 2
        for p in (0, 1):
            low_high = consumer.get_watermark_offsets(
                ConfluentPartition(topic, p), timeout=10, cached=False
            )
            assert low_high == (0, 5)
        consumer.commit(offsets=[ConfluentPartition(topic, 1, 4)], asynchronous=False)
        [committed] = consumer.committed([ConfluentPartition(topic, 1)], timeout=10)
        assert committed.offset == 4
    finally:
        consumer.close()


def _produce_body(topic: str, records: bytes) -> dict[str, Any]:
    """A Produce body for partition 0, valid at every version from v0 to v8."""
    data = [{"index": 0, "records": records}]
    return {"acks": -1, "timeout_ms": 5000, "topic_data": [{"name": topic, "partition_data": data}]}


def _list_offsets_v0(
    conn: RawConnection, topic: str, timestamp: int, max_num: int, replica_id: int = -1
) -> dict[str, Any]:
    body = {
        "replica_id": replica_id,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {"partition_index": 0, "timestamp": timestamp, "max_num_offsets": max_num}
                ],
            }
        ],
    }
    [answer] = conn.request(LIST_OFFSETS, 0, body)["topics"][0]["partitions"]
    return dict(answer)


def test_list_offsets_v0_lists_segment_boundaries(broker: BrokerProcess) -> None:
    """Kafka's legacy lookup: segment base offsets and the log end, newest first."""
    create_topic(broker.bootstrap, "segments", 1, **{"segment.bytes": "100"})
    with RawConnection(broker.port) as conn:
        for i in range(4):  # one batch per segment: each is over half of 100 bytes
            batch = build_batch([Record(0, 0, None, b"%d" % i * 20)], base_timestamp=1000)
            answer = conn.request(PRODUCE, 3, _produce_body("segments", batch))
            [placed] = answer["responses"][0]["partition_responses"]
            assert (placed["error_code"], placed["base_offset"]) == (0, i)

        latest = _list_offsets_v0(conn, "segments", LATEST, 10)
        assert latest == {
            "partition_index": 0,
            "error_code": 0,
            "old_style_offsets": [4, 3, 2, 1, 0],
        }
        assert _list_offsets_v0(conn, "segments", LATEST, 2)["old_style_offsets"] == [4, 3]
        assert _list_offsets_v0(conn, "segments", EARLIEST, 10)["old_style_offsets"] == [0]
        future = int(time.time() * 1000) + 3_600_000
        assert _list_offsets_v0(conn, "segments", future, 1)["old_style_offsets"] == [4]
        # Before every segment was written: nothing.
        assert _list_offsets_v0(conn, "segments", 1, 5)["old_style_offsets"] == []
        # v0 knows only -1 and -2; unknown partitions keep their error.
        assert _list_offsets_v0(conn, "segments", -3, 1)["error_code"] == UNSUPPORTED_VERSION
        assert _list_offsets_v0(conn, "nope", LATEST, 1)["error_code"] == UNKNOWN_TOPIC_OR_PARTITION


def test_metadata_v0_empty_list_means_every_topic(broker: BrokerProcess) -> None:
    for name in ("meta-a", "meta-b"):
        create_topic(broker.bootstrap, name, 1)
    with RawConnection(broker.port) as conn:
        everything = conn.request(METADATA, 0, {"topics": []})
        assert {t["name"] for t in everything["topics"]} >= {"meta-a", "meta-b"}
        [broker_entry] = everything["brokers"]
        assert broker_entry["port"] == broker.port
        one = conn.request(METADATA, 0, {"topics": [{"name": "meta-b"}]})
        assert [(t["name"], t["error_code"]) for t in one["topics"]] == [("meta-b", 0)]


def _message_v1(value: bytes) -> bytes:
    """A magic 1 message set of one message (offset, size, crc, magic...)."""
    body = struct.pack(">bbqi", 1, 0, 1000, -1) + struct.pack(">i", len(value)) + value
    message = struct.pack(">I", zlib.crc32(body)) + body
    return struct.pack(">qi", 0, len(message)) + message


def test_produce_v0_to_v2_take_v2_batches_and_refuse_old_formats(broker: BrokerProcess) -> None:
    """Kafka checks the magic only from Produce v3 on; old formats wait for part 2."""
    create_topic(broker.bootstrap, "produce-old", 1)
    batch = build_batch([Record(0, 0, b"k", b"v")], base_timestamp=1000)
    with RawConnection(broker.port) as conn:
        for version in (0, 1, 2):
            for records, expected in (
                (batch, 0),
                (_message_v1(b"v"), UNSUPPORTED_FOR_MESSAGE_FORMAT),
            ):
                body = _produce_body("produce-old", records)
                [answer] = conn.request(PRODUCE, version, body)["responses"][0][
                    "partition_responses"
                ]
                assert answer["error_code"] == expected, (version, answer)


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_fetch_v0_to_v3_refused_per_partition_until_down_conversion(
    broker: BrokerProcess, version: int
) -> None:
    _fill(broker, "fetch-old", partitions=1)
    topics = [("fetch-old", 0), ("fetch-old", 5), ("nope", 0)]
    body = {
        "replica_id": -1,
        "max_wait_ms": 100,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "topics": [
            {
                "topic": t,
                "partitions": [{"partition": p, "fetch_offset": 0, "partition_max_bytes": 1 << 20}],
            }
            for t, p in topics
        ],
    }
    with RawConnection(broker.port) as conn:
        answer = conn.request(FETCH, version, body)
        codes = [(t["topic"], t["partitions"][0]["error_code"]) for t in answer["responses"]]
        assert codes == [
            ("fetch-old", UNSUPPORTED_VERSION),
            ("fetch-old", UNKNOWN_TOPIC_OR_PARTITION),
            ("nope", UNKNOWN_TOPIC_OR_PARTITION),
        ]
        assert all(not t["partitions"][0]["records"] for t in answer["responses"])
        # The connection stays usable.
        assert conn.request(METADATA, 0, {"topics": []})["brokers"]


def test_api_versions_advertise_kafka_3_9_floors(broker: BrokerProcess) -> None:
    with RawConnection(broker.port) as conn:
        ranges = conn.request(API_VERSIONS, 0, {})["api_keys"]
    floors = {r["api_key"]: r["min_version"] for r in ranges}
    assert {k: floors[k] for k in (0, 1, 2, 3, 8, 9, 19, 20, 32)} == dict.fromkeys(
        (0, 1, 2, 3, 8, 9, 19, 20, 32), 0
    )


def test_unserved_api_at_a_version_only_kafka_3_9_has(broker: BrokerProcess) -> None:
    """DescribeAcls v0 (old sarama's ACL listing): UNSUPPORTED_VERSION in
    the answer, on a connection that stays open."""
    request = {
        "resource_type_filter": 1,
        "resource_name_filter": None,
        "principal_filter": None,
        "host_filter": None,
        "operation": 1,
        "permission_type": 1,
    }
    with RawConnection(broker.port) as conn:
        answer = conn.request(DESCRIBE_ACLS, 0, request)
        assert (answer["error_code"], answer["resources"]) == (UNSUPPORTED_VERSION, [])
        assert conn.request(METADATA, 0, {"topics": []})["brokers"]
