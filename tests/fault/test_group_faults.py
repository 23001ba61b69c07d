"""Consumer groups when the broker fails in the middle of group work.

A kill -9 of the broker while a rebalance is under way, and a stop while
members are joining: when it comes back, the group settles again, every
record is processed, no partition has two owners at once, and nothing is
processed twice by members that stayed alive.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import (
    FAST_GROUPS,
    BrokerProcess,
    create_topic,
    produce_tagged,
    wait_for,
    with_kafka_python_reruns,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
from test_groups_harness import (
    CLIENTS,
    Member,
    assert_one_owner_at_a_time,
    balanced,
    processed,
    stop_all,
)

PARTITIONS = 6


def seen(members: list[Member]) -> list[tuple[int, int]]:
    return [(e.partition, e.offset) for e in processed(members)]


@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_broker_killed_during_a_rebalance(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    topic = f"midway-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    sent = produce_tagged(broker.bootstrap, topic, "a", 300)
    options = {"session_ms": 6000, "heartbeat_ms": 300}
    members = [Member(client, broker.bootstrap, "g", topic, f"m{i}", **options) for i in range(2)]
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two members")
        wait_for(lambda: sent <= set(seen(members)), 15, what="the first records")
        newcomer = Member(client, broker.bootstrap, "g", topic, "m2", **options)
        members.append(newcomer)
        before = [len(m.owned()) for m in members[:2]]
        wait_for(lambda: newcomer.count("started"), 15, what="the newcomer's start")
        # The newcomer's JoinGroup starts a rebalance; kill the broker in it.
        wait_for(lambda: [len(m.owned()) for m in members[:2]] != before, 15, what="a rebalance")
        broker.kill()
        broker.start()
        wait_for(balanced(members, PARTITIONS), 25, what="three members after the restart")
        sent |= produce_tagged(broker.bootstrap, topic, "b", 300)
        wait_for(lambda: sent <= set(seen(members)), 15, what="every record")
        again = [pos for pos in set(seen(members)) if seen(members).count(pos) > 1]
        assert again == [], f"processed twice: {sorted(again)[:10]}"
        assert_one_owner_at_a_time(members)
    finally:
        stop_all(members)


def test_a_member_over_group_max_size_is_refused_and_the_group_carries_on(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    broker = broker_factory(group_max_size="2", **FAST_GROUPS)
    create_topic(broker.bootstrap, "t", PARTITIONS)
    options = {"session_ms": 6000, "heartbeat_ms": 300}
    members = [
        Member("confluent", broker.bootstrap, "g", "t", f"m{i}", **options) for i in range(2)
    ]
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two members")
        owned = [m.owned() for m in members]
        rebalances = [m.count("assigned") for m in members]
        extra = Member("confluent", broker.bootstrap, "g", "t", "m2", **options)
        members.append(extra)
        sent = produce_tagged(broker.bootstrap, "t", "a", 300)
        wait_for(lambda: sent <= set(seen(members)), 15, what="every record")
        assert extra.owned() == set() and extra.count("record") == 0
        assert [m.owned() for m in members[:2]] == owned
        assert [m.count("assigned") for m in members[:2]] == rebalances, "the group rebalanced"
    finally:
        stop_all(members)
