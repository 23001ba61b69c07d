"""Every version of the group APIs on the wire, request by request.

Real clients each speak a few versions; these tests speak all of them, with
moldau's own codecs over a plain socket, and check the fields each version
adds: the member id round trip of JoinGroup v4+, instance ids from v5,
protocol type and name from v7, batched FindCoordinator keys from v4,
several groups per OffsetFetch from v8, states in ListGroups from v4, and
batched LeaveGroup members from v3.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from conftest import BrokerProcess, RawConnection, create_topic
from moldau.group.consumer_protocol import (
    Assignment,
    Subscription,
    decode_assignment,
    encode_assignment,
    encode_subscription,
)
from moldau.protocol.api_keys import ApiKey

MEMBER_ID_REQUIRED = 79
GROUP_ID_NOT_FOUND = 69
REBALANCE_IN_PROGRESS = 27
UNKNOWN_MEMBER_ID = 25
FENCED_INSTANCE_ID = 82

SUBSCRIPTION = encode_subscription(Subscription(("t",)))
ASSIGNMENT = encode_assignment(Assignment((("t", (0, 1)),)))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module: every test uses groups of its own."""
    data = tmp_path_factory.mktemp("wire") / "data"
    broker = BrokerProcess(data, group_initial_rebalance_delay_ms="0")
    broker.start()
    try:
        create_topic(broker.bootstrap, "t", 2)
        yield broker
    finally:
        broker.kill()


def join_body(group: str, member_id: str = "", instance: str | None = None) -> dict[str, Any]:
    return {
        "group_id": group,
        "session_timeout_ms": 10000,
        "rebalance_timeout_ms": 10000,
        "member_id": member_id,
        "group_instance_id": instance,
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": SUBSCRIPTION}],
        "reason": "a test",
    }


def join(conn: RawConnection, version: int, group: str, instance: str | None = None) -> Any:
    """JoinGroup as a new member, taking the member id round trip where the version has it."""
    answer = conn.request(ApiKey.JOIN_GROUP, version, join_body(group, instance=instance))
    if version >= 4 and instance is None:
        assert answer["error_code"] == MEMBER_ID_REQUIRED
        assert answer["member_id"] and answer["generation_id"] == -1
        body = join_body(group, answer["member_id"])
        answer = conn.request(ApiKey.JOIN_GROUP, version, body)
    assert answer["error_code"] == 0, answer
    return answer


def sync(conn: RawConnection, version: int, group: str, joined: Any) -> Any:
    me = joined["member_id"]
    body = {
        "group_id": group,
        "generation_id": joined["generation_id"],
        "member_id": me,
        "group_instance_id": None,
        "protocol_type": "consumer",
        "protocol_name": "range",
        "assignments": [{"member_id": me, "assignment": ASSIGNMENT}],
    }
    return conn.request(ApiKey.SYNC_GROUP, version, body)


@pytest.mark.parametrize("version", range(10))
def test_join_sync_heartbeat_leave_at_every_join_version(
    broker: BrokerProcess, version: int
) -> None:
    group = f"join-v{version}"
    with RawConnection(broker.port) as conn:
        joined = join(conn, version, group)
        me = joined["member_id"]
        assert joined["generation_id"] == 1 and joined["leader"] == me
        assert [m["member_id"] for m in joined["members"]] == [me]
        assert joined["members"][0]["metadata"] == SUBSCRIPTION
        assert joined["protocol_name"] == "range"
        if version >= 7:
            assert joined["protocol_type"] == "consumer"
        if version >= 9:
            assert joined["skip_assignment"] is False

        synced = sync(conn, min(version, 5), group, joined)
        assert synced["error_code"] == 0
        assert decode_assignment(synced["assignment"]).partitions == (("t", (0, 1)),)
        if version >= 5:
            assert (synced["protocol_type"], synced["protocol_name"]) == ("consumer", "range")

        heartbeat = {"group_id": group, "generation_id": 1, "member_id": me}
        beat = conn.request(ApiKey.HEARTBEAT, min(version, 4), heartbeat)
        assert beat["error_code"] == 0
        leave_version = min(version, 5)
        leave = {"group_id": group, "member_id": me, "members": [{"member_id": me}]}
        left = conn.request(ApiKey.LEAVE_GROUP, leave_version, leave)
        assert left["error_code"] == 0
        if leave_version >= 3:
            assert [(m["member_id"], m["error_code"]) for m in left["members"]] == [(me, 0)]
        gone = conn.request(ApiKey.HEARTBEAT, min(version, 4), heartbeat)
        assert gone["error_code"] == UNKNOWN_MEMBER_ID


