"""SyncGroup, Heartbeat, LeaveGroup, timeouts, and what does or does not rebalance."""

from __future__ import annotations

from test_group_support import Harness, Joined, joined_from, state, subscription

from moldau.group import Outcome, Trigger, errors
from moldau.group.records import GroupMetadataValue, decode_key, decode_value
from moldau.group.results import LeavingMember

ORDERS_AND_PAYMENTS = [("range", subscription("orders", "payments"))]


# --- SyncGroup ----------------------------------------------------------------


def test_followers_wait_for_the_leaders_assignment_and_get_their_own() -> None:
    h = Harness()
    answers = [h.join_new("g", client_id=c) for c in ("a", "b", "c")]
    h.finish_initial_delay()
    leader, b, c = (joined_from(a) for a in answers)
    wait_b, wait_c = h.sync("g", b), h.sync("g", c)
    assert not wait_b.done and not wait_c.done
    assignment = {leader.member_id: b"A", b.member_id: b"B"}  # c left out
    mine = h.sync("g", leader, assignment)
    assert (mine.result.error_code, mine.result.assignment) == (errors.NONE, b"A")
    assert wait_b.result.assignment == b"B"
    assert wait_c.result.assignment == b""
    assert wait_b.result.protocol_type == "consumer" and wait_b.result.protocol_name == "range"
    assert state(h, "g") == "Stable"


def test_follower_syncing_after_the_leader_gets_its_assignment_at_once() -> None:
    h = Harness()
    _leader, follower = h.form_group("g", 2)
    again = h.sync("g", follower)
    assert again.result.assignment == f"assignment-of-{follower.member_id}".encode()


def test_sync_errors() -> None:
    h = Harness()
    _leader, follower = h.form_group("g", 2)
    stale = Joined(follower.member_id, follower.generation - 1, "", ())
    assert h.sync("g", stale).result.error_code == errors.ILLEGAL_GENERATION
    ghost = Joined("ghost", follower.generation, "", ())
    assert h.sync("g", ghost).result.error_code == errors.UNKNOWN_MEMBER_ID
    assert h.sync("nope", follower).result.error_code == errors.UNKNOWN_MEMBER_ID
    h.join_new("g", client_id="newcomer")  # starts a rebalance
    assert h.sync("g", follower).result.error_code == errors.REBALANCE_IN_PROGRESS


def test_sync_with_another_protocol_type_is_inconsistent() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1)
    answer = h.sync("g", member, protocol_type="connect")
    assert answer.result.error_code == errors.INCONSISTENT_GROUP_PROTOCOL


def test_assignment_is_persisted_before_it_is_handed_out() -> None:
    h = Harness()
    leader, follower = h.form_group("g", 2)
    key, value = h.records[-1][1:]
    decoded = decode_value(decode_key(key), value or b"")
    assert isinstance(decoded, GroupMetadataValue)
    assert decoded.generation == 1 and decoded.leader == leader.member_id
    assert [m.assignment for m in decoded.members] == [
        f"assignment-of-{m}".encode() for m in (leader.member_id, follower.member_id)
    ]


# --- Heartbeat ------------------------------------------------------------------


def test_heartbeat_answers() -> None:
    h = Harness()
    a, _b = h.form_group("g", 2)
    assert h.heartbeat("g", a) == errors.NONE
    assert h.heartbeat("g", Joined("ghost", a.generation, "", ())) == errors.UNKNOWN_MEMBER_ID
    assert h.heartbeat("nope", a) == errors.UNKNOWN_MEMBER_ID
    assert h.heartbeat("g", Joined(a.member_id, 0, "", ())) == errors.ILLEGAL_GENERATION
    h.join_new("g", client_id="c")
    assert h.heartbeat("g", a) == errors.REBALANCE_IN_PROGRESS


