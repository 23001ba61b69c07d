"""Incremental fetch sessions (KIP-227): the leader's cache and answer rules
(``broker/fetch_sessions.py``) and the follower's session
(``replication/fetch_state.FollowerSession``), without sockets."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from moldau.broker.fetch_sessions import UNNAMED, FetchContext, FetchSessionCache
from moldau.protocol.errors import ErrorCode
from moldau.protocol.messages import encode_request
from moldau.replication.fetch_state import (
    FOLLOWER_FETCH_VERSION,
    FetchLimits,
    FollowerSession,
    PartitionFetch,
    fetch_request,
    next_epoch,
)

LIMITS = FetchLimits()
TP = tuple[str, int]


def cache(slots: int = 1000) -> FetchSessionCache:
    ids = itertools.count(100)
    return FetchSessionCache(slots, lambda: next(ids))


def want(topic: str, partition: int, offset: int, epoch: int = 1) -> PartitionFetch:
    return PartitionFetch(topic, partition, epoch, offset, epoch, 0)


def body(session: FollowerSession, wanted: dict[TP, PartitionFetch]) -> Any:
    sent = session.request(wanted)
    return sent, fetch_request(2, sent, LIMITS)


def answer(context: FetchContext, state: dict[TP, tuple[int, int]]) -> dict[str, Any]:
    """What the handler would answer: each read partition at (high watermark,
    log end), records when the fetch offset is below the log end."""
    responses = []
    for topic in context.topics:
        parts = []
        for p in topic["partitions"]:
            hw, end = state[(topic["topic"], p["partition"])]
            parts.append(
                {
                    "partition_index": p["partition"],
                    "error_code": 0,
                    "high_watermark": hw,
                    "last_stable_offset": hw,
                    "log_start_offset": 0,
                    "records": [b"x"] if p["fetch_offset"] < end else b"",
                    "_end": end,
                }
            )
        responses.append({"topic": topic["topic"], "topic_id": None, "partitions": parts})
    return context.finish({"error_code": 0, "session_id": 0, "responses": responses})


def partitions(response: dict[str, Any]) -> set[TP]:
    return {
        (t["topic"], p["partition_index"]) for t in response["responses"] for p in t["partitions"]
    }


def test_a_full_fetch_from_a_follower_opens_a_session_and_names_everything() -> None:
    leader, follower = cache(), FollowerSession()
    wanted = {("a", i): want("a", i, 0) for i in range(3)}
    sent, request = body(follower, wanted)
    assert (request["session_id"], request["session_epoch"]) == (0, 0)
    assert encode_request(1, FOLLOWER_FETCH_VERSION, 1, "replica", request)
    context = leader.context(request, 2, by_id=False)
    response = answer(context, dict.fromkeys(wanted, (0, 0)))
    assert response["session_id"] == 100 and partitions(response) == set(wanted)
    follower.answered(sent, response["session_id"])
    assert (follower.session_id, follower.epoch) == (100, 1)


def test_an_incremental_fetch_names_only_what_moved_and_reads_the_whole_session() -> None:
    leader, follower = cache(), FollowerSession()
    wanted = {("a", i): want("a", i, 0) for i in range(3)}
    sent, request = body(follower, wanted)
    answer(leader.context(request, 2, False), dict.fromkeys(wanted, (0, 0)))
    follower.answered(sent, 100)
    wanted[("a", 1)] = want("a", 1, 5)
    del wanted[("a", 2)]
    sent, request = body(follower, wanted)
    assert request["session_epoch"] == 1
    assert [p["partition"] for t in request["topics"] for p in t["partitions"]] == [1]
    assert request["forgotten_topics_data"] == [{"topic": "a", "partitions": [2]}]
    context = leader.context(request, 2, False)
    # Every partition of the session is read, each at its cached offset.
    read = {p["partition"]: p["fetch_offset"] for t in context.topics for p in t["partitions"]}
    assert read == {0: 0, 1: 5}
    unnamed = {p["partition"] for t in context.topics for p in t["partitions"] if p.get(UNNAMED)}
    assert unnamed == {0}  # the handler may skip reading it when it is caught up
    # Partition 0 has nothing new: left out; 1 was named: answered.
    response = answer(context, {("a", 0): (0, 0), ("a", 1): (5, 5)})
    assert partitions(response) == {("a", 1)}
    follower.answered(sent, response["session_id"])
    assert follower.epoch == 2
    # Nothing moved: nothing named, nothing answered, but a new high watermark is.
    sent, request = body(follower, wanted)
    assert request["topics"] == [] and request["forgotten_topics_data"] == []
    context = leader.context(request, 2, False)
    assert partitions(answer(context, {("a", 0): (0, 0), ("a", 1): (5, 5)})) == set()
    context = leader.context(body(follower, wanted)[1], 2, False)
    assert context.error == ErrorCode.INVALID_FETCH_SESSION_EPOCH  # the follower skipped .answered
    follower.answered(sent, 100)
    context = leader.context(body(follower, wanted)[1], 2, False)
    assert partitions(answer(context, {("a", 0): (0, 3), ("a", 1): (6, 7)})) == {("a", 0), ("a", 1)}


def test_session_errors_and_closing() -> None:
    leader = cache()
    full = {"session_id": 0, "session_epoch": 0, "topics": [], "forgotten_topics_data": []}
    session = leader.context(full, 2, False).session
    assert session is not None
    unknown = {**full, "session_id": 999, "session_epoch": 1}
    assert leader.context(unknown, 2, False).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    other = {**full, "session_id": session.session_id, "session_epoch": 1}
    assert leader.context(other, 3, False).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    wrong = {**other, "session_epoch": 5}
    assert leader.context(wrong, 2, False).error == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    closing = {**other, "session_epoch": -1}
    context = leader.context(closing, 2, False)
    assert context.session is None and context.error == ErrorCode.NONE
    assert len(leader) == 0


def test_consumers_get_no_session() -> None:
    leader = cache()
    full = {"session_id": 0, "session_epoch": 0, "topics": [{"topic": "a", "partitions": []}]}
    context = leader.context(full, -1, False)
    assert context.session is None and context.topics == full["topics"] and len(leader) == 0
    response = {"session_id": 0, "responses": []}
    assert context.finish(response)["session_id"] == 0
    asked = {**full, "session_id": 5, "session_epoch": 1}
    assert leader.context(asked, -1, False).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_the_cache_is_bounded_least_recently_used_out_and_one_per_follower() -> None:
    leader = cache(slots=2)
    full = {"session_id": 0, "session_epoch": 0, "topics": [], "forgotten_topics_data": []}
    ids = {}
    for replica in (1, 2):
        context = leader.context(full, replica, False)
        assert context.session is not None
        ids[replica] = context.session.session_id
    # Replica 1 uses its session: replica 2's is now the least recently used.
    assert leader.context({**full, "session_id": ids[1], "session_epoch": 1}, 1, False).session
    assert leader.context(full, 3, False).session is not None
    assert leader.get(ids[2]) is None and leader.get(ids[1]) is not None
    # A follower's new full fetch replaces its old session.
    new = leader.context(full, 1, False).session
    assert new is not None and leader.get(ids[1]) is None and len(leader) == 2
    assert cache(slots=0).context(full, 1, False).session is None


def test_sessions_by_topic_id() -> None:
    leader = cache()
    topic_id = uuid.UUID(int=9)
    full = {
        "session_id": 0,
        "session_epoch": 0,
        "topics": [{"topic_id": topic_id, "partitions": [{"partition": 0, "fetch_offset": 3}]}],
    }
    session = leader.context(full, 1, True).session
    assert session is not None
    forget = {
        "session_id": session.session_id,
        "session_epoch": 1,
        "topics": [],
        "forgotten_topics_data": [{"topic_id": topic_id, "partitions": [0]}],
    }
    assert leader.context(forget, 1, True).topics == []


def test_epochs_wrap_to_one() -> None:
    assert next_epoch(1) == 2 and next_epoch(0x7FFFFFFF) == 1


def test_a_discarded_answer_is_named_again() -> None:
    follower = FollowerSession()
    wanted = {("a", 0): want("a", 0, 0)}
    follower.answered(follower.request(wanted), 100)
    follower.rename(("a", 0))
    assert follower.request(wanted).named == [wanted[("a", 0)]]


def test_a_leader_declining_keeps_the_follower_on_full_fetches() -> None:
    follower = FollowerSession()
    wanted = {("a", 0): want("a", 0, 0)}
    follower.answered(follower.request(wanted), 0)
    again = follower.request(wanted)
    assert again.full and again.named == [wanted[("a", 0)]]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sets(st.integers(0, 5)),  # partitions fetched this round
            st.lists(st.integers(0, 3), min_size=6, max_size=6),  # appends per partition
            st.lists(st.booleans(), min_size=6, max_size=6),  # high watermark moves
            st.booleans(),  # the session is lost (eviction, a restarted leader)
        ),
        min_size=1,
        max_size=25,
    )
)
def test_a_follower_and_leader_stay_in_step(rounds: list[Any]) -> None:
    """Whatever partitions come and go, whatever moves: every round the leader
    reads every fetched partition at the follower's true log end, and the
    follower ends each round knowing every fetched partition's high watermark."""
    leader, follower = cache(), FollowerSession()
    end = [0] * 6  # the leader's log ends
    hw = [0] * 6
    mine = [0] * 6  # the follower's log ends
    known_hw = [-1] * 6
    for fetched, appends, moves, lost in rounds:
        if lost:
            leader = cache()
        for i in range(6):
            end[i] += appends[i]
            hw[i] = min(end[i], hw[i] + moves[i])
        wanted = {("a", i): want("a", i, mine[i]) for i in sorted(fetched)}
        sent, request = body(follower, wanted)
        context = leader.context(request, 2, False)
        if context.error:
            follower.reset()
            sent, request = body(follower, wanted)
            context = leader.context(request, 2, False)
        assert not context.error
        read = {
            (t["topic"], p["partition"]): p["fetch_offset"]
            for t in context.topics
            for p in t["partitions"]
        }
        assert read == {tp: mine[tp[1]] for tp in wanted}
        response = answer(context, {("a", i): (hw[i], end[i]) for i in range(6)})
        follower.answered(sent, response["session_id"])
        for topic in response["responses"]:
            for p in topic["partitions"]:
                i = p["partition_index"]
                if p["records"]:
                    mine[i] = p["_end"]
                known_hw[i] = p["high_watermark"]
        for tp in wanted:
            assert known_hw[tp[1]] == hw[tp[1]]
