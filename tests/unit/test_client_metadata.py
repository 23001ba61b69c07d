"""The client's cluster snapshot: parsing, merging partial refreshes, leaders."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from moldau.client.errors import error_code, make_error, topic_error
from moldau.client.metadata import ClusterMetadata, parse_address
from moldau.protocol.errors import ErrorCode


def partition(index: int, leader: int, error: int = 0) -> dict[str, Any]:
    return {
        "error_code": error,
        "partition_index": index,
        "leader_id": leader,
        "leader_epoch": 3,
        "replica_nodes": [leader, 9],
        "isr_nodes": [leader],
        "offline_replicas": [9],
    }


def response(topics: list[dict[str, Any]], brokers: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    return {
        "brokers": [
            {"node_id": b, "host": f"h{b}", "port": 9000 + b, "rack": None} for b in brokers
        ],
        "cluster_id": "c",
        "controller_id": brokers[0],
        "topics": topics,
    }


def topic(name: str, *parts: dict[str, Any], error: int = 0) -> dict[str, Any]:
    return {
        "error_code": error,
        "name": name,
        "topic_id": uuid.UUID(int=7),
        "is_internal": False,
        "partitions": list(parts),
    }


def test_from_response_and_leader_lookup() -> None:
    meta = ClusterMetadata.from_response(
        response([topic("a", partition(0, 1), partition(1, 2), partition(2, -1))])
    )
    assert meta.cluster_id == "c" and meta.controller_id == 1
    assert meta.brokers[2].port == 9002
    info = meta.topics["a"]
    assert info.topic_id == uuid.UUID(int=7)
    assert info.replication_factor == 2
    assert info.partitions[0].offline_replicas == (9,)
    assert meta.leader("a", 0) == 1
    assert meta.leader("a", 1) == 2
    assert meta.leader("a", 2) is None  # no leader
    assert meta.leader("a", 3) is None  # no such partition
    assert meta.leader("b", 0) is None
    assert meta.partition_count("a") == 3


def test_leader_on_an_unknown_broker_counts_as_unknown() -> None:
    meta = ClusterMetadata.from_response(response([topic("a", partition(0, 5))]))
    assert meta.leader("a", 0) is None


def test_zero_topic_id_means_none_and_errors_keep_no_count() -> None:
    t = topic("gone", error=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    t["topic_id"] = uuid.UUID(int=0)
    meta = ClusterMetadata.from_response(response([t]))
    assert meta.topics["gone"].topic_id is None
    assert meta.topics["gone"].error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert meta.partition_count("gone") is None


def test_partial_refresh_replaces_only_the_asked_topics() -> None:
    old = ClusterMetadata.from_response(
        response([topic("a", partition(0, 1)), topic("b", partition(0, 1))])
    )
    newer = ClusterMetadata.from_response(response([topic("a", partition(0, 2))], brokers=(2,)))
    merged = old.merged(newer, ["a", "c"])
    assert merged.leader("a", 0) == 2
    assert set(merged.topics) == {"a", "b"}
    assert set(merged.brokers) == {2}  # brokers always from the newer answer
    assert old.merged(newer, None).topics.keys() == {"a"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("h:1", ("h", 1)),
        (" 127.0.0.1:9093 ", ("127.0.0.1", 9093)),
        ("host", ("host", 9092)),
        ("[::1]:9094", ("::1", 9094)),
        ("[::1]", ("::1", 9092)),
        ("::1", ("::1", 9092)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


def test_errors_read_for_people() -> None:
    assert error_code(10_000) == ErrorCode.UNKNOWN_SERVER_ERROR
    assert str(topic_error("x", 3)) == "topic 'x' does not exist"
    assert str(topic_error("x", 36, "Topic 'x' already exists.")) == "topic 'x' already exists"
    err = topic_error("x", ErrorCode.INVALID_CONFIG, "bad value")
    assert err.code == ErrorCode.INVALID_CONFIG and str(err) == "topic 'x': bad value"
    assert make_error(7).message is None
