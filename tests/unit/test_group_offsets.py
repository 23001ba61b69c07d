"""OffsetCommit, OffsetFetch, OffsetDelete and offset expiry."""

from __future__ import annotations

import struct

from test_group_support import START_MS, Harness, Joined, joined_from, state, subscription

from moldau.group import errors
from moldau.group.records import (
    GroupMetadataKey,
    OffsetCommitKey,
    OffsetCommitValue,
    decode_key,
    decode_value,
    encode_key,
)
from moldau.group.results import FetchedOffset, LeavingMember, OffsetCommitPartition

ONE_MINUTE = 60_000


def commit(
    h: Harness, group: str, member: Joined | None, *offsets: tuple[str, int, int]
) -> list[int]:
    """Commits as ``member``, or as a standalone consumer when None."""
    partitions = [
        OffsetCommitPartition(t, p, o, leader_epoch=3, metadata="m") for t, p, o in offsets
    ]
    if member is None:
        result = h.coord.commit_offsets(group, "", None, -1, partitions)
    else:
        result = h.coord.commit_offsets(
            group, member.member_id, None, member.generation, partitions
        )
    return [p.error_code for p in result.partitions]


def fetch(h: Harness, group: str, topics: list[tuple[str, list[int]]] | None = None) -> dict:
    result = h.coord.fetch_offsets(group, topics)
    assert result.error_code == errors.NONE
    return {(p.topic, p.partition): p.offset for p in result.partitions}


def test_member_commits_and_fetches() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1)
    assert commit(h, "g", member, ("orders", 0, 42), ("orders", 1, 7)) == [errors.NONE] * 2
    result = h.coord.fetch_offsets("g", [("orders", [1, 0, 5])])
    assert result.partitions == (
        FetchedOffset("orders", 1, 7, 3, "m"),
        FetchedOffset("orders", 0, 42, 3, "m"),
        FetchedOffset("orders", 5),  # never committed: -1
    )


def test_fetch_all_partitions_when_topics_is_null() -> None:
    h = Harness()
    commit(h, "g", None, ("b", 0, 1), ("a", 1, 2), ("a", 0, 3))
    assert list(fetch(h, "g")) == [("a", 0), ("a", 1), ("b", 0)]


def test_fetch_for_an_unknown_group_has_no_offsets() -> None:
    h = Harness()
    assert fetch(h, "nope", [("t", [0])]) == {("t", 0): -1}
    assert fetch(h, "nope") == {}


def test_commit_writes_an_offset_commit_record() -> None:
    h = Harness()
    commit(h, "g", None, ("orders", 2, 99))
    (_partition, key, value) = h.records[-1]
    assert decode_key(key) == OffsetCommitKey("g", "orders", 2)
    assert decode_value(decode_key(key), value or b"") == OffsetCommitValue(99, 3, "m", START_MS)


def test_commit_generation_and_member_checks() -> None:
    h = Harness()
    a, _b = h.form_group("g", 2)
    stale = Joined(a.member_id, a.generation - 1, "", ())
    assert commit(h, "g", stale, ("t", 0, 1)) == [errors.ILLEGAL_GENERATION]
    ghost = Joined("ghost", a.generation, "", ())
    assert commit(h, "g", ghost, ("t", 0, 1)) == [errors.UNKNOWN_MEMBER_ID]
    assert commit(h, "g", None, ("t", 0, 1)) == [errors.UNKNOWN_MEMBER_ID]  # group is active
    # During PreparingRebalance members commit what they processed before revoking.
    h.join_new("g", client_id="c")
    assert commit(h, "g", a, ("t", 0, 1)) == [errors.NONE]


def test_commit_during_completing_rebalance_is_refused() -> None:
    h = Harness()
    answers = [h.join_new("g", client_id=c) for c in ("a", "b")]
    h.finish_initial_delay()
    member = joined_from(answers[1])
    assert commit(h, "g", member, ("t", 0, 1)) == [errors.REBALANCE_IN_PROGRESS]


def test_standalone_commits() -> None:
    h = Harness()
    assert commit(h, "solo", None, ("t", 0, 5)) == [errors.NONE]  # creates the group
    assert state(h, "solo") == "Empty"
    stale = Joined("m", 4, "", ())
    assert commit(h, "nope", stale, ("t", 0, 5)) == [errors.ILLEGAL_GENERATION]
    # A group whose members all left takes standalone commits again.
    (member,) = h.form_group("g", 1)
    h.leave("g", LeavingMember(member.member_id))
    assert commit(h, "g", None, ("t", 0, 5)) == [errors.NONE]


def test_too_large_metadata_is_refused_per_partition() -> None:
    h = Harness(offset_metadata_max_bytes=4)
    partitions = [
        OffsetCommitPartition("t", 0, 1, metadata="four"),
        OffsetCommitPartition("t", 1, 1, metadata="fives"),
        OffsetCommitPartition("t", 2, 1, metadata=None),
    ]
    result = h.coord.commit_offsets("g", "", None, -1, partitions)
    assert [p.error_code for p in result.partitions] == [
        errors.NONE,
        errors.OFFSET_METADATA_TOO_LARGE,
        errors.NONE,
    ]
    assert fetch(h, "g") == {("t", 0): 1, ("t", 2): 1}


