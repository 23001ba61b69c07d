"""A static member restarting: when it counts as unchanged (``Group.asks_the_same``),
how a returning leader is answered (``replaced_leader`` / skip_assignment), and,
at the end, what deleting a topic does to the groups' committed offsets
(``Offsets.forget_topic``).

A restart that counts as unchanged takes the old assignment back with no
rebalance; anything else rebalances with STATIC_MEMBER_REJOIN. Kafka's clients
change owned partitions, generation and user data by merely restarting, so
those must not count; topics and rack must.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_group_support import Answer, Harness, Joined, joined_from, state

from moldau.broker.handlers.join_group import _answer
from moldau.group import Trigger, errors
from moldau.group.consumer_protocol import Subscription, encode_subscription
from moldau.group.model import Group, Member
from moldau.group.placement import partition_for_group
from moldau.group.records import GroupMetadataKey, OffsetCommitKey, encode_key
from moldau.group.results import JoinResult, LeavingMember, OffsetCommitPartition

SESSION = 120_000


def sub(
    *topics: str,
    user_data: bytes | None = None,
    owned: tuple[tuple[str, tuple[int, ...]], ...] = (),
    generation: int = -1,
    rack: str | None = None,
    version: int = 3,
) -> bytes:
    return encode_subscription(Subscription(topics, user_data, owned, generation, rack, version))


Protocols = list[tuple[str, bytes]]
RANGE = [("range", sub("orders", "payments"))]
BOTH = [("range", sub("orders", "payments")), ("roundrobin", sub("orders", "payments"))]


def static_group(
    h: Harness, *protocols: Protocols, protocol_type: str = "consumer"
) -> list[Joined]:
    """Static members i-0 (the leader), i-1, ... offering ``protocols``: Stable."""
    answers = [
        h.join(
            "g",
            instance=f"i-{i}",
            client_id=f"client-{i}",
            session_ms=SESSION,
            protocols=p,
            protocol_type=protocol_type,
        )
        for i, p in enumerate(protocols)
    ]
    h.finish_initial_delay()
    joined = [joined_from(a) for a in answers]
    if protocol_type == "consumer":
        return h.sync_all("g", joined)
    # Harness.sync_all speaks "consumer" only; every member gets nothing here.
    for i, member in enumerate(joined):
        synced = h.sync("g", member, {}, instance=f"i-{i}", protocol_type=protocol_type)
        assert synced.result.error_code == errors.NONE  # the leader syncs first
    return joined


def restart(
    h: Harness, i: int, protocols: Protocols, protocol_type: str = "consumer"
) -> Answer[JoinResult]:
    return h.join(
        "g",
        instance=f"i-{i}",
        client_id=f"client-{i}",
        session_ms=SESSION,
        protocols=protocols,
        protocol_type=protocol_type,
    )


def assert_no_rebalance(h: Harness, answer: Answer[JoinResult], rebalances: int = 1) -> None:
    assert answer.result.error_code == errors.NONE
    assert state(h, "g") == "Stable"
    assert len(h.coord.rebalance_history("g")) == rebalances


def assert_rebalance(h: Harness, answer: Answer[JoinResult]) -> None:
    assert not answer.done
    assert state(h, "g") == "PreparingRebalance"
    record = h.coord.rebalance_history("g")[-1]
    assert (record.trigger, record.member_ids) == (
        Trigger.STATIC_MEMBER_REJOIN,
        (h.coord.describe_groups(["g"])[0].members[1].member_id,),
    )


# --- what counts as unchanged ---------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        # A cooperative client owned partitions of generation 4; restarted, it owns nothing.
        (
            sub("orders", owned=(("orders", (0, 1)),), generation=4),
            sub("orders"),
        ),
        (sub("orders", user_data=b"sticky-v1"), sub("orders", user_data=b"sticky-v2")),
        (sub("orders", user_data=b"x"), sub("orders", user_data=None)),
        (sub("orders", "payments"), sub("payments", "orders")),  # topic order
        (sub("orders", rack="eu-1a"), sub("orders", rack="eu-1a", generation=9)),
        # A client upgraded to a newer subscription version, same topics, no rack.
        (sub("orders", version=0), sub("orders", version=3)),
    ],
    ids=["owned-partitions", "user-data", "user-data-dropped", "topic-order", "rack", "version"],
)
def test_restart_that_changes_only_what_a_restart_changes_does_not_rebalance(
    before: bytes, after: bytes
) -> None:
    h = Harness()
    _leader, old = static_group(h, [("range", before)], [("range", before)])
    new = restart(h, 1, [("range", after)])
    assert_no_rebalance(h, new)
    assignment = h.sync("g", joined_from(new), instance="i-1").result.assignment
    assert assignment == f"assignment-of-{old.member_id}".encode()
    # What the member sent now is what the leader will see next time.
    back = joined_from(restart(h, 0, [("range", before)]))
    assert back.members == (back.member_id, new.result.member_id)
    description = h.coord.describe_groups(["g"])[0]
    assert description.members[1].metadata == after


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (sub("orders"), sub("orders", "refunds")),  # a topic added
        (sub("orders", "refunds"), sub("orders")),  # a topic removed
        (sub("orders"), sub("refunds")),
        (sub("orders"), sub("orders", rack="eu-1a")),  # a rack appears
        (sub("orders", rack="eu-1a"), sub("orders", rack="eu-1b")),  # moved
        (sub("orders", rack="eu-1a"), sub("orders")),  # rack gone
        (sub("orders"), b"\x00\x03garbage"),  # unreadable now
    ],
    ids=["added", "removed", "replaced", "rack-new", "rack-moved", "rack-gone", "unreadable"],
)
def test_restart_with_other_topics_or_rack_rebalances(before: bytes, after: bytes) -> None:
    h = Harness()
    static_group(h, [("range", before)], [("range", before)])
    assert_rebalance(h, restart(h, 1, [("range", after)]))


def test_unreadable_but_identical_subscription_is_unchanged() -> None:
    h = Harness()
    odd = [("range", b"\xff\xff not a subscription")]
    static_group(h, odd, odd)
    assert_no_rebalance(h, restart(h, 1, odd))


def test_only_the_chosen_protocol_is_judged() -> None:
    h = Harness()
    static_group(h, BOTH, BOTH)  # range chosen
    changed_roundrobin = [("range", sub("payments", "orders")), ("roundrobin", sub("refunds"))]
    assert_no_rebalance(h, restart(h, 1, changed_roundrobin))
    assert_no_rebalance(h, restart(h, 1, RANGE))  # roundrobin dropped
    assert_no_rebalance(h, restart(h, 1, BOTH))  # and offered again


def test_dropping_the_chosen_protocol_rebalances() -> None:
    h = Harness()
    static_group(h, BOTH, BOTH)
    assert_rebalance(h, restart(h, 1, [("roundrobin", sub("orders", "payments"))]))


def test_follower_offering_protocols_in_another_order_does_not_rebalance() -> None:
    # Votes tie 1:1; the leader's preference (range) still wins.
    h = Harness()
    static_group(h, BOTH, BOTH)
    assert_no_rebalance(h, restart(h, 1, BOTH[::-1]))


def test_leader_preferring_another_protocol_rebalances() -> None:
    # As in Kafka: the group would now choose roundrobin, so it must rebalance.
    h = Harness()
    static_group(h, BOTH, BOTH)
    answer = restart(h, 0, BOTH[::-1])
    assert not answer.done and state(h, "g") == "PreparingRebalance"
    assert h.coord.rebalance_history("g")[-1].trigger is Trigger.STATIC_MEMBER_REJOIN


def test_other_protocol_types_compare_bytes() -> None:
    h = Harness()
    connect = [("sessioned", b"worker-config-v1")]
    static_group(h, connect, connect, protocol_type="connect")
    assert_no_rebalance(h, restart(h, 1, connect, "connect"))
    # Even a valid consumer subscription is opaque outside the consumer protocol.
    assert_rebalance(h, restart(h, 1, [("sessioned", b"worker-config-v2")], "connect"))


def test_restart_with_another_protocol_type_is_inconsistent() -> None:
    h = Harness()
    static_group(h, RANGE, RANGE)
    answer = restart(h, 1, RANGE, protocol_type="connect")
    assert answer.result.error_code == errors.INCONSISTENT_GROUP_PROTOCOL
    assert state(h, "g") == "Stable" and len(h.coord.rebalance_history("g")) == 1


def test_only_member_restarting_with_another_protocol_type_is_inconsistent() -> None:
    h = Harness()
    static_group(h, RANGE)
    answer = restart(h, 0, RANGE, protocol_type="connect")
    assert answer.result.error_code == errors.INCONSISTENT_GROUP_PROTOCOL


def test_restart_outside_stable_rebalances_even_when_unchanged() -> None:
    h = Harness()
    answers = [h.join("g", instance=f"i-{i}", session_ms=SESSION, protocols=RANGE) for i in (0, 1)]
    h.finish_initial_delay()
    assert state(h, "g") == "CompletingRebalance"
    h.sync("g", joined_from(answers[0]), {}, instance="i-0")  # Stable now
    h.join_new("g", client_id="newcomer")  # PreparingRebalance
    again = restart(h, 1, RANGE)
    assert not again.done and state(h, "g") == "PreparingRebalance"


topic_names = st.sets(st.sampled_from(["orders", "payments", "refunds", "a.b", "ä"]))
racks = st.none() | st.sampled_from(["eu-1a", "eu-1b", ""])
owned_partitions = st.lists(
    st.tuples(st.sampled_from(["orders", "payments"]), st.lists(st.integers(0, 9)).map(tuple)),
    max_size=2,
).map(tuple)


@st.composite
def subscriptions(draw: st.DrawFn, topics: frozenset[str], rack: str | None) -> bytes:
    """Any subscription to ``topics`` from ``rack``: order, user data, owned
    partitions and generation vary as clients and restarts vary them."""
    return sub(
        *draw(st.permutations(sorted(topics))),
        user_data=draw(st.none() | st.binary(max_size=8)),
        owned=draw(owned_partitions),
        generation=draw(st.integers(-1, 50)),
        rack=rack,
    )


def _asks_the_same(before: bytes, after: bytes) -> bool:
    group = Group("g", protocol_type="consumer", protocol_name="range")
    member = Member("m", "i-0", "c", "/h", 60_000, SESSION, [("range", before)])
    return group.asks_the_same(member, [("range", after)])


@given(st.data(), topic_names, racks)
def test_same_topics_and_rack_always_ask_the_same(
    data: st.DataObject, topics: frozenset[str], rack: str | None
) -> None:
    before = data.draw(subscriptions(topics, rack))
    after = data.draw(subscriptions(topics, rack))
    assert _asks_the_same(before, after)


@given(st.data(), topic_names, racks, topic_names, racks)
def test_other_topics_or_rack_never_ask_the_same(
    data: st.DataObject,
    topics: frozenset[str],
    rack: str | None,
    other_topics: frozenset[str],
    other_rack: str | None,
) -> None:
    assume((topics, rack) != (other_topics, other_rack))
    before = data.draw(subscriptions(topics, rack))
    after = data.draw(subscriptions(other_topics, other_rack))
    assert not _asks_the_same(before, after)


# --- after the coordinator was loaded from __consumer_offsets -------------------


def test_restart_after_a_broker_restart_does_not_rebalance() -> None:
    # The stored group knows only each member's chosen protocol (range).
    h = Harness()
    static_group(h, BOTH, BOTH)
    h.restart_coordinator()
    assert state(h, "g") == "Stable"
    assert_no_rebalance(h, restart(h, 1, BOTH), rebalances=0)
    assert_no_rebalance(h, restart(h, 0, BOTH), rebalances=0)


def test_leader_reordering_protocols_after_a_broker_restart_does_not_rebalance() -> None:
    # The others are known to support range only: range stays the only candidate.
    h = Harness()
    static_group(h, BOTH, BOTH)
    h.restart_coordinator()
    assert_no_rebalance(h, restart(h, 0, BOTH[::-1]), rebalances=0)


def test_cooperative_restart_after_a_broker_restart_does_not_rebalance() -> None:
    h = Harness()
    owned = [("cooperative-sticky", sub("orders", owned=(("orders", (0,)),), generation=1))]
    static_group(h, owned, owned)
    h.restart_coordinator()
    fresh = [("cooperative-sticky", sub("orders")), ("range", sub("orders"))]
    assert_no_rebalance(h, restart(h, 1, fresh), rebalances=0)


def test_changed_topics_after_a_broker_restart_rebalance() -> None:
    h = Harness()
    static_group(h, BOTH, BOTH)
    h.restart_coordinator()
    changed = [("range", sub("orders")), ("roundrobin", sub("orders", "payments"))]
    answer = restart(h, 1, changed)
    assert not answer.done and state(h, "g") == "PreparingRebalance"


# --- the returning leader -------------------------------------------------------


def test_returning_leader_names_its_previous_member_id() -> None:
    h = Harness()
    old_leader, follower = static_group(h, RANGE, RANGE)
    result = restart(h, 0, RANGE).result
    assert result.skip_assignment
    assert result.replaced_leader == old_leader.member_id
    assert result.leader == result.member_id != old_leader.member_id
    assert [m.member_id for m in result.members] == [result.member_id, follower.member_id]
    assert [m.group_instance_id for m in result.members] == ["i-0", "i-1"]


def test_returning_follower_is_answered_plainly() -> None:
    h = Harness()
    leader, _follower = static_group(h, RANGE, RANGE)
    result = restart(h, 1, RANGE).result
    assert (result.skip_assignment, result.replaced_leader) == (False, "")
    assert (result.leader, result.members) == (leader.member_id, ())


def test_leader_returning_twice_names_the_id_it_had_just_before() -> None:
    h = Harness()
    static_group(h, RANGE, RANGE)
    first = restart(h, 0, RANGE).result
    second = restart(h, 0, RANGE).result
    assert second.replaced_leader == first.member_id


def test_leader_returning_changed_gets_a_normal_rebalance_answer() -> None:
    h = Harness()
    _old_leader, follower = static_group(h, RANGE, RANGE)
    answer = restart(h, 0, [("range", sub("orders"))])
    h.join("g", follower.member_id, instance="i-1", session_ms=SESSION, protocols=RANGE)
    result = answer.result
    assert (result.skip_assignment, result.replaced_leader) == (False, "")
    assert result.leader == result.member_id and len(result.members) == 2


def test_returning_leader_syncing_without_an_assignment_gets_its_own_back() -> None:
    # A JoinGroup v5-v8 leader believes it follows and syncs with nothing to assign.
    h = Harness()
    old_leader, follower = static_group(h, RANGE, RANGE)
    new = joined_from(restart(h, 0, RANGE))
    mine = h.sync("g", new, {}, instance="i-0").result
    assert mine.assignment == f"assignment-of-{old_leader.member_id}".encode()
    theirs = h.sync("g", follower, instance="i-1").result
    assert theirs.assignment == f"assignment-of-{follower.member_id}".encode()
    assert state(h, "g") == "Stable"
    assert h.heartbeat("g", new, instance="i-0") == errors.NONE


def _wire_answer(result: JoinResult, version: int) -> dict[str, object]:
    async def answered() -> JoinResult:
        return result

    return dict(asyncio.run(_answer(answered(), version)))


@pytest.mark.parametrize("version", range(5, 10))
def test_returning_leader_on_the_wire(version: int) -> None:
    h = Harness()
    old_leader, _follower = static_group(h, RANGE, RANGE)
    result = restart(h, 0, RANGE).result
    wire = _wire_answer(result, version)
    assert wire["member_id"] == result.member_id
    if version < 9:  # a follower of its former self
        assert (wire["leader"], wire["members"]) == (old_leader.member_id, [])
    else:
        assert wire["leader"] == result.member_id and wire["skip_assignment"] is True
        assert len(wire["members"]) == 2  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [7, 9])
def test_ordinary_leader_on_the_wire_is_unaffected(version: int) -> None:
    h = Harness()
    answers = [h.join("g", instance=f"i-{i}", session_ms=SESSION) for i in (0, 1)]
    h.finish_initial_delay()
    wire = _wire_answer(answers[0].result, version)
    assert wire["leader"] == answers[0].result.member_id
    assert len(wire["members"]) == 2  # type: ignore[arg-type]


# --- deleting a topic -----------------------------------------------------------


def commit(h: Harness, group: str, member: Joined | None, *tps: tuple[str, int]) -> None:
    partitions = [OffsetCommitPartition(t, p, 10 + p) for t, p in tps]
    if member is None:
        result = h.coord.commit_offsets(group, "", None, -1, partitions)
    else:
        result = h.coord.commit_offsets(
            group, member.member_id, None, member.generation, partitions
        )
    assert all(p.error_code == errors.NONE for p in result.partitions)


def committed(h: Harness, group: str) -> set[tuple[str, int]]:
    return {(o.topic, o.partition) for o in h.coord.fetch_offsets(group, None).partitions}


def written_since(h: Harness, mark: int) -> list[tuple[int, bytes, bytes | None]]:
    return h.records[mark:]


def offset_tombstone(
    group: str, topic: str, partition: int, h: Harness
) -> tuple[int, bytes, bytes | None]:
    n = h.config.offsets_topic_num_partitions
    return (
        partition_for_group(group, n),
        encode_key(OffsetCommitKey(group, topic, partition)),
        None,
    )


def test_deleting_a_topic_tombstones_exactly_its_offsets_in_every_group() -> None:
    h = Harness()
    (member,) = h.form_group("active", 1)
    commit(h, "active", member, ("orders", 0), ("orders", 1), ("orders-v2", 0), ("order", 0))
    commit(h, "simple", None, ("orders", 2), ("payments", 0))
    commit(h, "other", None, ("payments", 1))
    mark = len(h.records)

    h.coord.forget_topic("orders")

    expected = [
        offset_tombstone("active", "orders", 0, h),
        offset_tombstone("active", "orders", 1, h),
        offset_tombstone("simple", "orders", 2, h),
    ]
    assert sorted(written_since(h, mark)) == sorted(expected)
    assert committed(h, "active") == {("orders-v2", 0), ("order", 0)}
    assert committed(h, "simple") == {("payments", 0)}
    assert committed(h, "other") == {("payments", 1)}
    assert state(h, "active") == "Stable"


def test_deleting_a_topic_nobody_committed_to_writes_nothing() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1)
    commit(h, "g", member, ("orders", 0))
    mark = len(h.records)
    h.coord.forget_topic("payments")
    assert written_since(h, mark) == []
    assert committed(h, "g") == {("orders", 0)}


def test_empty_group_left_without_offsets_is_deleted() -> None:
    h = Harness()
    commit(h, "simple", None, ("orders", 0), ("orders", 1))
    mark = len(h.records)
    h.coord.forget_topic("orders")
    partition = partition_for_group("simple", h.config.offsets_topic_num_partitions)
    assert written_since(h, mark) == [
        offset_tombstone("simple", "orders", 0, h),
        offset_tombstone("simple", "orders", 1, h),
        (partition, encode_key(GroupMetadataKey("simple")), None),
    ]
    assert [g.group_id for g in h.coord.list_groups().groups] == []
    assert state(h, "simple") == "Dead"


def test_any_topic_deletion_also_deletes_empty_groups_without_offsets() -> None:
    # As offset expiry does, and as Kafka does on topic deletion.
    h = Harness()
    (member,) = h.form_group("idle", 1)
    h.leave("idle", LeavingMember(member.member_id))
    assert state(h, "idle") == "Empty"
    mark = len(h.records)
    h.coord.forget_topic("unrelated")
    partition = partition_for_group("idle", h.config.offsets_topic_num_partitions)
    assert written_since(h, mark) == [(partition, encode_key(GroupMetadataKey("idle")), None)]
    assert state(h, "idle") == "Dead"


def test_active_group_left_without_offsets_stays() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1)
    commit(h, "g", member, ("orders", 0))
    mark = len(h.records)
    h.coord.forget_topic("orders")
    assert written_since(h, mark) == [offset_tombstone("g", "orders", 0, h)]
    assert state(h, "g") == "Stable"


def test_empty_group_with_a_member_id_outstanding_stays() -> None:
    h = Harness()
    commit(h, "g", None, ("orders", 0))
    first = h.join("g", client_id="late")  # MEMBER_ID_REQUIRED: an id is outstanding
    assert first.result.error_code == errors.MEMBER_ID_REQUIRED
    mark = len(h.records)
    h.coord.forget_topic("orders")
    assert written_since(h, mark) == [offset_tombstone("g", "orders", 0, h)]
    assert state(h, "g") == "Empty"
    late = h.join("g", first.result.member_id, client_id="late")  # the id still works
    h.finish_initial_delay()
    assert joined_from(late).is_leader


def test_forgotten_offsets_stay_gone_after_a_coordinator_restart() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1)
    commit(h, "g", member, ("orders", 0), ("payments", 0))
    h.coord.forget_topic("orders")
    h.restart_coordinator()
    assert committed(h, "g") == {("payments", 0)}


def test_groups_still_loading_are_not_touched() -> None:
    h = Harness()
    commit(h, "g", None, ("orders", 0))
    commit(h, "h", None, ("orders", 0))
    n = h.config.offsets_topic_num_partitions
    loading = partition_for_group("g", n)
    assert partition_for_group("h", n) != loading
    h.coord.mark_loading(loading)
    mark = len(h.records)
    h.coord.forget_topic("orders")
    assert all(p != loading for p, _, _ in written_since(h, mark))
    assert committed(h, "h") == set()


def test_a_topic_created_again_starts_without_committed_offsets() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1)
    commit(h, "g", member, ("orders", 0))
    h.coord.forget_topic("orders")
    commit(h, "g", member, ("orders", 0))  # the new topic's first commit
    assert committed(h, "g") == {("orders", 0)}
