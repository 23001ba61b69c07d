"""Rebalance history: the JSON kept in __moldau_group_history and the listener
that hears each rebalance as it ends.

The JSON is read by tools and by brokers of other versions, so it is pinned
here field by field; the listener must hear every ended rebalance exactly once,
however it ended, and never one that is still under way.
"""

from __future__ import annotations

import json
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_group_support import START_MS, Harness, joined_from, state

from moldau.group import Outcome, Trigger, errors
from moldau.group.history import RebalanceRecord
from moldau.group.results import LeavingMember


def ended_record(trigger: Trigger, outcome: Outcome | None) -> RebalanceRecord:
    record = RebalanceRecord(trigger, ("m-1",), "poll timeout", 3, ("m-0", "m-1"), 1_000)
    record = record.dropping(("m-2",)).joined(1_200, 4, ("m-0",))
    return record if outcome is None else record.ended(1_500, outcome)


# --- JSON -----------------------------------------------------------------------


@pytest.mark.parametrize(("trigger", "outcome"), list(product(Trigger, [*Outcome, None])), ids=str)
def test_every_trigger_and_outcome_round_trips(trigger: Trigger, outcome: Outcome | None) -> None:
    record = ended_record(trigger, outcome)
    assert RebalanceRecord.from_json(record.to_json("orders-app")) == ("orders-app", record)


def test_a_record_still_joining_round_trips() -> None:
    record = RebalanceRecord(Trigger.MEMBER_JOIN, (), None, 0, (), START_MS)
    fields = json.loads(record.to_json("g"))
    assert (fields["generation"], fields["outcome"], fields["paused_ms"]) == (None, None, None)
    assert RebalanceRecord.from_json(record.to_json("g")) == ("g", record)


def test_json_names_enums_by_name_and_carries_the_pause() -> None:
    fields = json.loads(ended_record(Trigger.SESSION_TIMEOUT, Outcome.RESTARTED).to_json("g"))
    assert fields == {
        "group_id": "g",
        "trigger": "SESSION_TIMEOUT",
        "member_ids": ["m-1"],
        "reason": "poll timeout",
        "generation_before": 3,
        "members_before": ["m-0", "m-1"],
        "started_ms": 1_000,
        "generation": 4,
        "members_after": ["m-0"],
        "dropped": ["m-2"],
        "joined_ms": 1_200,
        "ended_ms": 1_500,
        "outcome": "RESTARTED",
        "paused_ms": 500,
    }


def test_json_is_compact() -> None:
    data = ended_record(Trigger.MEMBER_LEAVE, Outcome.STABLE).to_json("g")
    assert b" " not in data.replace(b"poll timeout", b"")


def test_reader_ignores_fields_it_does_not_know() -> None:
    # A newer broker may add fields; paused_ms is derived and not read back.
    record = ended_record(Trigger.LEADER_REJOIN, Outcome.STABLE)
    fields = json.loads(record.to_json("g"))
    fields["paused_ms"] = -1
    fields["coordinator"] = 7
    assert RebalanceRecord.from_json(json.dumps(fields).encode()) == ("g", record)


def _json_with(**changes: object) -> bytes:
    fields = json.loads(ended_record(Trigger.MEMBER_JOIN, Outcome.STABLE).to_json("g"))
    fields.update(changes)
    return json.dumps(fields).encode()


def _json_without(name: str) -> bytes:
    fields = json.loads(ended_record(Trigger.MEMBER_JOIN, Outcome.STABLE).to_json("g"))
    del fields[name]
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"null",
        b"[]",
        b"42",
        b'"a string"',
        _json_with(trigger="REBALANCE_BY_MAGIC"),  # a newer broker's trigger
        _json_with(trigger=Trigger.MEMBER_JOIN.value),  # the prose, not the name
        _json_with(outcome="ABANDONED"),
        _json_with(member_ids=None),
        _json_with(members_before=5),
        _json_without("group_id"),
        _json_without("started_ms"),
        _json_without("outcome"),
    ],
    ids=repr,
)
def test_unreadable_records_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        RebalanceRecord.from_json(data)


member_ids = st.lists(st.text(max_size=8), max_size=4).map(tuple)
times = st.integers(min_value=0, max_value=2**53)


@given(
    group_id=st.text(),
    trigger=st.sampled_from(Trigger),
    members=member_ids,
    reason=st.none() | st.text(),
    generation_before=st.integers(min_value=0, max_value=2**31 - 1),
    before=member_ids,
    started=times,
    joined=st.none() | st.tuples(times, st.integers(min_value=1), member_ids),
    dropped=member_ids,
    outcome=st.none() | st.tuples(st.sampled_from(Outcome), times),
)
def test_any_record_round_trips(
    group_id: str,
    trigger: Trigger,
    members: tuple[str, ...],
    reason: str | None,
    generation_before: int,
    before: tuple[str, ...],
    started: int,
    joined: tuple[int, int, tuple[str, ...]] | None,
    dropped: tuple[str, ...],
    outcome: tuple[Outcome, int] | None,
) -> None:
    record = RebalanceRecord(trigger, members, reason, generation_before, before, started)
    record = record.dropping(dropped)
    if joined is not None:
        record = record.joined(*joined)
    if outcome is not None:
        record = record.ended(outcome[1], outcome[0])
    assert RebalanceRecord.from_json(record.to_json(group_id)) == (group_id, record)


