"""Static membership (group.instance.id): restarts without rebalances, fencing."""

from __future__ import annotations

from test_group_support import Harness, Joined, joined_from, state, subscription

from moldau.group import Trigger, errors
from moldau.group.records import GroupMetadataValue, decode_key, decode_value
from moldau.group.results import LeavingMember

SESSION = 120_000


def static_group(h: Harness, n: int) -> list[Joined]:
    answers = [
        h.join("g", instance=f"i-{i}", client_id=f"client-{i}", session_ms=SESSION)
        for i in range(n)
    ]
    h.finish_initial_delay()
    return h.sync_all("g", [joined_from(a) for a in answers])


def restart(h: Harness, i: int, **kwargs: object) -> Joined:
    answer = h.join("g", instance=f"i-{i}", client_id=f"client-{i}", session_ms=SESSION, **kwargs)  # type: ignore[arg-type]
    return joined_from(answer)


def wait_with_heartbeats(h: Harness, ms: int, *members: tuple[Joined, str]) -> None:
    for _ in range(ms // 5_000):
        for member, instance in members:
            h.heartbeat("g", member, instance)
        h.advance(5_000)


def test_static_member_gets_its_id_without_member_id_required() -> None:
    h = Harness(group_initial_rebalance_delay_ms=0)
    answer = h.join("g", instance="i-0", client_id="app", session_ms=SESSION)
    assert answer.result.error_code == errors.NONE
    assert answer.result.member_id.startswith("app-")


def test_restart_with_unchanged_metadata_takes_the_old_assignment_back() -> None:
    h = Harness()
    leader, old = static_group(h, 2)
    rebalances = len(h.coord.rebalance_history("g"))

    new = restart(h, 1)
    assert new.member_id != old.member_id
    assert (new.generation, new.leader, new.members) == (1, leader.member_id, ())
    assert state(h, "g") == "Stable"
    assert len(h.coord.rebalance_history("g")) == rebalances  # no rebalance
    assignment = h.sync("g", new, instance="i-1").result
    assert assignment.assignment == f"assignment-of-{old.member_id}".encode()
    # The new member id is what is stored.
    decoded = decode_value(decode_key(h.records[-1][1]), h.records[-1][2] or b"")
    assert isinstance(decoded, GroupMetadataValue)
    assert [m.member_id for m in decoded.members] == [leader.member_id, new.member_id]


def test_the_old_member_id_is_fenced() -> None:
    h = Harness()
    _, old = static_group(h, 2)
    restart(h, 1)
    assert h.heartbeat("g", old, instance="i-1") == errors.FENCED_INSTANCE_ID
    rejoin = h.join("g", old.member_id, instance="i-1", session_ms=SESSION)
    assert rejoin.result.error_code == errors.FENCED_INSTANCE_ID
    assert h.sync("g", old, instance="i-1").result.error_code == errors.FENCED_INSTANCE_ID
    commit = h.coord.commit_offsets("g", old.member_id, "i-1", old.generation, [])
    assert commit.error_code == errors.FENCED_INSTANCE_ID


def test_restarted_static_leader_gets_the_members_but_skips_assignment() -> None:
    h = Harness()
    _old_leader, follower = static_group(h, 2)
    new = restart(h, 0)
    assert new.is_leader
    assert new.members == (new.member_id, follower.member_id)
    assert state(h, "g") == "Stable"


def test_skip_assignment_flag_is_set_for_the_restarted_leader_only() -> None:
    h = Harness()
    static_group(h, 2)
    leader = h.join("g", instance="i-0", client_id="client-0", session_ms=SESSION)
    follower = h.join("g", instance="i-1", client_id="client-1", session_ms=SESSION)
    assert leader.result.skip_assignment and not follower.result.skip_assignment


def test_restart_with_changed_metadata_rebalances() -> None:
    h = Harness()
    static_group(h, 2)
    restart_answer = h.join(
        "g",
        instance="i-1",
        session_ms=SESSION,
        protocols=[("range", subscription("orders", "refunds"))],
    )
    assert not restart_answer.done
    assert state(h, "g") == "PreparingRebalance"
    assert h.coord.rebalance_history("g")[-1].trigger is Trigger.STATIC_MEMBER_REJOIN


def test_restart_during_completing_rebalance_rebalances() -> None:
    # The leader may already be assigning to the old member id.
    h = Harness()
    answers = [h.join("g", instance=f"i-{i}", session_ms=SESSION) for i in range(2)]
    h.finish_initial_delay()
    assert state(h, "g") == "CompletingRebalance"
    waiting = h.sync("g", joined_from(answers[1]), instance="i-1")
    again = h.join("g", instance="i-1", session_ms=SESSION)
    assert waiting.result.error_code == errors.FENCED_INSTANCE_ID
    assert not again.done and state(h, "g") == "PreparingRebalance"


def test_old_instance_waiting_in_a_join_is_fenced_by_its_replacement() -> None:
    h = Harness()
    static_group(h, 2)
    h.join_new("g", client_id="newcomer")  # rebalance: the static members must rejoin
    old = h.join("g", instance="i-1", session_ms=SESSION)
    new = h.join("g", instance="i-1", session_ms=SESSION)
    assert old.result.error_code == errors.FENCED_INSTANCE_ID
    assert not new.done


def test_static_member_that_does_not_rejoin_keeps_its_place() -> None:
    h = Harness()
    a, b = static_group(h, 2)
    h.join_new("g", client_id="newcomer", session_ms=SESSION)
    h.join("g", a.member_id, instance="i-0", session_ms=SESSION)
    h.advance(60_000)  # b is restarting and misses the rebalance timeout
    description = h.coord.describe_groups(["g"])[0]
    assert b.member_id in [m.member_id for m in description.members]
    assert h.coord.rebalance_history("g")[-1].dropped == ()


def test_static_member_is_removed_by_its_session_timeout() -> None:
    # A consumer closed without leaving: its place is held until the session ends.
    h = Harness()
    a, b = static_group(h, 2)
    for _ in range(3):
        h.advance(30_000)
        assert h.heartbeat("g", a, instance="i-0") == errors.NONE
    h.advance(30_000)
    assert state(h, "g") == "PreparingRebalance"
    record = h.coord.rebalance_history("g")[-1]
    assert (record.trigger, record.member_ids) == (Trigger.SESSION_TIMEOUT, (b.member_id,))


def test_leave_by_instance_id() -> None:
    h = Harness()
    _a, b = static_group(h, 2)
    assert h.leave("g", LeavingMember("", "i-9")) == [errors.UNKNOWN_MEMBER_ID]
    assert h.leave("g", LeavingMember("stale", "i-1")) == [errors.FENCED_INSTANCE_ID]
    assert h.leave("g", LeavingMember("", "i-1")) == [errors.NONE]  # an admin's removal
    assert state(h, "g") == "PreparingRebalance"
    assert h.heartbeat("g", b, instance="i-1") == errors.UNKNOWN_MEMBER_ID


def test_join_phase_waits_again_when_only_absent_static_members_remain() -> None:
    h = Harness()
    leader, follower = static_group(h, 2)
    newcomer = h.join("g", client_id="c", session_ms=SESSION).result.member_id
    h.join("g", newcomer, client_id="c", session_ms=SESSION)  # starts a rebalance ...
    h.leave("g", LeavingMember(newcomer))  # ... and is gone again
    # Both heartbeat (their poll loops are stuck) but neither rejoins in time.
    wait_with_heartbeats(h, 60_000, (leader, "i-0"), (follower, "i-1"))
    assert state(h, "g") == "PreparingRebalance"
    # The follower comes back, the leader does not: the follower leads.
    back = h.join("g", follower.member_id, instance="i-1", session_ms=SESSION)
    wait_with_heartbeats(h, 60_000, (leader, "i-0"))
    joined = joined_from(back)
    assert joined.is_leader and joined.generation == 2
    assert joined.members == (leader.member_id, follower.member_id)


def test_restarted_member_that_never_syncs_is_still_removed_at_the_sync_deadline() -> None:
    h = Harness()
    answers = [h.join("g", instance=f"i-{i}", session_ms=SESSION) for i in range(2)]
    h.finish_initial_delay()
    leader = joined_from(answers[0])
    h.sync("g", leader, {}, instance="i-0")  # Stable; i-1 has not synced yet
    restarted = restart(h, 1)
    wait_with_heartbeats(h, 60_000, (leader, "i-0"), (restarted, "i-1"))
    record = h.coord.rebalance_history("g")[-1]
    assert (record.trigger, record.member_ids) == (Trigger.SYNC_TIMEOUT, (restarted.member_id,))
