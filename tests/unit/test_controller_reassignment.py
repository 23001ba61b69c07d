"""Partition reassignment through the pure controller (KIP-455, Kafka 3.9's
onPartitionReassignment), step by step against a fake ZooKeeper view.

Facts from Kafka: while moving, the topic znode holds RS = target ++ origin
with the adding and removing replicas; the leader epoch is bumped and every
replica of RS hears of it, the new ones as new replicas; once every target
replica is in the ISR the replicas become the target, the leader moves into
it if needed, the removed replicas leave the ISR and are deleted; a cancel
returns to the origin; a new target replaces the old one; a new controller
resumes from the topic znodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from moldau.cluster.controller import reassignment, rebalance
from moldau.cluster.controller.alter_partition import AlterPartitionItem
from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    AlterReassignmentsReply,
    LeaderAndIsr,
    ListReassignmentsReply,
    ReassignmentOutcome,
    StopReplica,
    UpdateTopicAssignment,
)
from moldau.cluster.controller.controller import Controller
from moldau.cluster.controller.events import (
    AlterPartition,
    AlterReassignments,
    IsrChangeNotification,
    LeaderImbalanceCheck,
    ListReassignments,
    UncleanLeaderElectionEnable,
    ZkPartitionReassignment,
)
from moldau.cluster.controller.rebalance import RebalanceConfig
from moldau.cluster.controller.states import ReplicaState
from moldau.cluster.zk.paths import ReplicaAssignment
from moldau.protocol.errors import ErrorCode
from support.controller_harness import Harness
from support.fake_zk_view import FakeZkView

TP = ("t", 0)


def cluster(replicas: list[int], brokers: int = 4) -> Harness:
    h = Harness(FakeZkView(), range(1, brokers + 1))
    h.elect()
    h.create_topic("t", [replicas])
    return h


def reassign(h: Harness, target: Sequence[int] | None, tp: tuple[str, int] = TP) -> ErrorCode:
    h.feed(AlterReassignments({tp: None if target is None else tuple(target)}))
    reply = h.replies[-1]
    assert isinstance(reply, AlterReassignmentsReply)
    (outcome,) = reply.results
    assert (outcome.topic, outcome.partition) == tp
    return outcome.error


def in_sync(h: Harness, isr: tuple[int, ...]) -> AlterPartitionReply:
    """The leader asks for ``isr`` (AlterPartition), as a follower caught up."""
    state = h.view.state(TP)
    assert state is not None
    item = AlterPartitionItem(*TP, state.leader_epoch, isr, state.zk_version)
    h.feed(AlterPartition(state.leader, h.up[state.leader].epoch, (item,)))
    reply = [r for r in h.replies if isinstance(r, AlterPartitionReply)][-1]
    return reply


def znode(h: Harness) -> ReplicaAssignment:
    return h.view.topics()["t"].partitions[0]


def state(h: Harness) -> tuple[int, int, tuple[int, ...]]:
    s = h.view.state(TP)
    assert s is not None
    return s.leader, s.leader_epoch, s.isr


def stops(h: Harness, commands: list) -> dict[int, list[tuple[str, int, bool]]]:
    out: dict[int, list[tuple[str, int, bool]]] = {}
    for c in commands:
        if isinstance(c, StopReplica):
            told = out.setdefault(c.broker_id, [])
            told.extend((p.topic, p.partition, p.delete) for p in c.partitions)
    return out


# -- the pure rules -------------------------------------------------------------


def test_reassign_to_keeps_kafkas_order_target_first() -> None:
    moving = reassignment.reassign_to(ReplicaAssignment((1, 2)), [2, 3])
    assert moving == ReplicaAssignment((2, 3, 1), (3,), (1,))
    # the origin is RS without the adding replicas, in RS's order (Kafka's too)
    assert moving.origin_replicas() == (2, 1) and moving.target_replicas() == (2, 3)
    # a new target is taken from the origin, not from the replicas of the old target
    assert reassignment.reassign_to(moving, [1, 4]) == ReplicaAssignment((1, 4, 2), (4,), (2,))
    assert reassignment.reassign_to(moving, [1, 2]) == ReplicaAssignment((1, 2))
    assert reassignment.reassign_to(moving, moving.origin_replicas()) == ReplicaAssignment((2, 1))


def test_is_complete_when_every_target_replica_is_in_sync() -> None:
    moving = ReplicaAssignment((2, 3, 1), (3,), (1,))
    assert not reassignment.is_complete(moving, (1, 2))
    assert reassignment.is_complete(moving, (1, 2, 3))
    assert reassignment.is_complete(ReplicaAssignment((1, 2)), ())


# -- start ---------------------------------------------------------------------


def test_start_records_rs_and_tells_every_replica_with_a_new_leader_epoch() -> None:
    h = cluster([1, 2])
    before = len(h.commands)
    assert reassign(h, [2, 3]) is ErrorCode.NONE
    commands = h.commands[before:]
    assert znode(h) == ReplicaAssignment((2, 3, 1), (3,), (1,))
    assert [c.partitions for c in commands if isinstance(c, UpdateTopicAssignment)] == [
        {0: ReplicaAssignment((2, 3, 1), (3,), (1,))}
    ]
    assert state(h) == (1, 1, (1, 2))  # leader epoch bumped, ISR as it was
    told = {c.broker_id: c for c in commands if isinstance(c, LeaderAndIsr)}
    assert set(told) == {1, 2, 3}
    (new,) = told[3].partitions
    assert new.is_new and new.replicas == (2, 3, 1)
    assert (new.adding_replicas, new.removing_replicas) == ((3,), (1,))
    assert h.brokers[1].partitions[TP].replicas == (2, 3, 1)
    assert all(b.metadata[TP].replicas == (2, 3, 1) for b in h.brokers.values())
    assert h.controller.context is not None
    assert h.controller.context.replicas.get(("t", 0, 3)) is ReplicaState.NEW
    h.feed(ListReassignments())
    listed = h.replies[-1]
    assert isinstance(listed, ListReassignmentsReply)
    assert listed.reassignments == {TP: ReplicaAssignment((2, 3, 1), (3,), (1,))}


def test_the_new_replica_joins_the_isr_as_any_follower() -> None:
    h = cluster([1, 2])
    reassign(h, [1, 2, 3])
    reply = in_sync(h, (1, 2, 3))
    assert reply.partitions[0].error is ErrorCode.NONE  # answered with the ISR it asked for
    assert reply.partitions[0].isr == (1, 2, 3)


def test_not_complete_until_every_target_replica_is_in_sync() -> None:
    h = cluster([1, 2])
    reassign(h, [3, 4])
    in_sync(h, (1, 2, 3))
    assert znode(h) == ReplicaAssignment((3, 4, 1, 2), (3, 4), (1, 2))
    assert not stops(h, h.commands)


# -- completion ----------------------------------------------------------------


def test_completion_moves_the_leader_into_the_target_and_deletes_the_old_replica() -> None:
    h = cluster([1, 2])
    reassign(h, [2, 3])
    before = len(h.commands)
    in_sync(h, (1, 2, 3))
    commands = h.commands[before:]
    assert znode(h) == ReplicaAssignment((2, 3))
    leader, epoch, isr = state(h)
    assert (leader, isr) == (2, (2, 3)) and epoch == 2
    assert stops(h, commands) == {1: [("t", 0, True)]}
    assert TP not in h.brokers[1].partitions
    assert h.brokers[2].partitions[TP].leader == 2
    assert h.brokers[3].partitions[TP].replicas == (2, 3)
    assert all(b.metadata[TP].replicas == (2, 3) for b in h.brokers.values())
    assert h.controller.context is not None
    assert h.controller.context.replicas.get(("t", 0, 1)) is ReplicaState.NON_EXISTENT
    assert h.controller.context.replicas.get(("t", 0, 3)) is ReplicaState.ONLINE
    h.feed(ListReassignments())
    assert h.replies[-1] == ListReassignmentsReply({})


def test_a_leader_in_the_target_stays_with_a_new_epoch() -> None:
    h = cluster([1, 2])
    reassign(h, [1, 3])
    in_sync(h, (1, 2, 3))
    assert state(h) == (1, 2, (1, 3))
    assert znode(h) == ReplicaAssignment((1, 3))


def test_completion_with_the_removed_broker_down_sends_it_nothing() -> None:
    h = cluster([1, 2])
    reassign(h, [2, 3])
    h.stop(1)  # leadership goes to 2, the first of RS (2, 3, 1) live and in sync
    assert state(h)[0] == 2
    before = len(h.commands)
    in_sync(h, (2, 3))
    assert znode(h) == ReplicaAssignment((2, 3))
    assert not stops(h, h.commands[before:])
    h.start(1)
    assert TP not in h.brokers[1].partitions  # not a replica any more


def test_an_isr_change_notification_completes_it_too() -> None:
    h = cluster([1, 2])
    reassign(h, [2, 3])
    changed = h.view.leader_sets_isr(TP, (1, 2, 3))
    h.feed(IsrChangeNotification({TP: changed}))
    assert znode(h) == ReplicaAssignment((2, 3))
    assert state(h)[0] == 2


# -- cancel and replace --------------------------------------------------------


def test_cancel_returns_to_the_origin_and_deletes_the_added_replicas() -> None:
    h = cluster([1, 2])
    reassign(h, [3, 4])
    in_sync(h, (1, 2, 3))  # 3 caught up, 4 not: still moving
    before = len(h.commands)
    assert reassign(h, None) is ErrorCode.NONE
    commands = h.commands[before:]
    assert znode(h) == ReplicaAssignment((1, 2))
    leader, _, isr = state(h)
    assert (leader, isr) == (1, (1, 2))
    assert stops(h, commands) == {3: [("t", 0, True)], 4: [("t", 0, True)]}
    assert TP not in h.brokers[3].partitions and TP not in h.brokers[4].partitions
    assert h.brokers[2].partitions[TP].replicas == (1, 2)


def test_cancel_without_a_reassignment() -> None:
    h = cluster([1, 2])
    assert reassign(h, None) is ErrorCode.NO_REASSIGNMENT_IN_PROGRESS
    reassign(h, [2, 3])
    in_sync(h, (1, 2, 3))
    assert reassign(h, None) is ErrorCode.NO_REASSIGNMENT_IN_PROGRESS  # it completed


def test_a_new_target_replaces_the_old_one() -> None:
    h = cluster([1, 2])
    reassign(h, [1, 3])
    in_sync(h, (1, 2))  # nothing new in sync yet
    before = len(h.commands)
    assert reassign(h, [1, 4]) is ErrorCode.NONE
    commands = h.commands[before:]
    assert znode(h) == ReplicaAssignment((1, 4, 2), (4,), (2,))
    assert stops(h, commands) == {3: [("t", 0, True)]}
    assert h.brokers[4].partitions[TP].replicas == (1, 4, 2)
    in_sync(h, (1, 2, 4))
    assert znode(h) == ReplicaAssignment((1, 4))
    assert state(h)[2] == (1, 4)


def test_a_replaced_target_replica_in_the_isr_leaves_it() -> None:
    h = cluster([1, 2])
    reassign(h, [3, 4])
    in_sync(h, (1, 2, 3))
    reassign(h, [2, 4])  # 3 is no longer wanted
    assert znode(h) == ReplicaAssignment((2, 4, 1), (4,), (1,))
    assert state(h)[2] == (1, 2)


# -- failover ------------------------------------------------------------------


def test_a_new_controller_resumes_from_the_topic_znode() -> None:
    view = FakeZkView()
    old = Harness(view, [1, 2, 3, 4], controller_id=1)
    old.elect()
    old.create_topic("t", [[1, 2]])
    reassign(old, [2, 3])
    new = Harness(view, [1, 2, 3, 4], controller_id=2)
    commands = new.elect()
    assert new.controller.context is not None
    assert new.controller.context.reassigning == {TP: ReplicaAssignment((2, 3, 1), (3,), (1,))}
    new3 = [c for c in commands if isinstance(c, LeaderAndIsr) and c.broker_id == 3]
    assert new3 and new3[0].partitions[0].replicas == (2, 3, 1)
    in_sync(new, (1, 2, 3))
    assert znode(new) == ReplicaAssignment((2, 3))
    assert state(new)[0] == 2


def test_a_new_controller_completes_what_caught_up_while_there_was_none() -> None:
    view = FakeZkView()
    old = Harness(view, [1, 2, 3], controller_id=1)
    old.elect()
    old.create_topic("t", [[1, 2]])
    reassign(old, [2, 3])
    view.leader_sets_isr(TP, (1, 2, 3))
    new = Harness(view, [1, 2, 3], controller_id=2)
    commands = new.elect()
    assert znode(new) == ReplicaAssignment((2, 3))
    assert stops(new, commands) == {1: [("t", 0, True)]}


# -- refusals ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "tp", "error"),
    [
        ([2, 3], ("nope", 0), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ([2, 3], ("t", 7), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        (None, ("t", 7), ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        ([], TP, ErrorCode.INVALID_REPLICA_ASSIGNMENT),
        ([2, 2], TP, ErrorCode.INVALID_REPLICA_ASSIGNMENT),
        ([2, -1], TP, ErrorCode.INVALID_REPLICA_ASSIGNMENT),
        ([2, 9], TP, ErrorCode.INVALID_REPLICA_ASSIGNMENT),
    ],
)
def test_refusals(target: list[int] | None, tp: tuple[str, int], error: ErrorCode) -> None:
    h = cluster([1, 2])
    before = len(h.commands)
    assert reassign(h, target, tp) is error
    assert not [c for c in h.commands[before:] if isinstance(c, UpdateTopicAssignment)]
    assert znode(h) == ReplicaAssignment((1, 2))


def test_a_new_replica_must_be_live_but_one_removed_may_be_down() -> None:
    h = cluster([1, 2])
    h.stop(3)
    assert reassign(h, [2, 3]) is ErrorCode.INVALID_REPLICA_ASSIGNMENT
    h.stop(1)
    assert reassign(h, [2, 4]) is ErrorCode.NONE


def test_one_request_answers_every_partition() -> None:
    h = cluster([1, 2])
    h.feed(AlterReassignments({TP: (2, 3), ("t", 5): (1,), ("u", 0): None}))
    reply = h.replies[-1]
    assert isinstance(reply, AlterReassignmentsReply)
    assert {(r.topic, r.partition): r.error for r in reply.results} == {
        TP: ErrorCode.NONE,
        ("t", 5): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ("u", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }


def test_v1_may_forbid_changing_the_replication_factor() -> None:
    h = cluster([1, 2])
    h.feed(AlterReassignments({TP: (1, 2, 3)}, allow_replication_factor_change=False))
    reply = h.replies[-1]
    assert isinstance(reply, AlterReassignmentsReply)
    assert reply.results[0].error is ErrorCode.INVALID_REPLICATION_FACTOR
    h.feed(AlterReassignments({TP: (2, 3)}, allow_replication_factor_change=False))
    assert h.replies[-1] == AlterReassignmentsReply((ReassignmentOutcome("t", 0, ErrorCode.NONE),))


def test_a_lost_leader_epoch_bump_is_made_again_after_the_re_read() -> None:
    h = cluster([1, 2])
    h.view.leader_sets_isr(TP, (1,))  # behind the controller's back: its bump will lose
    assert reassign(h, [1, 3]) is ErrorCode.NONE
    assert state(h) == (1, 1, (1,))  # the retry's bump, on the state re-read
    told = h.brokers[1].partitions[TP]
    assert (told.leader_epoch, told.replicas) == (1, (1, 3, 2))
    assert h.brokers[3].partitions[TP].is_new


# -- the legacy znode ----------------------------------------------------------


def test_the_legacy_znode_starts_reassignments_and_goes_once_they_are_done() -> None:
    h = cluster([1, 2])
    h.create_topic("u", [[1, 2]])
    h.feed(ZkPartitionReassignment(h.view.request_reassignment({TP: (2, 3), ("u", 0): (1, 3)})))
    assert znode(h) == ReplicaAssignment((2, 3, 1), (3,), (1,))
    in_sync(h, (1, 2, 3))
    assert znode(h) == ReplicaAssignment((2, 3))
    assert h.view.reassignment_requested() == {("u", 0): (1, 3)}  # t-0 is done
    state_u = h.view.state(("u", 0))
    assert state_u is not None
    item = AlterPartitionItem("u", 0, state_u.leader_epoch, (1, 2, 3), state_u.zk_version)
    h.feed(AlterPartition(1, h.up[1].epoch, (item,)))
    assert h.view.reassignment_requested() is None  # all done: deleted


def test_an_operators_request_takes_a_partition_out_of_the_legacy_znode() -> None:
    h = cluster([1, 2])
    h.create_topic("u", [[1, 2]])
    h.feed(ZkPartitionReassignment(h.view.request_reassignment({TP: (2, 3), ("u", 0): (1, 3)})))
    assert reassign(h, [1, 4]) is ErrorCode.NONE
    assert h.view.reassignment_requested() == {("u", 0): (1, 3)}
    assert znode(h) == ReplicaAssignment((1, 4, 2), (4,), (2,))


def test_refused_targets_leave_the_legacy_znode() -> None:
    h = cluster([1, 2])
    targets = {TP: (2, 3), ("t", 9): (1, 2), ("t", 1): ()}
    h.feed(ZkPartitionReassignment(h.view.request_reassignment(targets)))
    assert h.view.reassignment_requested() == {TP: (2, 3)}
    assert znode(h) == ReplicaAssignment((2, 3, 1), (3,), (1,))


def test_no_auto_rebalance_while_a_partition_is_being_reassigned() -> None:
    h = Harness(FakeZkView(), [1, 2, 3, 4])
    h.controller = Controller(1, rebalance_config=RebalanceConfig(True, 1, 10))
    h.elect()
    h.create_topic("t", [[1, 2]])
    h.create_topic("u", [[3, 4]])
    h.stop(3)
    h.start(3)
    state_u = h.view.state(("u", 0))
    assert state_u is not None and state_u.leader == 4
    item = AlterPartitionItem("u", 0, state_u.leader_epoch, (4, 3), state_u.zk_version)
    h.feed(AlterPartition(4, h.up[4].epoch, (item,)))  # 3 caught up: it could lead again
    reassign(h, [2, 4])  # 4 cannot catch up: it is not fetching in this harness
    h.now_ms += rebalance.FIRST_CHECK_DELAY_MS
    h.feed(LeaderImbalanceCheck())
    assert h.view.state(("u", 0)).leader == 4  # type: ignore[union-attr]
    reassign(h, None)
    h.now_ms += 10
    h.feed(LeaderImbalanceCheck())
    assert h.view.state(("u", 0)).leader == 3  # type: ignore[union-attr]


def test_an_unclean_election_of_the_only_target_replica_completes_it() -> None:
    h = cluster([1, 2])
    h.feed(UncleanLeaderElectionEnable("t", True))
    reassign(h, [3])
    h.stop(1)
    h.stop(2)  # no ISR member left: 3, live, is elected uncleanly
    leader, _, isr = state(h)
    assert (leader, isr) == (3, (3,))
    assert znode(h) == ReplicaAssignment((3,))