def test_batched_leave_and_static_fencing(broker: BrokerProcess) -> None:
    """LeaveGroup v3+ names members by id or instance id; a static member's
    old id is fenced once the instance rejoined under a new one."""
    group = "static-wire"
    with RawConnection(broker.port) as conn:
        first = join(conn, 9, group, instance="i0")
        synced = sync(conn, 5, group, first)
        assert synced["error_code"] == 0
        again = conn.request(ApiKey.JOIN_GROUP, 9, join_body(group, instance="i0"))
        assert again["error_code"] == 0 and again["member_id"] != first["member_id"]
        assert again["generation_id"] == first["generation_id"], "a static rejoin rebalanced"
        assert again["skip_assignment"] is True, "the static leader must not reassign"
        stale = {"group_id": group, "generation_id": 1, "member_id": first["member_id"]}
        stale["group_instance_id"] = "i0"
        assert conn.request(ApiKey.HEARTBEAT, 4, stale)["error_code"] == FENCED_INSTANCE_ID
        leave = {
            "group_id": group,
            "members": [
                {"member_id": "", "group_instance_id": "i0", "reason": "admin"},
                {"member_id": "nobody", "group_instance_id": None},
            ],
        }
        left = conn.request(ApiKey.LEAVE_GROUP, 5, leave)
        codes = [(m["group_instance_id"], m["error_code"]) for m in left["members"]]
        assert codes == [("i0", 0), (None, UNKNOWN_MEMBER_ID)]
        described = conn.request(ApiKey.DESCRIBE_GROUPS, 5, {"groups": [group]})
        assert described["groups"][0]["group_state"] == "Empty"


@pytest.mark.parametrize("version", range(7))
def test_find_coordinator_every_version(broker: BrokerProcess, version: int) -> None:
    body = {"key": "g", "key_type": 0, "coordinator_keys": ["g", "other"]}
    with RawConnection(broker.port) as conn:
        answer = conn.request(ApiKey.FIND_COORDINATOR, version, body)
    where = {"node_id": 0, "host": "127.0.0.1", "port": broker.port, "error_code": 0}
    if version >= 4:
        coordinators = answer["coordinators"]
        assert [c["key"] for c in coordinators] == ["g", "other"]
        assert all({k: c[k] for k in where} == where for c in coordinators)
    else:
        assert {k: answer[k] for k in where} == where


@pytest.mark.parametrize("version", range(2, 10))
def test_offset_commit_and_fetch_every_version(broker: BrokerProcess, version: int) -> None:
    group = f"offsets-v{version}"
    partition = {
        "partition_index": 0,
        "committed_offset": 40 + version,
        "committed_leader_epoch": -1,
        "commit_timestamp": -1,
        "committed_metadata": "meta",
    }
    commit = {
        "group_id": group,
        "generation_id_or_member_epoch": -1,
        "member_id": "",
        "group_instance_id": None,
        "retention_time_ms": -1,
        "topics": [{"name": "t", "partitions": [partition]}],
    }
    with RawConnection(broker.port) as conn:
        committed = conn.request(ApiKey.OFFSET_COMMIT, version, commit)
        assert committed["topics"][0]["partitions"][0]["error_code"] == 0
        for fetch_version in (1, 7, 8, 9):
            topics = [{"name": "t", "partition_indexes": [0, 1]}]
            body = {
                "group_id": group,
                "topics": topics,
                "require_stable": False,
                "groups": [{"group_id": group, "topics": topics}, {"group_id": "none"}],
            }
            answer = conn.request(ApiKey.OFFSET_FETCH, fetch_version, body)
            if fetch_version >= 8:
                mine, other = answer["groups"]
                assert (mine["group_id"], other["group_id"]) == (group, "none")
                assert other["topics"] == [] and other["error_code"] == 0
                answer = mine
            parts = answer["topics"][0]["partitions"]
            got = [(p["partition_index"], p["committed_offset"], p["metadata"]) for p in parts]
            assert got == [(0, 40 + version, "meta"), (1, -1, "")]


