"""Consumer groups with real clients: confluent-kafka, kafka-python and aiokafka.

Each member runs in its own process (see test_groups_harness) and commits
after processing each record. Across joins, a kill -9, a member that stops
polling and restarts, every produced record is processed, and a record is
processed twice only when its first owner died before committing it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient, NewPartitions
from test_groups_harness import (
    CLIENTS,
    Event,
    Member,
    assert_one_owner_at_a_time,
    balanced,
    processed,
    stop_all,
)

from conftest import (
    FAST_GROUPS,
    KAFKA_PYTHON_RERUNS,
    BrokerProcess,
    create_topic,
    produce_tagged,
    rebalances,
    wait_for,
    with_kafka_python_reruns,
)

PARTITIONS = 6
#: Small timeouts keep the tests quick; the broker must allow them.


def positions(events: Sequence[Event]) -> Counter[tuple[int, int]]:
    return Counter((e.partition, e.offset) for e in events)


def all_processed(members: Sequence[Member], sent: set[tuple[int, int]]) -> Callable[[], bool]:
    return lambda: sent <= set(positions(processed(members)))


def refused_commits(member: Member) -> set[tuple[int, int]]:
    """The records whose commit right after them failed, by the member's reports."""
    last: dict[int, int] = {}
    refused = set()
    for event in member.snapshot():
        if event.event == "record":
            last[event.partition] = event.offset
        elif event.event == "commit_failed" and event.partition in last:
            refused.add((event.partition, last[event.partition]))
    return refused


def assert_once_unless_owner_died(
    members: Sequence[Member], sent: set[tuple[int, int]], died: Sequence[Member] = ()
) -> None:
    """Nothing lost; a record seen twice was first seen by a member that died
    before it could commit it, or whose commit of it was refused (a commit
    during a rebalance gets REBALANCE_IN_PROGRESS, as in Kafka: the record is
    processed again by its next owner); at most one such record per
    partition."""
    events = processed(members)
    seen = positions(events)
    assert sent <= set(seen), f"lost: {sorted(sent - set(seen))[:10]}"
    twice = {pos for pos, n in seen.items() if n > 1}
    dead = {m.name for m in died}
    uncommitted = {pos: m.name for m in members for pos in refused_commits(m)}
    for pos in twice:
        who = [e.member for e in events if (e.partition, e.offset) == pos]
        excused = who[0] in dead or uncommitted.get(pos) == who[0]
        story = [
            (m.name, e.event, e.partition, e.offset, e.partitions, e.error)
            for m in members
            for e in m.snapshot()
            if e.partition == pos[0] or e.event in ("assigned", "revoked", "closing")
        ]
        assert len(who) == 2 and excused, f"{pos} processed by {who}: {story}"
    per_partition = Counter(p for p, _ in twice)
    assert all(n <= 1 for n in per_partition.values()), f"duplicates: {sorted(twice)}"


def start_members(
    client: str,
    broker: BrokerProcess,
    group: str,
    topic: str,
    names: Sequence[str],
    **options: object,
) -> list[Member]:
    return [Member(client, broker.bootstrap, group, topic, name, **options) for name in names]


@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_members_share_partitions_join_and_kill(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    topic = f"share-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    sent = produce_tagged(broker.bootstrap, topic, "a", 300)
    options = {"session_ms": 3000, "heartbeat_ms": 300, "max_poll_ms": 10000}
    members = start_members(client, broker, "g", topic, ["m0", "m1", "m2"], **options)
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="three members own 2 partitions each")
        assert sorted(len(m.owned()) for m in members) == [2, 2, 2]
        wait_for(all_processed(members, sent), 15, what="the first 300 records")

        joined_at = time.monotonic()
        members += start_members(client, broker, "g", topic, ["m3"], **options)
        wait_for(balanced(members, PARTITIONS), 15, what="four members share six partitions")
        assert all(m.owned() for m in members)
        assert time.monotonic() - joined_at < 8, "the group took long to settle"
        sent |= produce_tagged(broker.bootstrap, topic, "b", 300)

        victim = members[0]  # the first to join: the leader, most likely
        moved = victim.owned()
        victim.kill()
        killed_at = time.monotonic()
        wait_for(balanced(members, PARTITIONS), 15, what="the killed member's partitions move")
        evicted_after = time.monotonic() - killed_at
        assert 2.5 <= evicted_after < 3 + 4, f"evicted {evicted_after:.1f} s after a 3 s session"
        assert moved <= set().union(*(m.owned() for m in members if m is not victim))
        sent |= produce_tagged(broker.bootstrap, topic, "c", 300)
        wait_for(all_processed(members, sent), 15, what="all 900 records")
        assert_once_unless_owner_died(members, sent, died=[victim])
        assert_one_owner_at_a_time(members)
    finally:
        stop_all(members)


