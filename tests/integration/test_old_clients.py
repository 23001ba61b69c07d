"""Clients forced to the protocol versions Kafka 4.0 dropped and Kafka 3.9 serves.

kafka-python with an old ``api_version`` and librdkafka without ApiVersions
(``api.version.request=false`` and a ``broker.version.fallback`` below 0.10,
since from 0.10 on librdkafka asks ApiVersions anyway) pick their request
versions from the broker version they are told: Metadata v0, ListOffsets v0,
FindCoordinator v0, JoinGroup v0/v1, SyncGroup, Heartbeat and LeaveGroup v0,
OffsetCommit v0-v2, OffsetFetch v0-v1. All of that works against moldau.

These clients produce message formats v0/v1 (Produce v0-v2), which the
broker up-converts to v2 batches, and fetch at v0-v3, which it answers with
its v2 batches down-converted: each codec each format allows, read back by
old and current clients alike. sarama and Burrow (Debian's Go packages)
have their own modules: test_sarama.py and test_burrow.py.
"""

from __future__ import annotations

import gzip
import logging
import math
import re
import struct
import time
import zlib
from dataclasses import replace
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from conftest import (
    FAST_GROUPS,
    BrokerProcess,
    RawConnection,
    Rec,
    confluent_produce,
    confluent_read_all,
    create_topic,
    wait_for,
)
from moldau.protocol.batch import COMPRESSION_ZSTD
from moldau.protocol.legacy_records import parse_message_set
from moldau.protocol.records import Record, build_batch

PRODUCE, FETCH, LIST_OFFSETS, METADATA, API_VERSIONS, DESCRIBE_ACLS = 0, 1, 2, 3, 18, 29
UNKNOWN_TOPIC_OR_PARTITION = 3
UNSUPPORTED_VERSION = 35
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
UNSUPPORTED_COMPRESSION_TYPE = 76
LATEST, EARLIEST = -1, -2


def _fill(broker: BrokerProcess, topic: str, partitions: int = 2, per_partition: int = 5) -> None:
    """A topic with ``per_partition`` records in each partition, written by a current client."""
    create_topic(broker.bootstrap, topic, partitions)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for p in range(partitions):
        for i in range(per_partition):
            producer.produce(topic, value=f"{p}-{i}".encode(), partition=p)
    assert producer.flush(15) == 0


def committed_by_a_current_client(bootstrap: str, group: str, topic: str) -> int:
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
        auto_offset_reset="earliest",
    )
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1}
        partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        assert consumer.end_offsets(partitions) == dict.fromkeys(partitions, 5)
        assert consumer.beginning_offsets(partitions) == dict.fromkeys(partitions, 0)

        consumer.subscribe([topic])
        fetched: list[bytes] = []

        def joined() -> bool:
            for messages in consumer.poll(100).values():
                fetched.extend(m.value for m in messages)
            return bool(consumer.assignment())

        wait_for(joined, what="JoinGroup and SyncGroup")
        assert consumer.assignment() == set(partitions)
        heartbeat = consumer._coordinator.heartbeat  # no public view of it
        wait_for(lambda: math.isfinite(heartbeat.last_receive), what="a Heartbeat answered")

        consumer.commit({partitions[0]: OffsetAndMetadata(3, "", -1)})
        assert consumer.committed(partitions[0]) == 3
        assert committed_by_a_current_client(broker.bootstrap, group, topic) == 3

        wait_for(lambda: joined() and len(fetched) == 10, what="Fetch v1/v3 answered")
        assert sorted(fetched) == sorted(f"{p}-{i}".encode() for p in (0, 1) for i in range(5))
    finally:
        consumer.close()  # LeaveGroup v0

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=api_version)
    try:
        assert producer.send(topic, b"old format", partition=0).get(10).offset == 5
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
    assert committed_by_a_current_client(broker.bootstrap, group, topic) == 7


