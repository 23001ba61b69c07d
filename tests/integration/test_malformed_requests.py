"""Requests that decode but break Kafka's schema get INVALID_REQUEST, not a crash.

A null where the schema forbids one (a JoinGroup protocol name, a topic name)
is answered with INVALID_REQUEST (42) in the error fields of that API, for
every entry the request named; the connection stays open and the next request
on it is served. Each such request is one WARNING line in the broker's log,
rate-limited, and never a traceback.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from conftest import BrokerProcess, RawConnection, create_topic

INVALID_REQUEST = 42
API_VERSIONS = 18


def join_group(protocols: Any) -> dict[str, Any]:
    return {
        "group_id": "g",
        "session_timeout_ms": 10_000,
        "rebalance_timeout_ms": 10_000,
        "member_id": "",
        "group_instance_id": None,
        "protocol_type": "consumer",
        "protocols": protocols,
    }


def produce(name: Any) -> dict[str, Any]:
    partition = {"index": 0, "records": None}
    return {
        "acks": -1,
        "timeout_ms": 1000,
        "topic_data": [{"name": name, "partition_data": [partition]}],
    }


def top(answer: dict[str, Any]) -> int:
    return int(answer["error_code"])


#: (api key, version, body, where the answer carries the error).
MALFORMED: dict[str, tuple[int, int, dict[str, Any], Callable[[dict[str, Any]], int]]] = {
    "JoinGroup null protocol name": (11, 5, join_group([{"name": None, "metadata": b""}]), top),
    "JoinGroup null protocol list": (11, 5, join_group(None), top),
    "JoinGroup v6 (flexible) null protocol name": (
        11,
        6,
        join_group([{"name": None, "metadata": b""}]),
        top,
    ),
    "Metadata null topic name": (
        3,
        1,
        {"topics": [{"name": None}]},
        lambda a: a["topics"][0]["error_code"],
    ),
    "Produce null topic name": (
        0,
        8,
        produce(None),
        lambda a: a["responses"][0]["partition_responses"][0]["error_code"],
    ),
    "Heartbeat null member id": (
        12,
        1,
        {"group_id": "g", "generation_id": 1, "member_id": None},
        top,
    ),
    "SyncGroup null assignment list": (
        14,
        1,
        {"group_id": "g", "generation_id": 1, "member_id": "m", "assignments": None},
        top,
    ),
    "FindCoordinator null key": (10, 1, {"key": None, "key_type": 0}, top),
    "DescribeGroups null group name": (
        15,
        1,
        {"groups": ["g", None]},
        lambda a: a["groups"][1]["error_code"],
    ),
    "ListOffsets null topic name": (
        2,
        4,
        {
            "replica_id": -1,
            "topics": [{"name": None, "partitions": [{"partition_index": 0, "timestamp": -1}]}],
        },
        lambda a: a["topics"][0]["partitions"][0]["error_code"],
    ),
    "OffsetCommit null group id": (
        8,
        2,
        {
            "group_id": None,
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "topics": [
                {"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 1}]}
            ],
        },
        lambda a: a["topics"][0]["partitions"][0]["error_code"],
    ),
}


def still_served(conn: RawConnection) -> None:
    body = {"client_software_name": "t", "client_software_version": "1"}
    assert conn.request(API_VERSIONS, 3, body)["error_code"] == 0


@pytest.mark.parametrize("name", MALFORMED.keys())
def test_null_where_schema_forbids_gets_invalid_request(broker: BrokerProcess, name: str) -> None:
    api_key, version, body, error_of = MALFORMED[name]
    with RawConnection(broker.port) as conn:
        answer = conn.request(api_key, version, body)
        assert error_of(answer) == INVALID_REQUEST, answer
        still_served(conn)
    assert "Traceback" not in broker.output()


def test_malformed_requests_log_one_rate_limited_warning(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "t", 1)
    with RawConnection(broker.port) as conn:
        for _ in range(50):
            answer = conn.request(11, 5, join_group([{"name": None, "metadata": b""}]))
            assert answer["error_code"] == INVALID_REQUEST
        still_served(conn)
    log = broker.output()
    assert "Traceback" not in log
    assert " ERROR " not in log
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert "INVALID_REQUEST" in warnings[0] and "JOIN_GROUP" in warnings[0]


def test_failed_produce_with_acks_0_closes_the_connection(broker: BrokerProcess) -> None:
    """Kafka's way to tell a client that reads no answer that its request failed."""
    body = produce(None)
    body["acks"] = 0
    with RawConnection(broker.port) as conn:
        conn.send(0, 8, body)
        assert conn.read_frame() is None
    with RawConnection(broker.port) as conn:
        still_served(conn)


def test_a_14_byte_request_of_no_api_logs_one_warning_line(broker: BrokerProcess) -> None:
    """It used to log a 1.5 KB traceback at ERROR."""
    header = struct.pack(">hhih", 32767, 2, 7, -1)  # no such API, null client id
    with RawConnection(broker.port) as conn:
        conn.send_bytes(struct.pack(">i", len(header)) + header)
        assert conn.read_frame() is None
    with RawConnection(broker.port) as conn:
        still_served(conn)
    log = broker.output()
    assert "Traceback" not in log and " ERROR " not in log, log
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "32767" in warnings[0], warnings