def test_heartbeat_during_completing_rebalance_is_fine() -> None:
    h = Harness()
    answers = [h.join_new("g", client_id=c) for c in ("a", "b")]
    h.finish_initial_delay()
    follower = joined_from(answers[1])
    assert state(h, "g") == "CompletingRebalance"
    assert h.heartbeat("g", follower) == errors.NONE


def test_heartbeats_keep_a_member_alive() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1, session_ms=10_000)
    for _ in range(20):
        h.advance(9_000)
        assert h.heartbeat("g", member) == errors.NONE
    assert state(h, "g") == "Stable"


def test_silent_member_is_evicted_after_its_session_timeout_and_the_group_rebalances() -> None:
    h = Harness()
    a, b = h.form_group("g", 2, session_ms=10_000)
    h.advance(9_000)
    assert h.heartbeat("g", a) == errors.NONE
    h.advance(1_000)  # b silent for 10 s
    assert state(h, "g") == "PreparingRebalance"
    assert h.heartbeat("g", b) == errors.UNKNOWN_MEMBER_ID
    assert h.heartbeat("g", a) == errors.REBALANCE_IN_PROGRESS
    (again,) = h.rejoin_all("g", [a])
    assert again.generation == 2 and again.members == (a.member_id,)
    (record,) = h.coord.rebalance_history("g")[1:]
    assert record.trigger is Trigger.SESSION_TIMEOUT and record.member_ids == (b.member_id,)
    assert record.members_before == (a.member_id, b.member_id)
    assert record.members_after == (a.member_id,)


# --- the rebalance timeout ------------------------------------------------------


def test_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() -> None:
    h = Harness()
    a, b, c = h.form_group("g", 3, rebalance_ms=30_000)
    h.join_new("g", client_id="d", rebalance_ms=30_000)  # a rebalance starts
    waiting = [h.join("g", m.member_id, rebalance_ms=30_000) for m in (a, b)]
    for _ in range(6):  # c's heartbeat thread lives on, but its poll loop is stuck
        assert h.heartbeat("g", c) == errors.REBALANCE_IN_PROGRESS
        h.advance(5_000)
    joined = [joined_from(w) for w in waiting]
    assert joined[0].generation == 2
    assert c.member_id not in joined[0].members and len(joined[0].members) == 3
    assert h.heartbeat("g", c) == errors.UNKNOWN_MEMBER_ID
    record = h.coord.rebalance_history("g")[-1]
    assert record.dropped == (c.member_id,)


def test_leader_that_never_syncs_is_removed_after_the_rebalance_timeout() -> None:
    h = Harness()
    answers = [h.join_new("g", client_id=c, rebalance_ms=30_000) for c in ("a", "b")]
    h.finish_initial_delay()
    leader, follower = (joined_from(a) for a in answers)
    waiting = h.sync("g", follower)
    for _ in range(6):  # the leader heartbeats, but its assignor never finishes
        assert h.heartbeat("g", leader) == errors.NONE
        h.advance(5_000)
    assert waiting.result.error_code == errors.REBALANCE_IN_PROGRESS
    assert h.heartbeat("g", leader) == errors.UNKNOWN_MEMBER_ID
    again = joined_from(h.join("g", follower.member_id, rebalance_ms=30_000))
    assert again.generation == 2 and again.is_leader
    record = h.coord.rebalance_history("g")[-1]
    assert (record.trigger, record.member_ids) == (Trigger.SYNC_TIMEOUT, (leader.member_id,))


# --- LeaveGroup -----------------------------------------------------------------


def test_leave_removes_the_member_and_rebalances() -> None:
    h = Harness()
    a, b = h.form_group("g", 2)
    assert h.leave("g", LeavingMember(b.member_id, reason="shutting down")) == [errors.NONE]
    assert h.heartbeat("g", a) == errors.REBALANCE_IN_PROGRESS
    (again,) = h.rejoin_all("g", [a])
    assert again.members == (a.member_id,)
    record = h.coord.rebalance_history("g")[-1]
    assert (record.trigger, record.reason) == (Trigger.MEMBER_LEAVE, "shutting down")