class _RequestLog(logging.Handler):
    """librdkafka's protocol debug lines: which request went out at which version."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def sent(self) -> set[tuple[str, int]]:
        found = re.findall(r"Sent (\w+)Request \(v(\d+)", "\n".join(self.lines))
        return {(name, int(version)) for name, version in found}


#: The requests librdkafka sends for metadata, watermarks, a commit and its
#: read-back, per ``broker.version.fallback``. From 0.10 on it asks
#: ApiVersions whatever ``api.version.request`` says (its configuration
#: documents this) and speaks current versions.
FALLBACK_REQUESTS = {
    "0.10.0": {
        ("ApiVersion", 3),
        ("Metadata", 13),
        ("ListOffsets", 7),
        ("FindCoordinator", 2),
        ("OffsetCommit", 9),
        ("OffsetFetch", 9),
    },
    "0.9.0": {
        ("Metadata", 0),
        ("ListOffsets", 0),
        ("FindCoordinator", 0),
        ("OffsetCommit", 2),
        ("OffsetFetch", 1),
    },
    "0.8.2": {
        ("Metadata", 0),
        ("ListOffsets", 0),
        ("FindCoordinator", 0),
        ("OffsetCommit", 1),
        ("OffsetFetch", 1),
    },
}


@pytest.mark.parametrize("fallback", list(FALLBACK_REQUESTS))
def test_librdkafka_without_api_versions(broker: BrokerProcess, fallback: str) -> None:
    """Metadata, ListOffsets, FindCoordinator, OffsetCommit and OffsetFetch at
    the versions of ``fallback``; the commit reads back through a current client."""
    topic = "rdk-" + fallback.replace(".", "")
    _fill(broker, topic)
    requests = _RequestLog()
    logger = logging.getLogger(f"librdkafka.{topic}")
    logger.addHandler(requests)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "g-" + topic,
            **_old_librdkafka(fallback),
            "enable.auto.commit": False,
            "debug": "protocol",
            "logger": logger,
        }
    )
    try:
        assert len(consumer.list_topics(topic, timeout=10).topics[topic].partitions) == 2
        for p in (0, 1):
            low_high = consumer.get_watermark_offsets(
                ConfluentPartition(topic, p), timeout=10, cached=False
            )
            assert low_high == (0, 5)
        commit = [ConfluentPartition(topic, 0, 2), ConfluentPartition(topic, 1, 4)]
        consumer.commit(offsets=commit, asynchronous=False)
        committed = consumer.committed([ConfluentPartition(topic, p) for p in (0, 1)], timeout=10)
        assert [c.offset for c in committed] == [2, 4]
        consumer.poll(0)  # serves the log lines queued so far
    finally:
        consumer.close()
        logger.removeHandler(requests)
    assert requests.sent() == FALLBACK_REQUESTS[fallback]
    assert committed_by_a_current_client(broker.bootstrap, "g-" + topic, topic) == 2


def test_librdkafka_group_without_api_versions(broker_factory: Any) -> None:
    """librdkafka at 0.9.0 as a group member: JoinGroup, SyncGroup, Heartbeat
    and LeaveGroup v0, Fetch v1 (format v0), OffsetCommit v2 of what it read."""
    broker = broker_factory(**FAST_GROUPS)
    topic = "rdk-group"
    _fill(broker, topic)
    requests = _RequestLog()
    logger = logging.getLogger(f"librdkafka.{topic}")
    logger.addHandler(requests)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "g-" + topic,
            **_old_librdkafka("0.9.0"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "heartbeat.interval.ms": 100,
            "debug": "protocol",
            "logger": logger,
        }
    )
    read: list[bytes] = []
    try:
        consumer.subscribe([topic])

        def consumed() -> bool:
            read.extend(m.value() for m in consumer.consume(100, timeout=0.1) if not m.error())
            return len(read) == 10 and ("Heartbeat", 0) in requests.sent()

        wait_for(consumed, what="10 records and a Heartbeat")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
        logger.removeHandler(requests)
    assert sorted(read) == sorted(f"{p}-{i}".encode() for p in (0, 1) for i in range(5))
    assert {("JoinGroup", 0), ("SyncGroup", 0), ("Fetch", 1), ("LeaveGroup", 0)} <= requests.sent()
    assert committed_by_a_current_client(broker.bootstrap, "g-" + topic, topic) == 5


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


def _message_v1(value: bytes, timestamp: int = 1000) -> bytes:
    """A magic 1 message set of one message (offset, size, crc, magic...)."""
    body = struct.pack(">bbqi", 1, 0, timestamp, -1) + struct.pack(">i", len(value)) + value
    message = struct.pack(">I", zlib.crc32(body)) + body
    return struct.pack(">qi", 0, len(message)) + message


def _produce(conn: RawConnection, version: int, topic: str, records: bytes) -> dict[str, Any]:
    answer = conn.request(PRODUCE, version, _produce_body(topic, records))
    return dict(answer["responses"][0]["partition_responses"][0])


def test_produce_v0_to_v2_take_v2_batches_and_old_formats(broker: BrokerProcess) -> None:
    """Kafka checks the magic only from Produce v3 on; before, message sets
    of magic 0/1 are up-converted and appended, corrupt ones refused."""
    create_topic(broker.bootstrap, "produce-old", 1)
    batch = build_batch([Record(0, 0, b"k", b"v")], base_timestamp=1000)
    corrupt = bytearray(_message_v1(b"bad"))
    corrupt[-1] ^= 1
    with RawConnection(broker.port) as conn:
        for version in (0, 1, 2):
            assert _produce(conn, version, "produce-old", batch)["error_code"] == 0
            placed = _produce(conn, version, "produce-old", _message_v1(b"v%d" % version))
            assert (placed["error_code"], placed["base_offset"]) == (0, 2 * version + 1)
            assert _produce(conn, version, "produce-old", bytes(corrupt))["error_code"] == 2
        # From v3 on the request must hold v2 batches, as in Kafka.
        refused = _produce(conn, 3, "produce-old", _message_v1(b"late"))
        assert refused["error_code"] == UNSUPPORTED_FOR_MESSAGE_FORMAT
    read = confluent_read_all(broker.bootstrap, "produce-old")
    expected = [value for version in (0, 1, 2) for value in (b"v", b"v%d" % version)]
    assert [(r.offset, r.value, r.timestamp) for r in read] == [
        (offset, value, 1000) for offset, value in enumerate(expected)
    ]


def test_produce_v2_refuses_a_decompression_bomb(broker: BrokerProcess) -> None:
    """A 100 KB gzip wrapper inflating to 80 MiB (over moldau's 64 MiB bound):
    CORRUPT_MESSAGE, nothing appended, the broker and connection live on."""
    create_topic(broker.bootstrap, "bomb", 1)
    inner = _message_v1(bytes(80 << 20))
    body = struct.pack(">bbqi", 1, 1, 1000, -1)  # magic 1, gzip
    value = gzip.compress(inner, compresslevel=1)
    body += struct.pack(">i", len(value)) + value
    wrapper = struct.pack(">qiI", 0, len(body) + 4, zlib.crc32(body)) + body
    assert len(wrapper) < 1 << 20
    with RawConnection(broker.port) as conn:
        assert _produce(conn, 2, "bomb", wrapper)["error_code"] == 2
        placed = _produce(conn, 2, "bomb", _message_v1(b"after"))
        assert (placed["error_code"], placed["base_offset"]) == (0, 0)


def _fetch_body(
    partitions: list[tuple[str, int]], offset: int = 0, max_bytes: int = 1 << 20
) -> dict[str, Any]:
    return {
        "replica_id": -1,
        "max_wait_ms": 100,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "topics": [
            {
                "topic": t,
                "partitions": [
                    {"partition": p, "fetch_offset": offset, "partition_max_bytes": max_bytes}
                ],
            }
            for t, p in partitions
        ],
    }


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_fetch_v0_to_v3_down_converts(broker: BrokerProcess, version: int) -> None:
    """v0-v1 get magic 0 messages, v2-v3 magic 1, from the fetch offset on
    (inside a batch too); other partitions keep their own errors."""
    _fill(broker, "fetch-old", partitions=1)
    topics = [("fetch-old", 0), ("fetch-old", 5), ("nope", 0)]
    with RawConnection(broker.port) as conn:
        answer = conn.request(FETCH, version, _fetch_body(topics, offset=2))
        codes = [(t["topic"], t["partitions"][0]["error_code"]) for t in answer["responses"]]
        assert codes == [("fetch-old", 0), ("fetch-old", 3), ("nope", 3)]
        [served] = answer["responses"][0]["partitions"]
        assert served["high_watermark"] == 5
        records = served["records"]
        assert records[16] == (0 if version < 2 else 1)  # magic
        assert struct.unpack_from(">q", records)[0] == 2  # first offset
        _, messages = parse_message_set(records)
        assert [m.value for m in messages] == [b"0-2", b"0-3", b"0-4"]
        assert all((m.timestamp > 0) == (version >= 2) for m in messages)
        assert conn.request(METADATA, 0, {"topics": []})["brokers"]


def test_fetch_v2_bounded_by_partition_max_bytes(broker: BrokerProcess) -> None:
    """Batch by batch up to partition_max_bytes, but at least one message
    (20 batches of about 108 bytes, 74 once converted)."""
    create_topic(broker.bootstrap, "bounded", 1)
    with RawConnection(broker.port) as conn:
        for i in range(20):
            batch = build_batch([Record(0, 0, None, b"%02d" % i * 20)], base_timestamp=1000)
            assert _produce(conn, 3, "bounded", batch)["error_code"] == 0
        for max_bytes, expected in ((10, 1), (250, 2), (1 << 20, 20)):
            answer = conn.request(FETCH, 2, _fetch_body([("bounded", 0)], max_bytes=max_bytes))
            records = answer["responses"][0]["partitions"][0]["records"]
            assert len(parse_message_set(records)[1]) == expected, max_bytes
            assert expected == 1 or len(records) <= max_bytes


def test_fetch_v2_waits_for_an_append(broker: BrokerProcess) -> None:
    """An old fetch finding nothing waits up to max_wait_ms for min_bytes, and
    answers as soon as a record arrives (not at the deadline)."""
    create_topic(broker.bootstrap, "waiting", 1)
    with RawConnection(broker.port) as waiting, RawConnection(broker.port) as writer:
        body = {**_fetch_body([("waiting", 0)]), "max_wait_ms": 8000}
        start = time.monotonic()
        correlation = waiting.send(FETCH, 2, body)
        assert _produce(writer, 2, "waiting", _message_v1(b"late"))["error_code"] == 0
        answer = waiting.receive(FETCH, 2, correlation)
        records = answer["responses"][0]["partitions"][0]["records"]
        assert [m.value for m in parse_message_set(records)[1]] == [b"late"]
        assert time.monotonic() - start < 6


def test_down_conversion_can_be_disabled(broker_factory: Any) -> None:
    """message.downconversion.enable per topic over the broker's
    log.message.downconversion.enable: UNSUPPORTED_VERSION when off."""
    broker = broker_factory(**{"log.message.downconversion.enable": "false"})
    _fill(broker, "off-by-broker", partitions=1)
    create_topic(broker.bootstrap, "on-by-topic", 1, **{"message.downconversion.enable": "true"})
    with RawConnection(broker.port) as conn:
        answer = conn.request(FETCH, 3, _fetch_body([("off-by-broker", 0), ("on-by-topic", 0)]))
        codes = [t["partitions"][0]["error_code"] for t in answer["responses"]]
        assert codes == [UNSUPPORTED_VERSION, 0]


def test_zstd_cannot_be_down_converted(broker: BrokerProcess) -> None:
    """Formats v0/v1 have no zstd: UNSUPPORTED_COMPRESSION_TYPE, as in Kafka."""
    create_topic(broker.bootstrap, "zstd-old", 1)
    confluent_produce(
        broker.bootstrap, "zstd-old", [Rec(None, b"z" * 100)], **{"compression.codec": "zstd"}
    )
    with RawConnection(broker.port) as conn:
        answer = conn.request(FETCH, 3, _fetch_body([("zstd-old", 0)]))
        [partition] = answer["responses"][0]["partitions"]
        assert partition["error_code"] == UNSUPPORTED_COMPRESSION_TYPE
        assert COMPRESSION_ZSTD == 4


def test_message_format_version_accepted_without_effect(broker_factory: Any) -> None:
    """Deprecated in Kafka 3.x: accepted, ignored, a warning in the log."""
    broker = broker_factory(**{"log.message.format.version": "0.10.2"})
    create_topic(broker.bootstrap, "mfv", 1, **{"message.format.version": "0.9.0"})
    confluent_produce(broker.bootstrap, "mfv", [Rec(b"k", b"v")])
    assert [r.value for r in confluent_read_all(broker.bootstrap, "mfv")] == [b"v"]
    log = broker.log_path.read_text()
    assert "log.message.format.version is deprecated" in log
    assert "message.format.version is deprecated" in log


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_fetch_v0_to_v3_refused_per_partition_when_down_conversion_is_off(
    broker: BrokerProcess, version: int
) -> None:
    create_topic(broker.bootstrap, "fetch-off-2", 1, **{"message.downconversion.enable": "false"})
    topics = [("fetch-off-2", 0), ("fetch-off-2", 5), ("nope", 0)]
    with RawConnection(broker.port) as conn:
        answer = conn.request(FETCH, version, _fetch_body(topics))
        codes = [(t["topic"], t["partitions"][0]["error_code"]) for t in answer["responses"]]
        assert codes == [
            ("fetch-off-2", UNSUPPORTED_VERSION),
            ("fetch-off-2", UNKNOWN_TOPIC_OR_PARTITION),
            ("nope", UNKNOWN_TOPIC_OR_PARTITION),
        ]
        assert all(not t["partitions"][0]["records"] for t in answer["responses"])
        # The connection stays usable.
        assert conn.request(METADATA, 0, {"topics": []})["brokers"]


# --- old formats through real clients -----------------------------------------

Seen = tuple[int, bytes | None, bytes | None, int]
"""(offset, key, value, timestamp or -1) of one record as a consumer saw it."""


def records_for(topic: str, count: int) -> list[Rec]:
    return [Rec(b"k%d" % i if i % 2 else None, f"{topic}-{i}".encode()) for i in range(count)]


def _kafka_python_read(
    bootstrap: str, topic: str, api_version: tuple[int, ...], count: int
) -> list[Seen]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, api_version=api_version, auto_offset_reset="earliest"
    )
    got: list[Seen] = []
    try:
        consumer.assign([TopicPartition(topic, 0)])

        def read() -> bool:
            for messages in consumer.poll(200).values():
                got.extend((m.offset, m.key, m.value, m.timestamp or -1) for m in messages)
            return len(got) >= count

        wait_for(read, what=f"{count} records via kafka-python {api_version}")
    finally:
        consumer.close()
    return got


def _old_librdkafka(fallback: str) -> dict[str, Any]:
    return {"api.version.request": False, "broker.version.fallback": fallback, "log_level": 3}


def _librdkafka_read(bootstrap: str, topic: str, fallback: str, count: int) -> list[Seen]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "old-" + topic, **_old_librdkafka(fallback)}
    )
    got: list[Seen] = []
    try:
        consumer.assign([ConfluentPartition(topic, 0, 0)])

        def read() -> bool:
            for m in consumer.consume(100, timeout=0.2):
                assert m.error() is None, m.error()
                kind, stamp = m.timestamp()
                got.append((m.offset(), m.key(), m.value(), stamp if kind else -1))
            return len(got) >= count

        wait_for(read, what=f"{count} records via librdkafka {fallback}")
    finally:
        consumer.close()
    return got


def current_read(bootstrap: str, topic: str) -> list[Seen]:
    return [(r.offset, r.key, r.value, r.timestamp) for r in confluent_read_all(bootstrap, topic)]


@pytest.mark.parametrize(
    ("api_version", "codec"),
    [((0, 9), c) for c in (None, "gzip", "snappy")]
    + [((0, 10, 1), c) for c in (None, "gzip", "snappy", "lz4")],
)
def test_kafka_python_old_formats_round_trip(
    broker: BrokerProcess, api_version: tuple[int, ...], codec: str | None
) -> None:
    """kafka-python writes v0 (0.9) or v1 (0.10.1) messages with ``codec``;
    it reads them back down-converted, a current client reads the v2 batch.
    (kafka-python writes v0 LZ4 only with the xxhash package: librdkafka
    covers it below.)"""
    topic = f"kp-{len(api_version)}-{codec}"
    create_topic(broker.bootstrap, topic, 1)
    v1 = api_version >= (0, 10)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        api_version=api_version,
        compression_type=codec,
        linger_ms=20,
    )
    try:
        records = records_for(topic, 6)
        futures = [
            producer.send(
                topic, key=r.key, value=r.value, partition=0, timestamp_ms=1000 + i if v1 else None
            )
            for i, r in enumerate(records)
        ]
        assert [f.get(10).offset for f in futures] == list(range(6))
    finally:
        producer.close()
    expected = [(i, r.key, r.value, 1000 + i if v1 else -1) for i, r in enumerate(records)]
    assert _kafka_python_read(broker.bootstrap, topic, api_version, 6) == expected
    assert current_read(broker.bootstrap, topic) == expected


def test_librdkafka_old_formats_round_trip(broker: BrokerProcess) -> None:
    """librdkafka without ApiVersions writes v0 with each codec, LZ4 with
    Kafka 0.8's header checksum; old and current consumers read it back.
    (With a fallback of 0.10.0 or later librdkafka asks ApiVersions anyway and
    speaks the current protocol, so only 0.9.0 reaches the old formats.)"""
    fallback = "0.9.0"
    for codec in ("none", "gzip", "snappy", "lz4"):
        topic = f"rdk-{fallback}-{codec}"
        create_topic(broker.bootstrap, topic, 1)
        records = [
            replace(r, partition=0, timestamp=1000 + i) for i, r in enumerate(records_for(topic, 6))
        ]
        config = {**_old_librdkafka(fallback), "compression.codec": codec}
        confluent_produce(broker.bootstrap, topic, records, **config)
        expected = [(i, r.key, r.value, -1) for i, r in enumerate(records)]
        assert _librdkafka_read(broker.bootstrap, topic, fallback, 6) == expected, codec
        assert current_read(broker.bootstrap, topic) == expected, codec


def test_current_records_read_by_old_clients(broker: BrokerProcess) -> None:
    """v2 batches from a current client (headers, each codec) reach kafka-python
    0.9/0.10.1 and librdkafka 0.9.0 down-converted, headers dropped."""
    for codec in ("none", "gzip", "snappy", "lz4"):
        topic = f"new-{codec}"
        create_topic(broker.bootstrap, topic, 1)
        records = [
            replace(r, partition=0, timestamp=5000 + i, headers=(("h", b"x"),))
            for i, r in enumerate(records_for(topic, 6))
        ]
        confluent_produce(broker.bootstrap, topic, records, **{"compression.codec": codec})
        v0 = [(i, r.key, r.value, -1) for i, r in enumerate(records)]
        v1 = [(i, r.key, r.value, 5000 + i) for i, r in enumerate(records)]
        if codec != "lz4":  # kafka-python reads v0 LZ4 only with xxhash installed
            assert _kafka_python_read(broker.bootstrap, topic, (0, 9), 6) == v0, codec
        assert _kafka_python_read(broker.bootstrap, topic, (0, 10, 1), 6) == v1, codec
        assert _librdkafka_read(broker.bootstrap, topic, "0.9.0", 6) == v0, codec


def test_log_append_time_stamps_old_formats(broker: BrokerProcess) -> None:
    """A LogAppendTime topic stamps up-converted messages with the broker's
    time, and v1 readers see it as LogAppendTime."""
    create_topic(broker.bootstrap, "lat", 1, **{"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    with RawConnection(broker.port) as conn:
        assert _produce(conn, 2, "lat", _message_v1(b"old", timestamp=1000))["error_code"] == 0
    [(offset, _, value, stamp)] = _kafka_python_read(broker.bootstrap, "lat", (0, 10, 1), 1)
    assert (offset, value) == (0, b"old")
    assert before <= stamp <= int(time.time() * 1000)
    assert current_read(broker.bootstrap, "lat")[0][3] == stamp


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
