"""Offsets committed inside transactions (TxnOffsetCommit, KIP-98/KIP-447):
staged until the transaction's marker reaches the offsets partition, then
applied (commit) or dropped (abort); unstable to require_stable meanwhile;
rebuilt from the log after a restart."""

from __future__ import annotations

from test_group_offsets import commit, fetch
from test_group_support import Harness, Joined, joined_from, state

from moldau.group import errors
from moldau.group.placement import partition_for_group
from moldau.group.results import OffsetCommitPartition
from moldau.group.runtime import TransactionalRecord, TxnEnd, TxnProducer

PID = 4000
PRODUCER = TxnProducer(PID, 3)


def txn_commit(
    h: Harness,
    group: str,
    *offsets: tuple[str, int, int],
    member: Joined | None = None,
    producer: TxnProducer = PRODUCER,
    generation: int | None = None,
) -> list[int]:
    partitions = [OffsetCommitPartition(t, p, o) for t, p, o in offsets]
    result = h.coord.commit_offsets(
        group,
        "" if member is None else member.member_id,
        None,
        (-1 if member is None else member.generation) if generation is None else generation,
        partitions,
        producer,
    )
    return [p.error_code for p in result.partitions]


def stable(h: Harness, group: str, tp: tuple[str, int]) -> tuple[int, int]:
    """(error, offset) of ``tp`` for an OffsetFetch that requires stable offsets."""
    [found] = h.coord.fetch_offsets(group, [(tp[0], [tp[1]])], require_stable=True).partitions
    return found.error_code, found.offset


def end(h: Harness, group: str, committed: bool, producer_id: int = PID) -> None:
    h.end_transaction(
        partition_for_group(group, h.config.offsets_topic_num_partitions), producer_id, committed
    )


def test_an_offset_committed_in_a_transaction_applies_only_when_it_commits() -> None:
    h = Harness()
    commit(h, "g", None, ("t", 0, 5))
    assert txn_commit(h, "g", ("t", 0, 9), ("t", 1, 2)) == [errors.NONE] * 2
    assert fetch(h, "g") == {("t", 0): 5}
    assert stable(h, "g", ("t", 0)) == (errors.UNSTABLE_OFFSET_COMMIT, -1)
    end(h, "g", committed=True)
    assert fetch(h, "g") == {("t", 0): 9, ("t", 1): 2}
    assert stable(h, "g", ("t", 0)) == (errors.NONE, 9)


def test_an_aborted_transaction_leaves_the_offsets_as_they_were() -> None:
    h = Harness()
    commit(h, "g", None, ("t", 0, 5))
    txn_commit(h, "g", ("t", 0, 9))
    end(h, "g", committed=False)
    assert fetch(h, "g") == {("t", 0): 5}
    assert stable(h, "g", ("t", 0)) == (errors.NONE, 5)


def test_the_records_are_written_inside_the_producers_transaction() -> None:
    h = Harness()
    txn_commit(h, "g", ("t", 0, 9))
    partition = partition_for_group("g", h.config.offsets_topic_num_partitions)
    [(where, record)] = h.log
    assert (
        where == partition and isinstance(record, TransactionalRecord) and record.producer_id == PID
    )


def test_a_plain_commit_after_the_transactional_one_wins_one_before_loses() -> None:
    h = Harness()
    txn_commit(h, "g", ("t", 0, 9), ("t", 1, 9))
    commit(h, "g", None, ("t", 0, 20))  # after: wins when the transaction commits
    end(h, "g", committed=True)
    assert fetch(h, "g") == {("t", 0): 20, ("t", 1): 9}


def test_a_marker_completes_only_its_producer_and_its_partitions_groups() -> None:
    h = Harness(offsets_topic_num_partitions=2)
    a = "g-a"
    b = next(f"g-{i}" for i in range(100) if partition_for_group(f"g-{i}", 2) != 1)
    assert partition_for_group(a, 2) == 1 and partition_for_group(b, 2) == 0
    other = TxnProducer(PID + 1, 0)
    txn_commit(h, a, ("t", 0, 1))
    txn_commit(h, a, ("t", 1, 1), producer=other)
    txn_commit(h, b, ("t", 0, 7))
    end(h, a, committed=True)
    assert fetch(h, a) == {("t", 0): 1}  # the other producer's offset still waits
    assert fetch(h, b) == {}  # its partition has not had the marker yet
    end(h, b, committed=True)
    assert fetch(h, b) == {("t", 0): 7}


def test_a_restart_rebuilds_committed_aborted_and_open_transactions_from_the_log() -> None:
    h = Harness()
    txn_commit(h, "g", ("t", 0, 1))
    end(h, "g", committed=True)
    txn_commit(h, "g", ("t", 0, 2))
    end(h, "g", committed=False)
    txn_commit(h, "g", ("t", 1, 3))  # still open at the restart
    assert any(isinstance(r, TxnEnd) for _, r in h.log)
    h.restart_coordinator()
    assert fetch(h, "g") == {("t", 0): 1}
    assert stable(h, "g", ("t", 1)) == (errors.UNSTABLE_OFFSET_COMMIT, -1)
    end(h, "g", committed=True)
    assert fetch(h, "g") == {("t", 0): 1, ("t", 1): 3}


def test_a_commit_naming_a_member_is_checked_like_a_members_commit() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1)
    assert txn_commit(h, "g", ("t", 0, 1), member=member) == [errors.NONE]
    assert txn_commit(h, "g", ("t", 0, 1), member=member, generation=member.generation + 1) == [
        errors.ILLEGAL_GENERATION
    ]
    stranger = Joined("stranger", member.generation, member.leader, ())
    assert txn_commit(h, "g", ("t", 0, 1), member=stranger) == [errors.UNKNOWN_MEMBER_ID]
    # Older clients name no member: accepted even though the group has members.
    assert txn_commit(h, "g", ("t", 0, 1)) == [errors.NONE]


def test_a_rebalance_in_progress_does_not_refuse_a_transactional_commit() -> None:
    h = Harness()
    (member,) = h.form_group("g", 1)
    rejoined = joined_from(h.join("g", member.member_id))  # a new generation, not synced yet
    assert state(h, "g") == "CompletingRebalance"
    assert commit(h, "g", rejoined, ("t", 0, 4)) == [errors.REBALANCE_IN_PROGRESS]
    assert txn_commit(h, "g", ("t", 0, 4), member=rejoined) == [errors.NONE]


def test_a_group_first_named_by_a_transactional_commit_is_created() -> None:
    h = Harness()
    assert txn_commit(h, "fresh", ("t", 0, 4)) == [errors.NONE]
    end(h, "fresh", committed=True)
    assert fetch(h, "fresh") == {("t", 0): 4}
    assert txn_commit(h, "absent", ("t", 0, 4), generation=3) == [errors.UNKNOWN_MEMBER_ID]
    assert h.coord.describe_groups(["absent"])[0].state == "Dead"