@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_member_that_stops_polling_loses_its_partitions(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    topic = f"stall-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    options = {"session_ms": 3000, "heartbeat_ms": 300, "max_poll_ms": 3000}
    members = start_members(client, broker, "g", topic, ["m0", "m1"], **options)
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two members own 3 partitions each")
        sent = produce_tagged(broker.bootstrap, topic, "a", 200)
        wait_for(all_processed(members, sent), 15, what="the first records")

        staller, other = members
        staller.send("stall 7000")
        wait_for(
            lambda: other.owned() == set(range(PARTITIONS)),
            12,
            what="the other member takes every partition",
        )
        sent |= produce_tagged(broker.bootstrap, topic, "b", 200)
        wait_for(all_processed(members, sent), 15, what="records sent during the stall")
        # Back from the stall, the member rejoins and gets a share again.
        wait_for(balanced(members, PARTITIONS), 20, what="the staller back in the group")
        sent |= produce_tagged(broker.bootstrap, topic, "c", 200)
        wait_for(all_processed(members, sent), 15, what="all records")
        assert_once_unless_owner_died(members, sent)
    finally:
        stop_all(members)


@pytest.mark.parametrize(
    ("client", "strategy"),
    [
        pytest.param(*p, marks=KAFKA_PYTHON_RERUNS) if p[0] == "kafka-python" else p
        for p in [(c, "range") for c in CLIENTS]
        + [("confluent", "cooperative-sticky"), ("kafka-python", "cooperative-sticky")]
    ],
)
@pytest.mark.parametrize("which", ["leader", "follower"])
def test_static_member_restarted_within_its_session_keeps_its_partitions(
    client: str, strategy: str, which: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    # One rebalance forms the group (a cooperative protocol would need a
    # second round, which could overlap the restart); the first member to
    # join leads it.
    broker = broker_factory(
        group_initial_rebalance_delay_ms="2000", group_min_session_timeout_ms="1000"
    )
    topic = f"static-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    options = {"session_ms": 15000, "heartbeat_ms": 300, "max_poll_ms": 15000, "strategy": strategy}
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    def static(i: int, name: str) -> Member:
        return Member(client, broker.bootstrap, "g", topic, name, instance_id=f"i{i}", **options)

    def joined() -> int:
        return len(admin.describe_consumer_groups(["g"])["g"].result(10).members)

    def stable() -> bool:
        group = admin.describe_consumer_groups(["g"])["g"].result(10)
        return bool(group.state == ConsumerGroupState.STABLE)

    members = [static(0, "m0")]
    try:
        wait_for(joined, 10, what="m0 in the group first")
        members += [static(1, "m1"), static(2, "m2")]
        wait_for(balanced(members, PARTITIONS), 20, what="three static members own 2 each")
        wait_for(stable, 10, what="no rebalance under way")
        sent = produce_tagged(broker.bootstrap, topic, "a", 300)
        wait_for(all_processed(members, sent), 15, what="the first records")
        before = {m.name: m.snapshot() for m in members}
        last_generation = max(
            (e.generation for m in members for e in before[m.name] if e.generation is not None),
            default=None,
        )

        index = 0 if which == "leader" else 1
        restarted = members[index]
        owned = restarted.owned()
        restarted.kill()
        back = static(index, "back")
        members.append(back)
        wait_for(lambda: back.owned() == owned, 15, what="the restarted member's partitions")
        sent |= produce_tagged(broker.bootstrap, topic, "b", 300)
        wait_for(all_processed(members, sent), 15, what="records sent after the restart")

        for other in members[:3]:
            if other is restarted:
                continue
            news = other.snapshot()[len(before[other.name]) :]
            changes = [e for e in news if e.event in ("assigned", "revoked")]
            assert changes == [], f"{other.name} saw a rebalance: {changes}"
        if last_generation is not None:  # the client tells its generation
            (again,) = [e.generation for e in back.snapshot() if e.event == "assigned"]
            assert again == last_generation, "the restart made a new generation"
        assert_once_unless_owner_died(members, sent, died=[restarted])
        assert_one_owner_at_a_time(members)
    finally:
        stop_all(members)


@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_two_groups_on_one_topic_each_read_every_record(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    topic = f"fanout-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    sent = produce_tagged(broker.bootstrap, topic, "a", 300)
    options = {"session_ms": 6000, "heartbeat_ms": 500}
    first = start_members(client, broker, "first", topic, ["a0", "a1"], **options)
    second = start_members(client, broker, "second", topic, ["b0", "b1", "b2"], **options)
    try:
        wait_for(balanced(first, PARTITIONS), 20, what="group first shares the partitions")
        wait_for(balanced(second, PARTITIONS), 20, what="group second shares the partitions")
        sent |= produce_tagged(broker.bootstrap, topic, "b", 300)
        for members in (first, second):
            wait_for(all_processed(members, sent), 15, what="every record in each group")
            assert_once_unless_owner_died(members, sent)
    finally:
        stop_all(first + second)


@pytest.mark.parametrize("client", with_kafka_python_reruns(["confluent", "kafka-python"]))
def test_cooperative_sticky_moves_partitions_without_double_ownership(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    """Incremental rebalancing: each change takes two rounds (revoke, then assign)."""
    broker = broker_factory(**FAST_GROUPS)
    topic = f"coop-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    sent = produce_tagged(broker.bootstrap, topic, "a", 300)
    options = {"session_ms": 3000, "heartbeat_ms": 300, "strategy": "cooperative-sticky"}
    members = start_members(client, broker, "g", topic, ["m0", "m1"], **options)
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two members own 3 partitions each")
        members += start_members(client, broker, "g", topic, ["m2"], **options)
        wait_for(balanced(members, PARTITIONS), 20, what="three members own 2 each")
        kept = {m.name: m.owned() for m in members[:2]}
        assert all(len(p) == 2 for p in kept.values())
        sent |= produce_tagged(broker.bootstrap, topic, "b", 300)
        members[0].quit()
        wait_for(balanced(members, PARTITIONS), 20, what="m0's partitions move")
        assert kept["m1"] <= members[1].owned(), "a sticky assignment took partitions away"
        members[2].kill()
        wait_for(balanced(members, PARTITIONS), 20, what="m2's partitions move")
        sent |= produce_tagged(broker.bootstrap, topic, "c", 300)
        wait_for(all_processed(members, sent), 15, what="all records")
        assert_once_unless_owner_died(members, sent, died=[members[2]])
        assert_one_owner_at_a_time(members)
    finally:
        stop_all(members)


@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_members_starting_together_make_one_rebalance_after_the_initial_delay(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    broker = broker_factory(group_initial_rebalance_delay_ms="2000")
    topic = f"delay-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    started = time.monotonic()
    members = start_members(client, broker, "g", topic, ["m0", "m1", "m2"], session_ms=6000)
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="three members own 2 partitions each")
        assert time.monotonic() - started >= 2, "the initial delay was not waited for"
        assert all(m.count("assigned") == 1 for m in members), "more than one rebalance"
        (only,) = rebalances(broker.bootstrap, "g")
        assert (only.generation_before, only.generation, len(only.members_after)) == (0, 1, 3)
        assert only.paused_ms is not None and only.paused_ms >= 2000
    finally:
        stop_all(members)


@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_partitions_added_to_the_topic_are_assigned_and_read(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    broker = broker_factory(**FAST_GROUPS)
    topic = f"grow-{client}"
    create_topic(broker.bootstrap, topic, 2)
    options = {"session_ms": 6000, "heartbeat_ms": 300}
    members = start_members(client, broker, "g", topic, ["m0", "m1"], **options)
    try:
        wait_for(balanced(members, 2), 20, what="two members own one partition each")
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_partitions([NewPartitions(topic, PARTITIONS)])[topic].result(10)
        wait_for(balanced(members, PARTITIONS), 20, what="the new partitions assigned")
        sent = produce_tagged(broker.bootstrap, topic, "a", 300)
        assert {p for p, _ in sent} == set(range(PARTITIONS))
        wait_for(all_processed(members, sent), 15, what="records of every partition")
        assert_once_unless_owner_died(members, sent)
        assert_one_owner_at_a_time(members)
    finally:
        stop_all(members)


@pytest.mark.parametrize("api_version", ["0.11", "2.0", "2.3"])
def test_older_group_protocol_versions(
    api_version: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    """kafka-python told to speak an older Kafka: JoinGroup v2 (no member id
    round trip), v3 and v5 (static membership era), with the offset and
    heartbeat versions of those releases."""
    broker = broker_factory(**FAST_GROUPS)
    topic = f"old-{api_version}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    sent = produce_tagged(broker.bootstrap, topic, "a", 300)
    options = {"session_ms": 3000, "heartbeat_ms": 300, "api_version": api_version}
    members = start_members("kafka-python", broker, "g", topic, ["m0", "m1", "m2"], **options)
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="three members own 2 partitions each")
        wait_for(all_processed(members, sent), 15, what="the first records")
        victim = members[0]
        victim.kill()
        wait_for(balanced(members, PARTITIONS), 15, what="the killed member's partitions move")
        members[1].quit()
        wait_for(balanced(members, PARTITIONS), 15, what="the leaver's partitions move")
        sent |= produce_tagged(broker.bootstrap, topic, "b", 300)
        wait_for(all_processed(members, sent), 15, what="every record")
        assert_once_unless_owner_died(members, sent, died=[victim])
        assert_one_owner_at_a_time(members)
    finally:
        stop_all(members)


def test_a_second_instance_with_the_same_instance_id_fences_the_first(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """confluent-kafka, which treats FENCED_INSTANCE_ID as fatal as the Java client does."""
    broker = broker_factory(**FAST_GROUPS)
    create_topic(broker.bootstrap, "t", 4)
    options = {"session_ms": 10000, "heartbeat_ms": 300}
    members = [
        Member("confluent", broker.bootstrap, "g", "t", f"m{i}", instance_id=f"i{i}", **options)
        for i in range(2)
    ]
    try:
        wait_for(balanced(members, 4), 20, what="two static members")
        first, other = members
        owned = first.owned()
        rebalances_seen = other.count("revoked")
        twin = Member("confluent", broker.bootstrap, "g", "t", "twin", instance_id="i0", **options)
        members.append(twin)
        wait_for(lambda: twin.owned() == owned, 15, what="the twin takes the instance's place")
        errors = wait_for(
            lambda: [e.error for e in first.snapshot() if e.event == "error"], 10, what="fencing"
        )
        assert any("fenced" in error.lower() for error in errors), errors
        assert other.count("revoked") == rebalances_seen, "the other member saw a rebalance"
    finally:
        stop_all(members)


@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_a_rebalance_waits_for_a_stalled_member_no_longer_than_its_rebalance_timeout(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    """A member joins while another has stopped polling: the group goes on
    without the stalled one once max.poll.interval.ms (the rebalance
    timeout) has passed, and takes it back when it polls again."""
    broker = broker_factory(**FAST_GROUPS)
    topic = f"stalljoin-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    options = {"session_ms": 3000, "heartbeat_ms": 300, "max_poll_ms": 4000}
    members = start_members(client, broker, "g", topic, ["m0", "m1"], **options)
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two members")
        staller, other = members
        staller.send("stall 9000")
        wait_for(lambda: staller.count("stalled"), 5, what="the stall")
        members += start_members(client, broker, "g", topic, ["m2"], **options)
        joined_at = time.monotonic()
        newcomer = members[2]
        wait_for(
            lambda: other.owned() | newcomer.owned() == set(range(PARTITIONS)),
            15,
            what="the other two own every partition",
        )
        assert time.monotonic() - joined_at < 4 + 3, "the group waited past the rebalance timeout"
        sent = produce_tagged(broker.bootstrap, topic, "a", 300)
        wait_for(all_processed(members, sent), 15, what="records sent during the stall")
        wait_for(balanced(members, PARTITIONS), 15, what="the staller back in the group")
        assert_once_unless_owner_died(members, sent)
    finally:
        stop_all(members)


def test_a_session_timeout_below_the_brokers_minimum_is_refused(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """group.min.session.timeout.ms (6000 by default) bounds what members may ask."""
    broker = broker_factory(group_initial_rebalance_delay_ms="0")
    create_topic(broker.bootstrap, "t", 2)
    member = Member("confluent", broker.bootstrap, "g", "t", "m", session_ms=3000)
    try:
        errors = wait_for(
            lambda: [e.error for e in member.snapshot() if e.event == "error"], 10, what="refusal"
        )
        assert "INVALID_SESSION_TIMEOUT" in errors[0]
        assert member.owned() == set()
    finally:
        member.stop()


@pytest.mark.parametrize("client", with_kafka_python_reruns(CLIENTS))
def test_a_static_member_that_goes_away_keeps_its_partitions_until_its_session_ends(
    client: str, broker_factory: Callable[..., BrokerProcess]
) -> None:
    """Static members leave by session timeout (or an admin's LeaveGroup),
    so a restart does not move partitions; one that never comes back loses
    them once its session is over."""
    broker = broker_factory(**FAST_GROUPS)
    topic = f"static-gone-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    options = {"session_ms": 4000, "heartbeat_ms": 300}
    members = [
        Member(client, broker.bootstrap, "g", topic, f"m{i}", instance_id=f"i{i}", **options)
        for i in range(2)
    ]
    try:
        wait_for(balanced(members, PARTITIONS), 20, what="two static members")
        gone, other = members
        kept = other.owned()
        gone.kill()
        killed_at = time.monotonic()
        wait_for(lambda: other.owned() == set(range(PARTITIONS)), 15, what="the partitions move")
        moved_after = time.monotonic() - killed_at
        assert 3.5 <= moved_after < 4 + 4, f"moved {moved_after:.1f} s after a 4 s session"
        assert kept <= other.owned()
    finally:
        stop_all(members)
