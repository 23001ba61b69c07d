"""Describe/List/DeleteGroups, partition ownership and loading, replay of records."""

from __future__ import annotations

from test_group_support import Answer, Harness, joined_from, state, subscription

from moldau.group import GroupCoordinator, errors, partition_for_group
from moldau.group.records import (
    GroupMetadataKey,
    OffsetCommitKey,
    OffsetCommitValue,
    encode_key,
    encode_value,
)
from moldau.group.results import JoinResult, LeavingMember, OffsetCommitPartition, SyncResult


def standalone_commit(coord: GroupCoordinator, group: str, topic: str = "t") -> int:
    result = coord.commit_offsets(group, "", None, -1, [OffsetCommitPartition(topic, 0, 1)])
    return result.partitions[0].error_code


# --- DescribeGroups -------------------------------------------------------------


def test_describe_a_stable_group() -> None:
    h = Harness()
    a, b = h.form_group("g", 2, protocols=[("range", subscription("orders"))])
    (d,) = h.coord.describe_groups(["g"])
    assert (d.error_code, d.state, d.protocol_type, d.protocol) == (
        0,
        "Stable",
        "consumer",
        "range",
    )
    assert (d.generation_id, d.leader) == (1, a.member_id)
    assert [m.member_id for m in d.members] == [a.member_id, b.member_id]
    assert [m.client_id for m in d.members] == ["client-0", "client-1"]
    assert d.members[0].metadata == subscription("orders")
    assert d.members[1].assignment == f"assignment-of-{b.member_id}".encode()


def test_describe_during_a_rebalance_hides_metadata_and_assignments() -> None:
    h = Harness()
    h.form_group("g", 1)
    h.join_new("g", client_id="c")
    (d,) = h.coord.describe_groups(["g"])
    assert (d.state, d.protocol) == ("PreparingRebalance", "")
    assert {(m.metadata, m.assignment) for m in d.members} == {(b"", b"")}


def test_describe_an_unknown_group_says_dead() -> None:
    h = Harness()
    (d,) = h.coord.describe_groups(["nope"])
    assert (d.error_code, d.state, d.members) == (errors.NONE, "Dead", ())


# --- ListGroups -----------------------------------------------------------------


def test_list_groups_with_and_without_a_state_filter() -> None:
    h = Harness()
    h.form_group("stable", 1)
    h.join_new("preparing")
    standalone_commit(h.coord, "solo")
    listed = h.coord.list_groups()
    assert [(g.group_id, g.protocol_type, g.state) for g in listed.groups] == [
        ("preparing", "consumer", "PreparingRebalance"),
        ("solo", "", "Empty"),
        ("stable", "consumer", "Stable"),
    ]
    filtered = h.coord.list_groups(["stable", "EMPTY"])
    assert [g.group_id for g in filtered.groups] == ["solo", "stable"]


# --- DeleteGroups ---------------------------------------------------------------


def test_delete_groups() -> None:
    h = Harness()
    h.form_group("busy", 1)
    standalone_commit(h.coord, "idle")
    results = h.coord.delete_groups(["busy", "idle", "nope"])
    assert [r.error_code for r in results] == [
        errors.NON_EMPTY_GROUP,
        errors.NONE,
        errors.GROUP_ID_NOT_FOUND,
    ]
    assert state(h, "idle") == "Dead"
    assert h.coord.fetch_offsets("idle", None).partitions == ()
    written = [(k, v) for _, k, v in h.records[-2:]]
    assert written == [
        (encode_key(OffsetCommitKey("idle", "t", 0)), None),
        (encode_key(GroupMetadataKey("idle")), None),
    ]


# --- which coordinator, and loading ---------------------------------------------


