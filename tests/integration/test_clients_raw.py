"""The protocol spoken directly, for what client libraries hide.

A fetch that waits for data must answer as soon as data arrives, not when
its max_wait_ms runs out; and well-formed requests naming things that do not
exist (offsets past the end, partitions a topic lacks, illegal topic names)
get Kafka's error code in the answer, on a connection that stays usable.
"""

from __future__ import annotations

import select
import threading
import time
from typing import Any

import pytest

from conftest import BrokerProcess, RawConnection, Rec, confluent_produce, create_topic
from moldau.protocol.records import Record, build_batch, decode_batch

PRODUCE, FETCH, LIST_OFFSETS, METADATA, CREATE_TOPICS = 0, 1, 2, 3, 19
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUIRED_ACKS = 21
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40


def fetch_request(
    topic: str, partitions: dict[int, int], max_wait_ms: int = 0, min_bytes: int = 0
) -> dict[str, Any]:
    """A Fetch v12 body: ``partitions`` maps partition -> fetch offset."""
    return {
        "cluster_id": None,
        "replica_id": -1,
        "max_wait_ms": max_wait_ms,
        "min_bytes": min_bytes,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {
                        "partition": partition,
                        "current_leader_epoch": -1,
                        "fetch_offset": offset,
                        "last_fetched_epoch": -1,
                        "log_start_offset": -1,
                        "partition_max_bytes": 1 << 20,
                    }
                    for partition, offset in partitions.items()
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }


def fetched(response: dict[str, Any]) -> dict[int, tuple[int, list[bytes]]]:
    """partition -> (error code, values of the records returned)."""
    answers = {}
    for partition in response["responses"][0]["partitions"]:
        values: list[bytes] = []
        data = partition["records"] or b""
        position = 0
        while position < len(data):
            header, records = decode_batch(data[position:])
            values += [r.value for r in records if r.value is not None]
            position += header.size
        answers[partition["partition_index"]] = (partition["error_code"], values)
    return answers


def produce_request(topic: str, partition: int, acks: int = -1) -> dict[str, Any]:
    records = build_batch([Record(0, 0, b"k", b"v", [])], base_timestamp=int(time.time() * 1000))
    data = {"index": partition, "records": records}
    return {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [data]}],
    }


def answered_within(conn: RawConnection, seconds: float) -> bool:
    readable, _, _ = select.select([conn.sock], [], [], seconds)
    return bool(readable)


# -- fetches that wait -----------------------------------------------------------


def test_waiting_fetch_answers_as_soon_as_a_record_arrives(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "waited", 3)
    with RawConnection(broker.port, timeout=15) as conn:
        request = fetch_request("waited", {0: 0, 1: 0, 2: 0}, max_wait_ms=10_000, min_bytes=1)
        correlation_id = conn.send(FETCH, 12, request)
        assert not answered_within(conn, 0.2), "an empty fetch answered before max_wait_ms"
        [sent] = confluent_produce(broker.bootstrap, "waited", [Rec(b"key", b"wake up")])
        acknowledged = time.monotonic()
        response = conn.receive(FETCH, 12, correlation_id)
        waited = time.monotonic() - acknowledged
    assert waited < 2.0, f"fetch answered {waited:.3f}s after the produce, not at once"
    answers = fetched(response)
    assert answers[sent.partition] == (0, [b"wake up"])
    assert all(answers[p] == (0, []) for p in answers if p != sent.partition)


def test_waiting_fetch_without_data_answers_at_max_wait(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "idle", 1)
    with RawConnection(broker.port) as conn:
        started = time.monotonic()
        response = conn.request(FETCH, 12, fetch_request("idle", {0: 0}, 400, min_bytes=1))
        waited = time.monotonic() - started
    assert 0.35 <= waited < 2.0
    assert fetched(response) == {0: (0, [])}


def test_waiting_fetch_waits_for_min_bytes(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "filling", 1)
    with RawConnection(broker.port, timeout=15) as conn:
        request = fetch_request("filling", {0: 0}, max_wait_ms=10_000, min_bytes=3000)
        correlation_id = conn.send(FETCH, 12, request)
        confluent_produce(broker.bootstrap, "filling", [Rec(b"k", b"small")])
        assert not answered_within(conn, 0.3), "answered with fewer than min_bytes"
        confluent_produce(broker.bootstrap, "filling", [Rec(b"k", b"x" * 4000)])
        acknowledged = time.monotonic()
        response = conn.receive(FETCH, 12, correlation_id)
        assert time.monotonic() - acknowledged < 2.0
    assert fetched(response) == {0: (0, [b"small", b"x" * 4000])}


def test_waiting_fetch_answers_when_its_topic_is_deleted(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "doomed", 1)
    with RawConnection(broker.port, timeout=15) as conn:
        request = fetch_request("doomed", {0: 0}, max_wait_ms=10_000, min_bytes=1)
        correlation_id = conn.send(FETCH, 12, request)
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.delete_topics(["doomed"])["doomed"].result(10)
        deleted = time.monotonic()
        response = conn.receive(FETCH, 12, correlation_id)
        assert time.monotonic() - deleted < 2.0
    assert fetched(response) == {0: (UNKNOWN_TOPIC_OR_PARTITION, [])}