# --- the coordinator's listener -------------------------------------------------


def test_listener_hears_a_rebalance_when_it_ends_not_before() -> None:
    h = Harness()
    answers = [h.join_new("g", client_id=c) for c in ("a", "b")]
    h.finish_initial_delay()
    assert h.ended == []  # joined, not yet synced: under way
    h.clock.now += 250
    h.sync_all("g", [joined_from(a) for a in answers])
    assert [(g, r.trigger, r.outcome) for g, r in h.ended] == [
        ("g", Trigger.MEMBER_JOIN, Outcome.STABLE)
    ]
    _, record = h.ended[0]
    assert record == h.coord.rebalance_history("g")[-1]
    assert record.paused_ms == 2 * h.config.group_initial_rebalance_delay_ms + 250
    assert (record.generation_before, record.generation) == (0, 1)


def test_listener_hears_a_restarted_rebalance_then_the_one_that_replaced_it() -> None:
    h = Harness()
    leader, follower = h.form_group("g", 2)
    h.join("g", leader.member_id, client_id="client-0")  # a leader rejoin: rebalance
    h.join("g", follower.member_id, client_id="client-1")
    assert state(h, "g") == "CompletingRebalance" and len(h.ended) == 1
    h.clock.now += 100
    newcomer = h.join_new("g", client_id="newcomer")  # before the leader's assignment
    assert [(r.trigger, r.outcome) for _, r in h.ended] == [
        (Trigger.MEMBER_JOIN, Outcome.STABLE),
        (Trigger.LEADER_REJOIN, Outcome.RESTARTED),
    ]
    restarted = h.ended[-1][1]
    assert (restarted.generation_before, restarted.generation) == (1, 2)
    assert restarted.ended_ms == h.clock.now and restarted.paused_ms == 100
    assert restarted.summary().endswith("; restarted after 100 ms")

    again = [
        h.join("g", j.member_id, client_id=f"client-{i}") for i, j in enumerate((leader, follower))
    ]
    h.sync_all("g", [joined_from(a) for a in (*again, newcomer)])
    assert len(h.ended) == 3
    final = h.ended[-1][1]
    assert (final.trigger, final.outcome) == (Trigger.MEMBER_JOIN, Outcome.STABLE)
    assert (final.generation_before, final.generation) == (2, 3)
    assert h.coord.rebalance_history("g") == tuple(r for _, r in h.ended)


def test_listener_hears_an_empty_outcome() -> None:
    h = Harness()
    leader, follower = h.form_group("g", 2)
    h.leave("g", LeavingMember(follower.member_id, reason="shutting down"))
    assert state(h, "g") == "PreparingRebalance" and len(h.ended) == 1
    h.leave("g", LeavingMember(leader.member_id))
    assert state(h, "g") == "Empty"
    group_id, record = h.ended[-1]
    assert group_id == "g"
    assert (record.trigger, record.member_ids, record.reason) == (
        Trigger.MEMBER_LEAVE,
        (follower.member_id,),
        "shutting down",
    )
    assert (record.outcome, record.generation, record.members_after) == (Outcome.EMPTY, 2, ())
    assert record.members_before == (leader.member_id, follower.member_id)
    assert record.summary().endswith("members 2 -> 0; empty after 0 ms")
    assert RebalanceRecord.from_json(record.to_json("g")) == ("g", record)


def test_listener_hears_every_rebalance_though_history_keeps_only_the_latest() -> None:
    h = Harness(group_initial_rebalance_delay_ms=0, rebalance_history_size=2)
    (member,) = h.form_group("g", 1)
    for _ in range(4):
        (member,) = h.rejoin_all("g", [member])  # a leader rejoin in Stable rebalances
    assert len(h.ended) == 5
    assert [r.generation for _, r in h.ended] == [1, 2, 3, 4, 5]
    assert h.coord.rebalance_history("g") == tuple(r for _, r in h.ended[-2:])


def test_listener_is_told_which_group() -> None:
    h = Harness()
    h.form_group("blue", 1)
    h.form_group("green", 2)
    assert [g for g, _ in h.ended] == ["blue", "green"]


def test_a_rejoin_that_changes_nothing_is_not_heard() -> None:
    h = Harness()
    _leader, follower = h.form_group("g", 2)
    again = h.join("g", follower.member_id, client_id="client-1")
    assert again.result.error_code == errors.NONE
    assert len(h.ended) == 1
