"""Kafka's leader election rules and the controller's state tables."""

from __future__ import annotations

import itertools

import pytest

from moldau.cluster.controller import election
from moldau.cluster.controller.election import RECOVERING, LeaderAndIsr
from moldau.cluster.controller.states import (
    PARTITION_PREVIOUS,
    REPLICA_PREVIOUS,
    IllegalStateTransition,
    PartitionState,
    ReplicaState,
    partition_table,
    replica_table,
)


def test_initial_leader_is_first_live_replica() -> None:
    assert election.initial([3, 1, 2], {1, 2}) == LeaderAndIsr(1, 0, (1, 2))
    assert election.initial([3, 1], set()) is None


def test_offline_clean_picks_first_live_in_sync_in_assignment_order() -> None:
    current = LeaderAndIsr(1, 4, (1, 3, 2), partition_epoch=9)
    result = election.offline([1, 2, 3], current, {2, 3}, unclean_allowed=False)
    # 2 comes before 3 in the assignment, though 3 comes first in the ISR.
    assert result.leader_and_isr == LeaderAndIsr(2, 5, (3, 2), partition_epoch=9)
    assert result.replicas == (2, 3)
    assert not result.unclean


def test_offline_without_live_isr_stays_leaderless_unless_unclean() -> None:
    current = LeaderAndIsr(1, 4, (1,))
    clean = election.offline([1, 2, 3], current, {3, 2}, unclean_allowed=False)
    assert clean.leader_and_isr is None
    unclean = election.offline([1, 2, 3], current, {3, 2}, unclean_allowed=True)
    assert unclean.leader_and_isr == LeaderAndIsr(2, 5, (2,), RECOVERING)
    assert unclean.unclean
    old = election.offline(
        [1, 2, 3], current, {3}, unclean_allowed=True, leader_recovery_supported=False
    )
    assert old.leader_and_isr == LeaderAndIsr(3, 5, (3,))
    assert election.offline([1], current, set(), unclean_allowed=True).leader_and_isr is None


def test_reassigning_elects_among_target_replicas_and_keeps_isr() -> None:
    current = LeaderAndIsr(1, 2, (1, 2, 4))
    result = election.reassigning([3, 4, 2], current, {2, 3, 4})
    assert result.leader_and_isr == LeaderAndIsr(4, 3, (1, 2, 4))
    assert election.reassigning([3], current, {3}).leader_and_isr is None


def test_preferred_only_when_first_replica_is_live_and_in_sync() -> None:
    current = LeaderAndIsr(2, 7, (2, 1))
    assert election.preferred([1, 2], current, {1, 2}).leader_and_isr == LeaderAndIsr(1, 8, (2, 1))
    assert election.preferred([1, 2], current, {2}).leader_and_isr is None
    assert election.preferred([3, 2], current, {2, 3}).leader_and_isr is None


def test_controlled_shutdown_moves_leader_and_shrinks_isr() -> None:
    current = LeaderAndIsr(1, 0, (1, 2, 3))
    result = election.controlled_shutdown([1, 2, 3], current, {1, 2, 3}, {1})
    assert result.leader_and_isr == LeaderAndIsr(2, 1, (2, 3))
    assert result.replicas == (1, 2, 3)
    alone = election.controlled_shutdown([1, 2], LeaderAndIsr(1, 0, (1,)), {1, 2}, {1})
    assert alone.leader_and_isr is None


P, R = PartitionState, ReplicaState


def test_partition_lifecycle() -> None:
    table = partition_table()
    key = ("t", 0)
    assert table.get(key) is P.NON_EXISTENT
    for target in (P.NEW, P.ONLINE, P.OFFLINE, P.ONLINE, P.OFFLINE, P.NON_EXISTENT):
        table.move(key, target)
    assert len(table) == 0  # NonExistent forgets the key


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((), P.ONLINE),
        ((), P.OFFLINE),
        ((P.NEW,), P.NON_EXISTENT),
        ((P.NEW, P.ONLINE), P.NON_EXISTENT),
        ((P.NEW, P.ONLINE), P.NEW),
    ],
)
def test_illegal_partition_moves_raise(path: tuple[PartitionState, ...], illegal: P) -> None:
    table = partition_table()
    for target in path:
        table.move(("t", 0), target)
    with pytest.raises(IllegalStateTransition):
        table.move(("t", 0), illegal)


def test_every_partition_pair_matches_kafkas_table() -> None:
    legal = {
        (P.NON_EXISTENT, P.NEW),
        *itertools.product((P.NEW, P.ONLINE, P.OFFLINE), (P.ONLINE, P.OFFLINE)),
        (P.OFFLINE, P.NON_EXISTENT),
    }
    got = {(s, t) for t, prev in PARTITION_PREVIOUS.items() for s in prev}
    assert got == legal


def test_replica_deletion_path() -> None:
    table = replica_table()
    key = ("t", 0, 2)
    for target in (R.NEW, R.ONLINE, R.OFFLINE, R.DELETION_STARTED, R.DELETION_INELIGIBLE):
        table.move(key, target)
    for target in (R.OFFLINE, R.DELETION_STARTED, R.DELETION_SUCCESSFUL, R.NON_EXISTENT):
        table.move(key, target)
    assert table.get(key) is R.NON_EXISTENT
    assert len(table) == 0


def test_every_replica_pair_matches_kafkas_table() -> None:
    live = (R.NEW, R.ONLINE, R.OFFLINE, R.DELETION_INELIGIBLE)
    legal = {
        (R.NON_EXISTENT, R.NEW),
        *itertools.product(live, (R.ONLINE, R.OFFLINE)),
        (R.OFFLINE, R.DELETION_STARTED),
        (R.DELETION_STARTED, R.DELETION_SUCCESSFUL),
        (R.OFFLINE, R.DELETION_INELIGIBLE),
        (R.DELETION_STARTED, R.DELETION_INELIGIBLE),
        (R.DELETION_SUCCESSFUL, R.NON_EXISTENT),
    }
    got = {(s, t) for t, prev in REPLICA_PREVIOUS.items() for s in prev}
    assert got == legal
    table = replica_table()
    with pytest.raises(IllegalStateTransition):
        table.move(("t", 0, 1), R.DELETION_STARTED)


def test_move_all_is_all_or_nothing() -> None:
    table = partition_table()
    table.move(("t", 0), P.NEW)
    with pytest.raises(IllegalStateTransition):
        table.move_all([("t", 1), ("t", 0)], P.NEW)
    assert table.get(("t", 1)) is P.NON_EXISTENT
    table.move_all([("t", 1), ("t", 2)], P.NEW)
    assert sorted(table.keys_in(P.NEW)) == [("t", 0), ("t", 1), ("t", 2)]