def test_groups_of_partitions_not_owned_get_not_coordinator() -> None:
    h = Harness(offsets_topic_num_partitions=4)
    coord = h.new_coordinator()
    mine = partition_for_group("g", 4)
    coord.load_partition(mine, [])
    other = next(g for g in ("a", "b", "c", "d", "e") if partition_for_group(g, 4) != mine)
    assert standalone_commit(coord, other) == errors.NOT_COORDINATOR
    assert coord.heartbeat(other, 1, "m", None).error_code == errors.NOT_COORDINATOR
    assert coord.describe_groups([other])[0].error_code == errors.NOT_COORDINATOR
    assert coord.delete_groups([other])[0].error_code == errors.NOT_COORDINATOR
    assert standalone_commit(coord, "g") == errors.NONE
    assert coord.owned_partitions == {mine}


def test_requests_while_loading_get_coordinator_load_in_progress() -> None:
    h = Harness(offsets_topic_num_partitions=1)
    coord = h.new_coordinator()
    coord.mark_loading(0)
    answer: Answer[JoinResult] = Answer()
    coord.join_group(
        "g", "", None, "c", "h", 10_000, 10_000, "consumer", [("range", b"")],
        require_known_member_id=True, on_done=answer,
    )  # fmt: skip
    assert answer.result.error_code == errors.COORDINATOR_LOAD_IN_PROGRESS
    assert coord.fetch_offsets("g", None).error_code == errors.COORDINATOR_LOAD_IN_PROGRESS
    assert coord.list_groups().error_code == errors.COORDINATOR_LOAD_IN_PROGRESS
    assert coord.leave_group("g", []).error_code == errors.COORDINATOR_LOAD_IN_PROGRESS
    coord.load_partition(0, [])
    assert coord.fetch_offsets("g", None).error_code == errors.NONE
    assert coord.list_groups().error_code == errors.NONE


def test_unloading_answers_waiting_requests_with_not_coordinator() -> None:
    h = Harness()
    waiting = h.join_new("g")
    h.coord.unload_partition(partition_for_group("g", h.config.offsets_topic_num_partitions))
    assert waiting.result.error_code == errors.NOT_COORDINATOR
    assert h.coord.describe_groups(["g"])[0].error_code == errors.NOT_COORDINATOR
    assert h.coord.next_deadline() == h.clock.now + h.config.offsets_retention_check_interval_ms


# --- replaying __consumer_offsets -----------------------------------------------


def snapshot(coord: GroupCoordinator, groups: list[str]) -> list[object]:
    return [(coord.describe_groups([g]), coord.fetch_offsets(g, None)) for g in groups]


def load_all(h: Harness, records: list[tuple[int, bytes, bytes | None]]) -> GroupCoordinator:
    coord = h.new_coordinator()
    for p in range(h.config.offsets_topic_num_partitions):
        coord.load_partition(p, [(k, v) for q, k, v in records if q == p])
    return coord


def scenario(h: Harness) -> list[str]:
    """Groups in every state that survives a restart; returns their ids."""
    orders = [("range", subscription("orders"))]
    members = h.form_group("stable", 3, protocols=orders, session_ms=60_000)
    h.coord.commit_offsets(
        "stable", members[0].member_id, None, 1,
        [OffsetCommitPartition("orders", p, 10 * p, 5, f"m{p}") for p in range(3)],
    )  # fmt: skip
    h.leave("stable", LeavingMember(members[2].member_id))
    h.rejoin_all("stable", members[:2], protocols=orders, session_ms=60_000)  # generation 2

    statics = [h.join("static", instance=f"i-{i}", session_ms=60_000) for i in range(2)]
    h.finish_initial_delay()
    h.sync_all("static", [joined_from(a) for a in statics])
    h.join("static", instance="i-1", session_ms=60_000)  # restart: new member id

    (gone,) = h.form_group("emptied", 1)
    standalone_commit(h.coord, "emptied", "x")  # refused: the group is active
    h.leave("emptied", LeavingMember(gone.member_id))
    standalone_commit(h.coord, "emptied", "x")

    standalone_commit(h.coord, "solo", "a")
    standalone_commit(h.coord, "solo", "b")
    h.coord.delete_offsets("solo", [("a", 0)])

    standalone_commit(h.coord, "deleted")
    h.coord.delete_groups(["deleted"])
    return ["stable", "static", "emptied", "solo", "deleted"]


