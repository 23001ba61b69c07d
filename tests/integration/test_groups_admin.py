"""Group administration with real admin clients: confluent-kafka and kafka-python.

ListGroups with a state filter, DescribeGroups with decoded assignments,
OffsetFetch, standalone OffsetCommit, OffsetDelete, DeleteGroups, and
removing a dead static member by its instance id (batched LeaveGroup), each
against groups that real consumers formed.
"""

from __future__ import annotations

from collections.abc import Callable

import kafka
from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka.admin import KafkaAdminClient, MemberToRemove
from test_groups_harness import Member, balanced, processed, stop_all

from conftest import (
    KAFKA_PYTHON_RERUNS,
    BrokerProcess,
    Rec,
    confluent_produce,
    create_topic,
    wait_for,
)

PARTITIONS = 3
FAST_GROUPS = {"group_initial_rebalance_delay_ms": "0", "group_min_session_timeout_ms": "1000"}


def produce(broker: BrokerProcess, topic: str, count: int) -> dict[int, int]:
    """``count`` records; the log end offset of each partition."""
    records = [Rec(key=f"k{i}".encode(), value=f"v{i}".encode()) for i in range(count)]
    placed = confluent_produce(broker.bootstrap, topic, records)
    return {p: 1 + max(r.offset for r in placed if r.partition == p) for p in range(PARTITIONS)}


def offsets_of(admin: AdminClient, group: str) -> dict[int, int]:
    request = [ConsumerGroupTopicPartitions(group)]
    answer = admin.list_consumer_group_offsets(request)[group].result(10)
    return {tp.partition: tp.offset for tp in answer.topic_partitions}


def test_confluent_admin_lists_describes_alters_and_deletes_groups(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    create_topic(broker.bootstrap, "t", PARTITIONS)
    ends = produce(broker, "t", 60)
    members = [
        Member("confluent", broker.bootstrap, "g", "t", name, session_ms=3000)
        for name in ("alpha", "beta")
    ]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two members")
        wait_for(lambda: len(processed(members)) >= 60, 15, what="every record")

        stable = admin.list_consumer_groups(states={ConsumerGroupState.STABLE}).result(10)
        assert [(g.group_id, g.state) for g in stable.valid] == [("g", ConsumerGroupState.STABLE)]
        empty = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}).result(10)
        assert empty.valid == []

        described = admin.describe_consumer_groups(["g"])["g"].result(10)
        assert described.state == ConsumerGroupState.STABLE
        assert described.partition_assignor == "range"
        assert not described.is_simple_consumer_group
        by_client = {m.client_id: m for m in described.members}
        assert sorted(by_client) == ["alpha", "beta"]
        owned = {
            name: {tp.partition for tp in m.assignment.topic_partitions}
            for name, m in by_client.items()
        }
        assert owned == {m.name: m.owned() for m in members}
        assert offsets_of(admin, "g") == ends

        for member in members:
            member.quit()
        gone = admin.describe_consumer_groups(["g"])["g"].result(10)
        assert gone.state == ConsumerGroupState.EMPTY and gone.members == []

        change = [ConsumerGroupTopicPartitions("g", [TopicPartition("t", 0, 1)])]
        admin.alter_consumer_group_offsets(change)["g"].result(10)
        assert offsets_of(admin, "g") == {**ends, 0: 1}

        admin.delete_consumer_groups(["g"])["g"].result(10)
        assert admin.list_consumer_groups().result(10).valid == []
        assert offsets_of(admin, "g") == {}
    finally:
        stop_all(members)


@KAFKA_PYTHON_RERUNS  # kafka-python's dropped join task, see the marker in conftest
def test_kafka_python_admin_removes_a_dead_static_member_and_deletes_offsets(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    create_topic(broker.bootstrap, "t", PARTITIONS)
    ends = produce(broker, "t", 60)
    # A long session: without the admin, the dead member would hold its
    # partitions for 30 seconds.
    options = {"session_ms": 30000, "heartbeat_ms": 500}
    members = [
        Member("kafka-python", broker.bootstrap, "g", "t", f"m{i}", instance_id=f"i{i}", **options)
        for i in range(2)
    ]
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two static members")
        wait_for(lambda: len(processed(members)) >= 60, 15, what="every record")
        listed = admin.list_groups()
        assert [(g["group_id"], g["group_state"]) for g in listed] == [("g", "Stable")]
        (described,) = admin.describe_groups(["g"]).values()
        instances = sorted(m["group_instance_id"] for m in described["members"])
        assert instances == ["i0", "i1"]

        dead, alive = members
        dead.kill()
        removed = admin.remove_group_members("g", [MemberToRemove(group_instance_id="i0")])
        assert [error.errno for error in removed.values()] == [0]
        wait_for(
            lambda: alive.owned() == set(range(PARTITIONS)),
            10,
            what="the live member takes the dead one's partitions",
        )
        (described,) = admin.describe_groups(["g"]).values()
        assert [m["group_instance_id"] for m in described["members"]] == ["i1"]

        # A static member does not leave when it closes: its session would
        # keep the group (and its topics) busy, so the admin removes it too.
        alive.quit()
        (described,) = admin.describe_groups(["g"]).values()
        assert described["group_state"] == "Stable"
        admin.remove_group_members("g", [MemberToRemove(group_instance_id="i1")])
        (described,) = admin.describe_groups(["g"]).values()
        assert (described["group_state"], described["members"]) == ("Empty", [])
        committed = admin.list_group_offsets({"g": None})["g"]
        assert {tp.partition: o.offset for tp, o in committed.items()} == ends
        deleted = admin.delete_group_offsets("g", [kafka.TopicPartition("t", 1)])
        assert [error.errno for error in deleted.values()] == [0]
        committed = admin.list_group_offsets({"g": None})["g"]
        assert {tp.partition for tp in committed} == {0, 2}
        assert admin.delete_groups(["g"]) == {"g": "OK"}
        assert admin.list_groups() == []
    finally:
        admin.close()
        stop_all(members)