def test_committing_keeps_a_member_alive() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1, session_ms=10_000)
    for offset in range(5):
        h.advance(9_000)
        assert commit(h, "g", member, ("t", 0, offset)) == [errors.NONE]
    assert state(h, "g") == "Stable"


# --- OffsetDelete ---------------------------------------------------------------


def test_delete_offsets_of_an_empty_group() -> None:
    h = Harness()
    commit(h, "g", None, ("t", 0, 1), ("t", 1, 2))
    result = h.coord.delete_offsets("g", [("t", 0), ("t", 9)])
    assert [p.error_code for p in result.partitions] == [errors.NONE, errors.NONE]
    assert fetch(h, "g") == {("t", 1): 2}
    assert h.records[-1][1:] == (h.records[0][1], None)  # a tombstone for t-0


def test_delete_offsets_of_an_unknown_group() -> None:
    h = Harness()
    assert h.coord.delete_offsets("nope", [("t", 0)]).error_code == errors.GROUP_ID_NOT_FOUND


def test_offsets_of_topics_an_active_consumer_group_reads_are_kept() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1, protocols=[("range", subscription("orders"))])
    commit(h, "g", member, ("orders", 0, 1), ("old-topic", 0, 2))
    result = h.coord.delete_offsets("g", [("orders", 0), ("old-topic", 0)])
    assert result.error_code == errors.NONE
    assert [p.error_code for p in result.partitions] == [
        errors.GROUP_SUBSCRIBED_TO_TOPIC,
        errors.NONE,
    ]
    assert fetch(h, "g") == {("orders", 0): 1}


def test_active_group_of_another_protocol_type_refuses_offset_delete() -> None:
    h = Harness()
    answer = h.join_new("g", protocol_type="connect", protocols=[("default", b"x")])
    h.finish_initial_delay()
    sync = h.sync("g", joined_from(answer), protocol_type="connect")
    assert sync.result.error_code == errors.NONE
    assert h.coord.delete_offsets("g", [("t", 0)]).error_code == errors.NON_EMPTY_GROUP


# --- expiry ---------------------------------------------------------------------


def expiring_harness() -> Harness:
    return Harness(offsets_retention_minutes=1, offsets_retention_check_interval_ms=1_000)


def test_offsets_of_an_empty_group_expire_a_retention_after_it_became_empty() -> None:
    h = expiring_harness()
    (member,) = h.form_group("g", 1)
    commit(h, "g", member, ("t", 0, 1))
    for _ in range(6):  # the commit ages while the member still consumes
        h.advance(5_000)
        assert h.heartbeat("g", member) == errors.NONE
    h.leave("g", LeavingMember(member.member_id))  # Empty from now on
    h.advance(ONE_MINUTE - 1_000)
    assert fetch(h, "g") == {("t", 0): 1}
    h.advance(1_000)
    assert fetch(h, "g") == {}
    # The group had nothing left: it is gone, with tombstones for both keys.
    assert h.coord.list_groups().groups == ()
    tombstones = [decode_key(k) for _, k, v in h.records[-2:] if v is None]
    assert tombstones == [OffsetCommitKey("g", "t", 0), GroupMetadataKey("g")]


def test_standalone_offsets_expire_each_from_its_commit() -> None:
    h = expiring_harness()
    commit(h, "solo", None, ("t", 0, 1))
    h.advance(30_000)
    commit(h, "solo", None, ("t", 1, 1))
    h.advance(30_000)
    assert fetch(h, "solo") == {("t", 1): 1}
    h.advance(30_000)
    assert fetch(h, "solo") == {}


def test_active_group_keeps_offsets_of_subscribed_topics_only() -> None:
    h = expiring_harness()
    (member,) = h.form_group("g", 1, protocols=[("range", subscription("orders"))])
    commit(h, "g", member, ("orders", 0, 1), ("old-topic", 0, 2))
    for _ in range(30):  # five minutes, heartbeating
        h.advance(10_000 - 1)
        assert h.heartbeat("g", member) == errors.NONE
    assert fetch(h, "g") == {("orders", 0): 1}


def test_unreadable_subscriptions_protect_every_topic() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1, protocols=[("range", b"\xff not a subscription")])
    commit(h, "g", member, ("t", 0, 1))
    result = h.coord.delete_offsets("g", [("t", 0)])
    assert [p.error_code for p in result.partitions] == [errors.GROUP_SUBSCRIBED_TO_TOPIC]


def test_offsets_written_by_kafka_with_an_explicit_expire_timestamp() -> None:
    h = Harness(offsets_topic_num_partitions=1, offsets_retention_check_interval_ms=1_000)
    key = encode_key(OffsetCommitKey("g", "t", 0))
    v1 = struct.pack(">hqhqq", 1, 5, 0, START_MS, START_MS + 5_000)  # offset, "", commit, expire
    h.coord.load_partition(0, [(key, v1)])
    h.advance(4_000)
    assert fetch(h, "g") == {("t", 0): 5}
    h.advance(1_000)
    assert fetch(h, "g") == {}