def test_batched_leave_is_one_rebalance_with_per_member_errors() -> None:
    h = Harness()
    a, b, c = h.form_group("g", 3)
    codes = h.leave("g", LeavingMember(b.member_id), LeavingMember(c.member_id), LeavingMember("x"))
    assert codes == [errors.NONE, errors.NONE, errors.UNKNOWN_MEMBER_ID]
    h.rejoin_all("g", [a])
    history = h.coord.rebalance_history("g")
    assert len(history) == 2
    assert history[-1].member_ids == (b.member_id, c.member_id)


def test_leave_of_an_unknown_group_answers_per_member() -> None:
    h = Harness()
    assert h.leave("nope", LeavingMember("m")) == [errors.UNKNOWN_MEMBER_ID]


def test_last_member_leaving_empties_the_group() -> None:
    h = Harness()
    (a,) = h.form_group("g", 1)
    h.leave("g", LeavingMember(a.member_id))
    description = h.coord.describe_groups(["g"])[0]
    assert (description.state, description.generation_id) == ("Empty", 2)
    record = h.coord.rebalance_history("g")[-1]
    assert record.outcome is Outcome.EMPTY
    decoded = decode_value(decode_key(h.records[-1][1]), h.records[-1][2] or b"")
    assert isinstance(decoded, GroupMetadataValue) and decoded.members == ()


def test_leaving_member_waiting_in_a_rebalance_gets_unknown_member_id() -> None:
    h = Harness()
    a, _b = h.form_group("g", 2)
    waiting = h.join("g", a.member_id, protocols=ORDERS_AND_PAYMENTS)
    h.leave("g", LeavingMember(a.member_id))
    assert waiting.result.error_code == errors.UNKNOWN_MEMBER_ID


# --- what rebalances and what does not ------------------------------------------


def test_follower_rejoining_with_unchanged_metadata_gets_the_current_generation() -> None:
    h = Harness()
    _leader, follower = h.form_group("g", 2)
    again = joined_from(h.join("g", follower.member_id))
    assert again == follower
    assert state(h, "g") == "Stable"


def test_rejoining_with_changed_metadata_rebalances() -> None:
    h = Harness()
    leader, follower = h.form_group("g", 2)
    waiting = h.join("g", follower.member_id, protocols=ORDERS_AND_PAYMENTS, reason="subscribed")
    assert state(h, "g") == "PreparingRebalance"
    assert h.heartbeat("g", leader) == errors.REBALANCE_IN_PROGRESS
    new_leader = joined_from(h.join("g", leader.member_id))
    assert joined_from(waiting).generation == new_leader.generation == 2
    record = h.coord.rebalance_history("g")[-1]
    assert (record.trigger, record.member_ids) == (Trigger.METADATA_CHANGE, (follower.member_id,))


def test_leader_rejoining_while_stable_rebalances() -> None:
    # The leader rejoins when it sees topic metadata change (new partitions).
    h = Harness()
    (leader,) = h.form_group("g", 1)
    again = joined_from(h.join("g", leader.member_id))
    assert again.generation == 2
    assert h.coord.rebalance_history("g")[-1].trigger is Trigger.LEADER_REJOIN


def test_rejoin_during_completing_rebalance_with_unchanged_metadata_repeats_the_answer() -> None:
    h = Harness()
    answers = [h.join_new("g", client_id=c) for c in ("a", "b")]
    h.finish_initial_delay()
    leader = joined_from(answers[0])
    again = h.join("g", leader.member_id)  # its first answer was lost
    assert joined_from(again) == leader
    assert state(h, "g") == "CompletingRebalance"


def test_superseded_join_is_answered() -> None:
    h = Harness()
    a, _b = h.form_group("g", 2)
    first = h.join("g", a.member_id, protocols=ORDERS_AND_PAYMENTS)
    second = h.join("g", a.member_id, protocols=ORDERS_AND_PAYMENTS)
    assert first.result.error_code == errors.REBALANCE_IN_PROGRESS
    assert not second.done


