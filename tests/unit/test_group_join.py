"""JoinGroup: member ids, the initial delay, leadership, protocol choice, validation."""

from __future__ import annotations

from test_group_support import RANGE, Harness, joined_from, state, subscription

from moldau.group import errors
from moldau.group.results import LeavingMember


def test_new_member_gets_its_id_with_member_id_required_then_joins_with_it() -> None:
    h = Harness(group_initial_rebalance_delay_ms=0)
    first = h.join("g", client_id="app")
    assert first.result.error_code == errors.MEMBER_ID_REQUIRED
    member_id = first.result.member_id
    assert member_id.startswith("app-") and len(member_id) == len("app-") + 36
    assert state(h, "g") == "Empty"  # handing out an id is not a rebalance

    second = h.join("g", member_id, client_id="app")
    joined = joined_from(second)
    assert joined.member_id == member_id
    assert joined.generation == 1
    assert joined.leader == member_id
    assert state(h, "g") == "CompletingRebalance"


def test_pre_v4_member_gets_its_id_directly() -> None:
    h = Harness(group_initial_rebalance_delay_ms=0)
    joined = joined_from(h.join("g", client_id="old", require_known_member_id=False))
    assert joined.member_id.startswith("old-")
    assert joined.generation == 1


def test_unused_member_id_expires_after_the_session_timeout() -> None:
    h = Harness(group_initial_rebalance_delay_ms=0)
    member_id = h.join("g", session_ms=6000).result.member_id
    h.advance(6000)
    late = h.join("g", member_id, session_ms=6000)
    assert late.result.error_code == errors.UNKNOWN_MEMBER_ID


def test_unknown_member_id_for_a_group_that_does_not_exist() -> None:
    h = Harness()
    assert h.join("nope", "ghost-1").result.error_code == errors.UNKNOWN_MEMBER_ID


def test_first_rebalance_waits_the_initial_delay() -> None:
    h = Harness(group_initial_rebalance_delay_ms=3000)
    answer = h.join_new("g")
    h.advance(2999)
    assert not answer.done
    assert state(h, "g") == "PreparingRebalance"
    h.advance(1)
    assert joined_from(answer).generation == 1


def test_initial_delay_is_extended_while_members_keep_arriving() -> None:
    h = Harness(group_initial_rebalance_delay_ms=3000)
    answers = [h.join_new("g", client_id="a")]
    h.advance(2000)
    answers.append(h.join_new("g", client_id="b"))  # arrives during the first delay
    h.advance(1000)  # first delay over, but a member arrived: wait another 3000
    assert not answers[0].done
    h.advance(2000)
    answers.append(h.join_new("g", client_id="c"))  # arrives during the extension
    h.advance(1000)
    assert not answers[0].done
    h.advance(3000)  # nobody new in the last window: done
    joined = [joined_from(a) for a in answers]
    assert {j.generation for j in joined} == {1}
    assert len(joined[0].members) == 3


def test_initial_delay_extensions_are_bounded_by_the_rebalance_timeout() -> None:
    h = Harness(group_initial_rebalance_delay_ms=3000)
    first = h.join_new("g", client_id="a", rebalance_ms=7000)
    waited = 0
    while not first.done:
        h.join_new("g", client_id=f"late-{waited}", rebalance_ms=7000)
        h.advance(1000)
        waited += 1000
        assert waited <= 7000
    assert waited == 7000
    assert joined_from(first).generation == 1


def test_without_initial_delay_a_lone_member_completes_at_once() -> None:
    h = Harness(group_initial_rebalance_delay_ms=0)
    assert joined_from(h.join_new("g")).generation == 1


def test_first_member_leads_and_alone_receives_the_members() -> None:
    h = Harness()
    a = h.join_new("g", client_id="a", protocols=[("range", subscription("t1"))])
    b = h.join_new("g", client_id="b", protocols=[("range", subscription("t2"))])
    h.finish_initial_delay()
    leader, follower = joined_from(a), joined_from(b)
    assert leader.is_leader and not follower.is_leader
    assert follower.leader == leader.member_id
    assert follower.members == ()
    members = a.result.members
    assert [m.member_id for m in members] == [leader.member_id, follower.member_id]
    assert [m.metadata for m in members] == [subscription("t1"), subscription("t2")]
    assert a.result.protocol_type == "consumer" and a.result.protocol_name == "range"


