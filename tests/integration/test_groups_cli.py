"""``moldau groups`` against a broker subprocess with real consumer groups.

Members are confluent-kafka consumers in their own processes (see
test_groups_harness); the command is run as a user runs it, and its output,
stderr and exit status are checked.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from test_groups_harness import Member, balanced, processed, stop_all

from conftest import (
    FAST_GROUPS,
    MOLDAU,
    BrokerProcess,
    create_topic,
    free_port,
    produce_tagged,
    wait_for,
)

PARTITIONS = 3


def moldau(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MOLDAU, "groups", *args, "--bootstrap-server", broker.bootstrap],
        capture_output=True,
        text=True,
        timeout=30,
    )


def ok(broker: BrokerProcess, *args: str) -> str:
    done = moldau(broker, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fails(broker: BrokerProcess, *args: str) -> str:
    """The command failed with one line on stderr; that line."""
    done = moldau(broker, *args)
    assert done.returncode != 0, done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def rows(output: str, first: str) -> list[list[str]]:
    """The table that starts with a header whose first column is ``first``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [first])
    table = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        table.append(line.split())
    return table


def committed(broker: BrokerProcess, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        answer = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
        return {tp.partition: tp.offset for tp in answer}
    finally:
        consumer.close()


@pytest.fixture
def fast_broker(broker_factory: Callable[..., BrokerProcess]) -> BrokerProcess:
    return broker_factory(**FAST_GROUPS)


def consumed_group(
    broker: BrokerProcess, topic: str, names: list[str], sent: set[tuple[int, int]]
) -> list[Member]:
    """Members of group ``g`` that have processed (and committed) ``sent``."""
    members = [Member("confluent", broker.bootstrap, "g", topic, n, session_ms=3000) for n in names]
    wait_for(balanced(members, PARTITIONS), 20, what="members share the partitions")
    wait_for(
        lambda: sent <= {(e.partition, e.offset) for e in processed(members)},
        15,
        what="every record processed",
    )
    return members


def test_list_and_describe_show_members_assignments_offsets_and_lag(
    fast_broker: BrokerProcess,
) -> None:
    broker = fast_broker
    create_topic(broker.bootstrap, "t", PARTITIONS)
    sent = produce_tagged(broker.bootstrap, "t", "a", 90)
    members = consumed_group(broker, "t", ["alpha", "beta"], sent)
    try:
        assert "g" in ok(broker, "list").split()
        assert rows(ok(broker, "list", "--state", "Stable"), "GROUP") == [["g", "Stable"]]
        assert rows(ok(broker, "list", "--state", "Empty"), "GROUP") == []

        out = ok(broker, "describe", "g")
        assert "State: Stable" in out and "Protocol: consumer/range" in out
        member_rows = rows(out, "MEMBER-ID")
        assert sorted(r[2] for r in member_rows) == ["alpha", "beta"]
        assert all(r[1] == "-" and r[3] == "127.0.0.1" for r in member_rows), out
        shown = {p for r in member_rows for p in r[4].removeprefix("t:").split(",")}
        assert shown == {"0", "1", "2"}
        ends = {p: max(o for q, o in sent if q == p) + 1 for p in range(PARTITIONS)}
        offsets = rows(out, "TOPIC")
        owners = {r[0]: r[2] for r in member_rows}
        assert [(r[0], int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in offsets] == [
            ("t", p, ends[p], ends[p], 0) for p in range(PARTITIONS)
        ]
        assert all(r[5] in owners for r in offsets)
    finally:
        for member in members:
            member.quit()
        stop_all(members)

    more = produce_tagged(broker.bootstrap, "t", "b", 30)
    out = ok(broker, "describe", "g")
    assert "State: Empty" in out and "Members: 0" in out
    lag = {int(r[1]): int(r[4]) for r in rows(out, "TOPIC")}
    assert lag == {p: sum(1 for q, _ in more if q == p) for p in range(PARTITIONS)}
    assert {r[5] for r in rows(out, "TOPIC")} == {"-"}


def test_history_shows_each_rebalance_and_survives_a_restart(fast_broker: BrokerProcess) -> None:
    broker = fast_broker
    create_topic(broker.bootstrap, "t", PARTITIONS)
    sent = produce_tagged(broker.bootstrap, "t", "a", 30)
    members = consumed_group(broker, "t", ["alpha"], sent)
    try:
        members.append(Member("confluent", broker.bootstrap, "g", "t", "beta", session_ms=3000))
        wait_for(balanced(members, PARTITIONS), 15, what="two members")
        members[1].quit()
        wait_for(lambda: members[0].owned() == {0, 1, 2}, 15, what="alpha alone")
    finally:
        stop_all(members)

    def history() -> list[str]:
        out = ok(broker, "describe", "g", "--history")
        return out[out.index("Rebalances, oldest first:") :].splitlines()[1:]

    lines = wait_for(lambda: [x for x in history() if "-> 3" in x], 10, what="third rebalance")
    lines = history()
    summaries = [line.strip() for line in lines if line.startswith("  generation")]
    assert summaries[0].startswith("generation 0 -> 1: member joined (alpha-")
    assert summaries[1].startswith("generation 1 -> 2: member joined (beta-")
    assert summaries[2].startswith("generation 2 -> 3: member left (beta-")
    assert all("paused" in s and "stable" in s for s in summaries)
    before = [line.strip() for line in lines if "members before" in line]
    after = [line.strip() for line in lines if "members after" in line]
    assert before[0] == "members before: -" and after[0].startswith("members after:  alpha-")
    assert after[1].count(",") == 1 and before[2].count(",") == 1

    broker.stop()
    broker.start()
    assert history() == lines


def test_delete_refuses_a_group_with_members_and_deletes_an_empty_one(
    fast_broker: BrokerProcess,
) -> None:
    broker = fast_broker
    create_topic(broker.bootstrap, "t", PARTITIONS)
    sent = produce_tagged(broker.bootstrap, "t", "a", 30)
    members = consumed_group(broker, "t", ["alpha"], sent)
    try:
        assert "NON_EMPTY_GROUP" in fails(broker, "delete", "g")
        members[0].quit()
    finally:
        stop_all(members)
    assert ok(broker, "delete", "g").strip() == "Deleted group 'g'."
    assert "g" not in ok(broker, "list").split()
    assert "GROUP_ID_NOT_FOUND" in fails(broker, "delete", "g")
    assert fails(broker, "describe", "g") == "moldau: group 'g' does not exist"
    assert committed(broker, "g", "t") == dict.fromkeys(range(PARTITIONS), -1001)


def test_reset_offsets_is_a_dry_run_until_executed(fast_broker: BrokerProcess) -> None:
    broker = fast_broker
    create_topic(broker.bootstrap, "t", PARTITIONS)
    sent = produce_tagged(broker.bootstrap, "t", "a", 60)
    ends = {p: max(o for q, o in sent if q == p) + 1 for p in range(PARTITIONS)}
    members = consumed_group(broker, "t", ["alpha"], sent)
    try:
        refused = fails(broker, "reset-offsets", "g", "--topic", "t", "--to-earliest")
        assert "no members" in refused and "Stable" in refused
        members[0].quit()
    finally:
        stop_all(members)

    dry = moldau(broker, "reset-offsets", "g", "--topic", "t", "--to-earliest")
    assert dry.returncode == 0 and "--execute" in dry.stderr
    assert rows(dry.stdout, "GROUP") == [["g", "t", str(p), "0"] for p in range(PARTITIONS)]
    assert committed(broker, "g", "t") == ends

    ok(broker, "reset-offsets", "g", "--topic", "t", "--to-offset", "5", "--execute")
    assert committed(broker, "g", "t") == {p: min(5, ends[p]) for p in range(PARTITIONS)}
    ok(broker, "reset-offsets", "g", "--topic", "t", "--to-earliest", "--execute")
    assert committed(broker, "g", "t") == dict.fromkeys(range(PARTITIONS), 0)
    ok(broker, "reset-offsets", "g", "--topic", "t", "--to-latest", "--execute")
    assert committed(broker, "g", "t") == ends

    ok(broker, "reset-offsets", "g", "--topic", "t", "--to-offset", "0", "--execute")
    ok(broker, "reset-offsets", "g", "--topic", "t", "--to-offset", "1000", "--execute")
    assert committed(broker, "g", "t") == ends, "an offset past the end is the end"
    assert "does not exist" in fails(
        broker, "reset-offsets", "g", "--topic", "nope", "--to-earliest"
    )


def test_errors_are_one_line() -> None:
    done = subprocess.run(
        [MOLDAU, "groups", "list", "--bootstrap-server", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("moldau: ")


def test_offsets_of_a_deleted_topic_go_with_it(fast_broker: BrokerProcess) -> None:
    """As in Kafka: a topic created again under the name is read afresh."""
    broker = fast_broker
    create_topic(broker.bootstrap, "t", PARTITIONS)
    create_topic(broker.bootstrap, "gone", 1)
    sent = produce_tagged(broker.bootstrap, "t", "a", 30)
    members = consumed_group(broker, "t", ["alpha"], sent)
    for member in members:
        member.quit()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g"})
    try:
        consumer.commit(offsets=[TopicPartition("gone", 0, 7)], asynchronous=False)
    finally:
        consumer.close()
    assert ("gone", 0) in {(r[0], int(r[1])) for r in rows(ok(broker, "describe", "g"), "TOPIC")}
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics(["gone"])["gone"].result(10)

    started = time.monotonic()
    out = ok(broker, "describe", "g")
    assert time.monotonic() - started < 10
    assert {r[0] for r in rows(out, "TOPIC")} == {"t"}

    create_topic(broker.bootstrap, "gone", 1)
    again = produce_tagged(broker.bootstrap, "gone", "b", 10)  # past the old offset 7
    reader = [Member("confluent", broker.bootstrap, "g", "gone", "beta", session_ms=3000)]
    try:
        wait_for(lambda: again <= {(e.partition, e.offset) for e in processed(reader)}, 15)
        assert min(e.offset for e in processed(reader)) == 0
    finally:
        stop_all(reader)
