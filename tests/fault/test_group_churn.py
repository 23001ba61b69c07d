"""Membership churn: members join, leave and die in quick succession.

Each step of a seeded random plan starts a member, closes one cleanly or
kills one with kill -9, without waiting for the group to settle in between,
so rebalances overlap: joins arrive during the sync phase, leaders vanish
with a rebalance under way. Records keep arriving. At the end the group
settles, every record is processed, no partition ever had two owners at
once, and only a dead member's last uncommitted record is processed again.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import (
    FAST_GROUPS,
    BrokerProcess,
    Rec,
    confluent_produce,
    create_topic,
    rebalances,
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


@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_churn_keeps_one_owner_per_partition_and_loses_nothing(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    topic = f"churn-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    options = {"session_ms": 2000, "heartbeat_ms": 200, "max_poll_ms": 10000}
    plan = random.Random(f"churn-{client}")
    members: list[Member] = []
    live: list[Member] = []
    died: list[Member] = []
    sent: set[tuple[int, int]] = set()
    stop = threading.Event()

    def keep_producing() -> None:
        batch = 0
        while not stop.is_set():
            records = [Rec(key=f"{batch}-{i}".encode(), value=b"x") for i in range(20)]
            placed = confluent_produce(broker.bootstrap, topic, records)
            sent.update((r.partition, r.offset) for r in placed)
            batch += 1
            stop.wait(0.1)

    def start(name: str) -> None:
        member = Member(client, broker.bootstrap, "g", topic, name, **options)
        members.append(member)
        live.append(member)

    producer = threading.Thread(target=keep_producing)
    producer.start()
    try:
        for name in ("m0", "m1", "m2"):
            start(name)
        for step in range(10):
            wait_for(lambda: all(m.count("started") for m in live), 15, what="members started")
            action = plan.choice(["join", "quit", "kill"] if len(live) > 2 else ["join"])
            if action == "join":
                start(f"n{step}")
            else:
                member = live.pop(plan.randrange(len(live)))
                if action == "kill":
                    member.kill()
                    died.append(member)
                else:
                    member.send("quit")
            time.sleep(plan.uniform(0.1, 0.8))  # the churn itself: steps overlap rebalances
        for member in members:
            if member not in live and member not in died:
                member.quit()
        stop.set()
        producer.join(20)
        wait_for(balanced(live, PARTITIONS), 25, what="the group settles")
        wait_for(
            lambda: sent <= {(e.partition, e.offset) for e in processed(members)},
            20,
            what="every record processed",
        )
        try:
            assert_one_owner_at_a_time(members)
        except AssertionError as exc:
            history = [r.summary() for r in rebalances(broker.bootstrap, "g")]
            raise AssertionError(f"{exc}\nrebalances: {history}") from None
        events = processed(members)
        counts = Counter((e.partition, e.offset) for e in events)
        dead = {m.name for m in died}
        for pos, n in counts.items():
            if n > 1:
                first = next(e.member for e in events if (e.partition, e.offset) == pos)
                story = [
                    (m.name, e.event, e.partitions or e.partition, e.offset, round(e.time % 100, 3))
                    for m in members
                    for e in m.snapshot()
                    if e.event not in ("record", "started") or e.partition == pos[0]
                ]
                story.sort(key=lambda x: x[-1])
                assert first in dead, f"{pos} processed {n} times, first by live {first}: {story}"
    finally:
        stop.set()
        producer.join(20)
        stop_all(members)
