"""Consumer groups across broker restarts: a clean stop (SIGTERM) and kill -9.

Committed offsets and group metadata are records of ``__consumer_offsets``;
the restarted broker reads them back. A member that comes back after the
restart resumes exactly after the last committed offset, and members that
stayed up through the restart carry on in the same generation.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import (
    FAST_GROUPS,
    BrokerProcess,
    create_topic,
    produce_tagged,
    wait_for,
    with_kafka_python_reruns,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from test_groups_harness import CLIENTS, Member, balanced, processed, stop_all

PARTITIONS = 4


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        return {tp.partition: tp.offset for tp in answer}
    finally:
        consumer.close()


def restart(broker: BrokerProcess, how: str) -> None:
    if how == "sigterm":
        assert broker.stop() == 0, broker.output()
    else:
        broker.kill()
    broker.start()


def seen(members: list[Member]) -> set[tuple[int, int]]:
    return {(e.partition, e.offset) for e in processed(members)}


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_member_resumes_after_the_last_committed_offset(
    client: str, how: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    topic = f"resume-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    first = produce_tagged(broker.bootstrap, topic, "a", 200)
    before = [Member(client, broker.bootstrap, "g", topic, "m0", session_ms=3000)]
    try:
        wait_for(lambda: first <= seen(before), 20, what="the first records")
        before[0].quit()
    finally:
        stop_all(before)
    ends = {p: max(o for q, o in first if q == p) + 1 for p, _ in first}
    assert committed(broker.bootstrap, "g", topic) == ends
    later = produce_tagged(broker.bootstrap, topic, "b", 100)

    restart(broker, how)
    assert committed(broker.bootstrap, "g", topic) == ends
    after = [Member(client, broker.bootstrap, "g", topic, "m1", session_ms=3000)]
    try:
        try:
            wait_for(lambda: later <= seen(after), 20, what="the records after the commit")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; the member said {after[0].story()}") from None
        events = processed(after)
        assert sorted((e.partition, e.offset) for e in events) == sorted(later)
        first_read = {p: min(e.offset for e in events if e.partition == p) for p in ends}
        assert first_read == ends, "did not resume exactly after the committed offsets"
    finally:
        stop_all(after)


def describe(bootstrap: str, group: str) -> tuple[str, set[str]]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group])[group].result(10)
    return str(description.state.name), {m.member_id for m in description.members}


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_group_state_survives_a_restart_under_live_members(
    client: str, how: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    topic = f"live-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    options = {"session_ms": 10000, "heartbeat_ms": 300}
    members = [Member(client, broker.bootstrap, "g", topic, f"m{i}", **options) for i in range(2)]
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two members share the partitions")
        sent = produce_tagged(broker.bootstrap, topic, "a", 200)
        wait_for(lambda: sent <= seen(members), 15, what="the first records")
        state, ids = wait_for(lambda: describe(broker.bootstrap, "g"), 10)
        assert state == "STABLE" and len(ids) == 2
        owned = {m.name: m.owned() for m in members}

        restart(broker, how)
        assert describe(broker.bootstrap, "g") == (state, ids), "group state lost"
        sent |= produce_tagged(broker.bootstrap, topic, "b", 200)
        wait_for(lambda: sent <= seen(members), 20, what="records after the restart")
        assert {m.name: m.owned() for m in members} == owned
        assert describe(broker.bootstrap, "g") == (state, ids)
        events = processed(members)
        assert len(events) == len({(e.partition, e.offset) for e in events}), "reprocessed"
    finally:
        stop_all(members)


@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_static_member_restarts_without_rebalance_after_a_broker_restart(
    how: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    """The group was read back from ``__consumer_offsets``, which keeps only
    the chosen protocol of each member; a static member offering several
    (confluent-kafka's default is range,roundrobin) still comes back quietly."""
    broker = broker_factory(**FAST_GROUPS)
    create_topic(broker.bootstrap, "t", PARTITIONS)
    options = {"session_ms": 15000, "heartbeat_ms": 300, "strategy": "range,roundrobin"}

    def static(i: int, name: str) -> Member:
        return Member("confluent", broker.bootstrap, "g", "t", name, instance_id=f"i{i}", **options)

    members = [static(0, "m0"), static(1, "m1")]
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two static members")
        restart(broker, how)
        state, ids = wait_for(lambda: describe(broker.bootstrap, "g"), 10)
        assert state == "STABLE" and len(ids) == 2
        rebalances = members[0].count("revoked")
        owned = members[1].owned()
        members[1].kill()
        back = static(1, "back")
        members.append(back)
        wait_for(lambda: back.owned() == owned, 15, what="the restarted member's partitions")
        sent = produce_tagged(broker.bootstrap, "t", "a", 100)
        wait_for(lambda: sent <= seen(members), 15, what="records after the restarts")
        assert members[0].count("revoked") == rebalances, "the static restart rebalanced"
    finally:
        stop_all(members)