@pytest.mark.parametrize("version", range(6))
def test_list_groups_every_version(broker: BrokerProcess, version: int) -> None:
    with RawConnection(broker.port) as conn:
        group = f"list-v{version}"
        join(conn, 9, group)
        body = {"states_filter": ["CompletingRebalance"], "types_filter": []}
        answer = conn.request(ApiKey.LIST_GROUPS, version, body)
    listed = {g["group_id"]: g for g in answer["groups"]}
    assert listed[group]["protocol_type"] == "consumer"
    if version >= 4:
        assert {g["group_state"] for g in listed.values()} == {"CompletingRebalance"}
    if version >= 5:
        assert listed[group]["group_type"] == "classic"


@pytest.mark.parametrize("version", range(7))
def test_describe_and_delete_groups_every_version(broker: BrokerProcess, version: int) -> None:
    group = f"describe-v{version}"
    with RawConnection(broker.port) as conn:
        joined = join(conn, 9, group)
        assert sync(conn, 5, group, joined)["error_code"] == 0
        body = {"groups": [group, "never-was"], "include_authorized_operations": False}
        (stable, dead) = conn.request(ApiKey.DESCRIBE_GROUPS, version, body)["groups"]
        assert (stable["group_state"], stable["protocol_data"]) == ("Stable", "range")
        (member,) = stable["members"]
        assert member["member_id"] == joined["member_id"] and member["client_id"] == "test"
        assert member["member_assignment"] == ASSIGNMENT
        assert member["member_metadata"] == SUBSCRIPTION
        if version >= 4:
            assert member["group_instance_id"] is None
        assert (dead["error_code"], dead["group_state"], dead["members"]) == (0, "Dead", [])

        delete_version = min(version, 2)
        deleting = {"groups_names": [group]}
        refused = conn.request(ApiKey.DELETE_GROUPS, delete_version, deleting)
        assert refused["results"] == [{"group_id": group, "error_code": 68}]
        leave = {"group_id": group, "member_id": joined["member_id"], "members": []}
        assert conn.request(ApiKey.LEAVE_GROUP, 0, leave)["error_code"] == 0
        deleted = conn.request(ApiKey.DELETE_GROUPS, delete_version, deleting)
        assert deleted["results"] == [{"group_id": group, "error_code": 0}]
        again = conn.request(ApiKey.DELETE_GROUPS, delete_version, deleting)
        assert again["results"] == [{"group_id": group, "error_code": GROUP_ID_NOT_FOUND}]


@pytest.mark.parametrize("version", range(5, 10))
def test_a_static_leader_rejoining_keeps_the_group_stable(
    broker: BrokerProcess, version: int
) -> None:
    """The leader's instance restarts (unknown member id, same instance id).

    From v9 (KIP-814) it is told it leads but must skip the assignment, and
    gets the members to watch their subscriptions. Older versions have no way
    to say "skip": as in Kafka, such a leader is answered as a follower (no
    members, the previous leader id), so it syncs and gets its partitions
    back instead of computing an assignment of nobody and rejoining."""
    group = f"static-leader-v{version}"
    with RawConnection(broker.port) as conn:
        leader = conn.request(ApiKey.JOIN_GROUP, version, join_body(group, instance="lead"))
        assert leader["error_code"] == 0 and leader["leader"] == leader["member_id"]
        assert sync(conn, 5, group, leader)["error_code"] == 0

        back = conn.request(ApiKey.JOIN_GROUP, version, join_body(group, instance="lead"))
        assert back["error_code"] == 0
        assert back["generation_id"] == leader["generation_id"], "the rejoin rebalanced"
        if version >= 9:
            assert back["skip_assignment"] is True
            assert back["leader"] == back["member_id"]
            assert [m["group_instance_id"] for m in back["members"]] == ["lead"]
        else:
            assert (back["leader"], back["members"]) == (leader["member_id"], [])
        follower_sync = {
            "group_id": group,
            "generation_id": back["generation_id"],
            "member_id": back["member_id"],
            "group_instance_id": "lead",
            "assignments": [],
        }
        synced = conn.request(ApiKey.SYNC_GROUP, 3, follower_sync)
        assert synced["error_code"] == 0 and synced["assignment"] == ASSIGNMENT
        described = conn.request(ApiKey.DESCRIBE_GROUPS, 5, {"groups": [group]})
        assert described["groups"][0]["group_state"] == "Stable"