def test_concurrent_waiting_fetches_all_wake(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "crowd", 1)
    connections = [RawConnection(broker.port, timeout=15) for _ in range(5)]
    try:
        request = fetch_request("crowd", {0: 0}, max_wait_ms=10_000, min_bytes=1)
        waiting = [(conn, conn.send(FETCH, 12, request)) for conn in connections]
        results: list[dict[int, tuple[int, list[bytes]]]] = []

        def read(conn: RawConnection, correlation_id: int) -> None:
            results.append(fetched(conn.receive(FETCH, 12, correlation_id)))

        readers = [threading.Thread(target=read, args=waited) for waited in waiting]
        for reader in readers:
            reader.start()
        confluent_produce(broker.bootstrap, "crowd", [Rec(b"k", b"for everyone")])
        acknowledged = time.monotonic()
        for reader in readers:
            reader.join(10)
        assert time.monotonic() - acknowledged < 2.0
    finally:
        for conn in connections:
            conn.sock.close()
    assert results == [{0: (0, [b"for everyone"])}] * 5


# -- well-formed requests about things that are not there ------------------------


@pytest.mark.parametrize("offset", [2, 100, -1, -100])
def test_fetch_out_of_range_answers_offset_out_of_range(broker: BrokerProcess, offset: int) -> None:
    create_topic(broker.bootstrap, "short", 1)
    confluent_produce(broker.bootstrap, "short", [Rec(b"k", b"only")])
    with RawConnection(broker.port) as conn:
        response = conn.request(FETCH, 12, fetch_request("short", {0: offset}))
        assert fetched(response) == {0: (OFFSET_OUT_OF_RANGE, [])}
        response = conn.request(FETCH, 12, fetch_request("short", {0: 0}))
        assert fetched(response) == {0: (0, [b"only"])}


def test_fetch_at_the_end_answers_empty(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "ended", 1)
    confluent_produce(broker.bootstrap, "ended", [Rec(b"k", b"only")])
    with RawConnection(broker.port) as conn:
        assert fetched(conn.request(FETCH, 12, fetch_request("ended", {0: 1}))) == {0: (0, [])}


def test_requests_for_missing_partitions_and_topics(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "two", 2)
    with RawConnection(broker.port) as conn:
        missing = {0: 0, 2: 0, -1: 0}
        answers = fetched(conn.request(FETCH, 12, fetch_request("two", missing)))
        assert answers == {0: (0, []), 2: (UNKNOWN_TOPIC_OR_PARTITION, []), -1: (3, [])}
        answers = fetched(conn.request(FETCH, 12, fetch_request("absent", {0: 0})))
        assert answers == {0: (UNKNOWN_TOPIC_OR_PARTITION, [])}

        for topic, partition in (("two", 2), ("absent", 0)):
            response = conn.request(PRODUCE, 8, produce_request(topic, partition))
            [answer] = response["responses"][0]["partition_responses"]
            assert answer["error_code"] == UNKNOWN_TOPIC_OR_PARTITION
        response = conn.request(PRODUCE, 8, produce_request("two", 0, acks=2))
        [answer] = response["responses"][0]["partition_responses"]
        assert answer["error_code"] == INVALID_REQUIRED_ACKS

        query = {
            "replica_id": -1,
            "isolation_level": 0,
            "topics": [
                {
                    "name": name,
                    "partitions": [
                        {"partition_index": p, "current_leader_epoch": -1, "timestamp": -1}
                    ],
                }
                for name, p in (("two", 1), ("two", 5), ("absent", 0))
            ],
        }
        response = conn.request(LIST_OFFSETS, 7, query)
        codes = [t["partitions"][0]["error_code"] for t in response["topics"]]
        assert codes == [0, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_OR_PARTITION]

        response = conn.request(METADATA, 1, {"topics": [{"name": "bad/name"}]})
        assert [t["error_code"] for t in response["topics"]] == [INVALID_TOPIC_EXCEPTION]


def test_create_topics_refuses_what_kafka_refuses(broker: BrokerProcess) -> None:
    def topic(name: str, partitions: int = 1, replicas: int = 1, **configs: str) -> dict[str, Any]:
        return {
            "name": name,
            "num_partitions": partitions,
            "replication_factor": replicas,
            "assignments": [],
            "configs": [{"name": k.replace("_", "."), "value": v} for k, v in configs.items()],
        }

    create_topic(broker.bootstrap, "exists", 1)
    wanted = {
        "bad/name": (topic("bad/name"), INVALID_TOPIC_EXCEPTION),
        "..": (topic(".."), INVALID_TOPIC_EXCEPTION),
        "x" * 250: (topic("x" * 250), INVALID_TOPIC_EXCEPTION),
        "zero": (topic("zero", partitions=0), INVALID_PARTITIONS),
        "three-replicas": (topic("three-replicas", replicas=3), INVALID_REPLICATION_FACTOR),
        "bad-value": (topic("bad-value", retention_ms="soon"), INVALID_CONFIG),
        "unknown-key": (topic("unknown-key", no_such_key="1"), INVALID_CONFIG),
        "exists": (topic("exists"), 36),  # TOPIC_ALREADY_EXISTS
    }
    with RawConnection(broker.port) as conn:
        body = {
            "topics": [t for t, _ in wanted.values()],
            "timeout_ms": 5000,
            "validate_only": False,
        }
        response = conn.request(CREATE_TOPICS, 5, body)
        codes = {t["name"]: t["error_code"] for t in response["topics"]}
        assert codes == {name: code for name, (_, code) in wanted.items()}
        listed = conn.request(METADATA, 1, {"topics": None})
        assert [t["name"] for t in listed["topics"]] == ["exists"]