# --- incremental cooperative rebalancing ----------------------------------------


def test_cooperative_second_round_and_rejoin_during_completing_rebalance() -> None:
    h = Harness()
    coop = [("cooperative-sticky", subscription("orders"))]
    a, b = h.form_group("g", 2, protocols=coop)
    # A third member joins: first round, everyone keeps what it owns.
    c = h.join_new("g", client_id="c", protocols=coop)
    round1 = [h.join("g", m.member_id, protocols=coop) for m in (a, b)]
    members = [joined_from(x) for x in [*round1, c]]
    assert {m.generation for m in members} == {2}
    # b revokes a partition and rejoins at once, before even syncing: its
    # metadata (owned partitions) changed, so a second round starts right away.
    revoked = [("cooperative-sticky", subscription("orders") + b"owned-less")]
    round2_b = h.join("g", b.member_id, protocols=revoked)
    assert state(h, "g") == "PreparingRebalance"
    round2 = [h.join("g", m.member_id, protocols=coop) for m in (a, members[2])]
    second = [joined_from(x) for x in (round2[0], round2_b, round2[1])]
    assert {m.generation for m in second} == {3}
    h.sync_all("g", second)
    assert state(h, "g") == "Stable"
    outcomes = [r.outcome for r in h.coord.rebalance_history("g")]
    assert outcomes == [Outcome.STABLE, Outcome.RESTARTED, Outcome.STABLE]


def test_pending_syncs_are_told_to_rejoin_when_a_rebalance_restarts() -> None:
    h = Harness()
    answers = [h.join_new("g", client_id=c) for c in ("a", "b")]
    h.finish_initial_delay()
    _leader, follower = (joined_from(a) for a in answers)
    waiting = h.sync("g", follower)
    h.join_new("g", client_id="c")
    assert waiting.result.error_code == errors.REBALANCE_IN_PROGRESS


# --- rebalance history ----------------------------------------------------------


def test_history_says_who_triggered_what_and_how_long_the_group_was_paused() -> None:
    h = Harness()
    a, b = h.form_group("g", 2)
    h.advance(1_000)
    h.join_new("g", client_id="c", reason="scaled out")
    h.advance(250)
    c_id = h.coord.describe_groups(["g"])[0].members[-1].member_id
    h.rejoin_all("g", [a, b])  # c's answer came at once: all three are in
    record = h.coord.rebalance_history("g")[-1]
    assert record.trigger is Trigger.MEMBER_JOIN and record.member_ids == (c_id,)
    assert record.generation_before == 1 and record.generation == 2
    assert record.paused_ms == 250
    assert record.summary() == (
        f"generation 1 -> 2: member joined ({c_id}): scaled out; members 2 -> 3; "
        "stable after 250 ms"
    )


def test_history_keeps_the_most_recent_rebalances() -> None:
    h = Harness(rebalance_history_size=3, group_initial_rebalance_delay_ms=0)
    (leader,) = h.form_group("g", 1)
    for _ in range(5):
        (leader,) = h.rejoin_all("g", [leader])
    history = h.coord.rebalance_history("g")
    assert [r.generation for r in history] == [4, 5, 6]


def test_history_shows_the_rebalance_in_progress() -> None:
    h = Harness()
    h.join_new("g")
    (ongoing,) = h.coord.rebalance_history("g")
    assert ongoing.outcome is None and ongoing.summary().endswith("in progress")


def test_history_summary_names_dropped_members() -> None:
    h = Harness()
    a, b = h.form_group("g", 2, rebalance_ms=30_000)
    h.join("g", a.member_id, protocols=ORDERS_AND_PAYMENTS, rebalance_ms=30_000)
    for _ in range(6):  # b heartbeats but never rejoins
        h.heartbeat("g", b)
        h.advance(5_000)
    summary = h.coord.rebalance_history("g")[-1].summary()
    assert f"dropped for not rejoining: {b.member_id}" in summary