def test_replaying_the_persisted_records_reproduces_groups_and_offsets() -> None:
    h = Harness()
    groups = scenario(h)
    before = snapshot(h.coord, groups)
    assert [state(h, g) for g in groups] == ["Stable", "Stable", "Empty", "Empty", "Dead"]
    assert snapshot(load_all(h, h.records), groups) == before


def test_replaying_a_compacted_log_gives_the_same_state() -> None:
    h = Harness()
    groups = scenario(h)
    last: dict[tuple[int, bytes], bytes | None] = {}
    for p, k, v in h.records:
        last.pop((p, k), None)  # compaction keeps the latest record, at its position
        last[(p, k)] = v
    compacted = [(p, k, v) for (p, k), v in last.items()]
    assert len(compacted) < len(h.records)
    assert snapshot(load_all(h, compacted), groups) == snapshot(h.coord, groups)


def test_loaded_members_carry_on_but_must_heartbeat() -> None:
    h = Harness()
    a, b = h.form_group("g", 2, session_ms=10_000)
    coord = load_all(h, h.records)
    h.coord = coord
    assert h.heartbeat("g", a) == errors.NONE
    assert h.sync("g", b).result.assignment == f"assignment-of-{b.member_id}".encode()
    h.advance(9_000)
    assert h.heartbeat("g", a) == errors.NONE
    h.advance(1_000)  # b's session, started at load, has expired
    assert h.heartbeat("g", a) == errors.REBALANCE_IN_PROGRESS


def test_load_skips_unreadable_records_and_other_record_types() -> None:
    h = Harness(offsets_topic_num_partitions=1)
    coord = h.new_coordinator()
    good = encode_key(OffsetCommitKey("g", "t", 0)), encode_value(OffsetCommitValue(5, -1, "", 0))
    consumer_group_type = b"\x00\x03\x00\x01g"  # a record of Kafka's newer group protocol
    skipped = coord.load_partition(0, [(b"\x00\x01\x00", b""), (consumer_group_type, b"?"), good])
    assert skipped == 1
    assert coord.fetch_offsets("g", [("t", [0])]).partitions[0].offset == 5


def test_reloading_an_owned_partition_starts_from_its_records() -> None:
    h = Harness(offsets_topic_num_partitions=1)
    standalone_commit(h.coord, "g")
    h.coord.load_partition(0, [])
    assert h.coord.fetch_offsets("g", None).partitions == ()


def test_other_requests_check_the_coordinator_too() -> None:
    h = Harness(offsets_topic_num_partitions=1)
    coord = h.new_coordinator()  # owns nothing
    sync: Answer[SyncResult] = Answer()
    coord.sync_group("g", 1, "m", None, None, None, [], on_done=sync)
    assert sync.result.error_code == errors.NOT_COORDINATOR
    assert coord.delete_offsets("g", [("t", 0)]).error_code == errors.NOT_COORDINATOR
    assert coord.rebalance_history("g") == ()


def test_group_tombstone_keeps_offsets_committed_after_it() -> None:
    h = Harness(offsets_topic_num_partitions=1)
    (member,) = h.form_group("g", 1)
    h.leave("g", LeavingMember(member.member_id))
    h.coord.delete_groups(["g"])
    standalone_commit(h.coord, "g")  # the id is reused by a standalone consumer
    coord = load_all(h, h.records)
    assert snapshot(coord, ["g"]) == snapshot(h.coord, ["g"])
    # A tombstone for a group that has offsets (written by another tool): offsets stay.
    coord.load_partition(0, [*h.records_of(0), (encode_key(GroupMetadataKey("g")), None)])
    assert coord.fetch_offsets("g", None).partitions[0].offset == 1
    assert coord.describe_groups(["g"])[0].protocol_type == ""