def test_protocol_chosen_by_vote_among_those_all_members_support() -> None:
    h = Harness()
    # Everyone supports range and roundrobin; two of three prefer roundrobin.
    # "sticky" is only supported by one member, so it cannot win.
    offers = [
        [("sticky", b""), ("range", b""), ("roundrobin", b"")],
        [("roundrobin", b""), ("range", b"")],
        [("roundrobin", b""), ("range", b"")],
    ]
    answers = [h.join_new("g", client_id=f"c{i}", protocols=p) for i, p in enumerate(offers)]
    h.finish_initial_delay()
    assert {a.result.protocol_name for a in answers} == {"roundrobin"}


def test_vote_tie_goes_to_the_leaders_preference() -> None:
    h = Harness()
    a = h.join_new("g", protocols=[("range", b""), ("roundrobin", b"")])
    h.join_new("g", protocols=[("roundrobin", b""), ("range", b"")])
    h.finish_initial_delay()
    assert a.result.protocol_name == "range"


def test_member_without_a_common_protocol_is_refused() -> None:
    h = Harness()
    h.join_new("g", protocols=[("range", b"")])
    refused = h.join("g", protocols=[("cooperative-sticky", b"")])
    assert refused.result.error_code == errors.INCONSISTENT_GROUP_PROTOCOL


def test_member_of_another_protocol_type_is_refused() -> None:
    h = Harness()
    h.join_new("g")
    refused = h.join("g", protocol_type="connect", protocols=RANGE)
    assert refused.result.error_code == errors.INCONSISTENT_GROUP_PROTOCOL


def test_empty_protocol_list_is_refused_and_creates_no_group() -> None:
    h = Harness()
    assert h.join("g", protocols=[]).result.error_code == errors.INCONSISTENT_GROUP_PROTOCOL
    assert h.coord.list_groups().groups == ()


def test_session_timeout_outside_the_broker_bounds_is_refused() -> None:
    h = Harness()
    for session_ms in (5999, 1_800_001):
        answer = h.join("g", session_ms=session_ms)
        assert answer.result.error_code == errors.INVALID_SESSION_TIMEOUT
    assert h.join("g", session_ms=6000).result.error_code == errors.MEMBER_ID_REQUIRED


def test_group_max_size() -> None:
    h = Harness(group_max_size=2, group_initial_rebalance_delay_ms=0)
    h.join_new("g", client_id="a")
    h.join("g", client_id="b")  # an outstanding id counts too
    assert h.join("g", client_id="c").result.error_code == errors.GROUP_MAX_SIZE_REACHED


def test_empty_group_id_is_invalid() -> None:
    h = Harness()
    assert h.join("").result.error_code == errors.INVALID_GROUP_ID


def test_new_member_whose_client_vanished_is_dropped_after_the_new_member_timeout() -> None:
    # Two members join; the rebalance they started waits for the first one,
    # which never rejoins. Its JoinGroup is answered at the rebalance timeout.
    h = Harness(group_initial_rebalance_delay_ms=0, new_member_join_timeout_ms=300_000)
    a = joined_from(h.join_new("g", client_id="a", rebalance_ms=600_000))
    h.sync_all("g", [a])
    b = h.join_new("g", client_id="b", rebalance_ms=600_000)
    for _ in range(60):  # a keeps heartbeating; b's client is gone
        assert h.heartbeat("g", a) == errors.REBALANCE_IN_PROGRESS
        h.advance(5_000)
    assert b.result.error_code == errors.UNKNOWN_MEMBER_ID
    assert b.result.member_id == ""
    # a rejoins, as told by its heartbeats, and the group goes on without b.
    again = joined_from(h.join("g", a.member_id, client_id="a", rebalance_ms=600_000))
    assert again.generation == 2 and again.members == (a.member_id,)


def test_member_id_required_can_be_withdrawn_with_leave_group() -> None:
    h = Harness()
    member_id = h.join("g").result.member_id
    result = h.coord.leave_group("g", [LeavingMember(member_id)])
    assert [m.error_code for m in result.members] == [errors.NONE]
    assert h.join("g", member_id).result.error_code == errors.UNKNOWN_MEMBER_ID
