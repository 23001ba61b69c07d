"""The controller state machine against a fake ZooKeeper view (no server).

Each test drives events through ``Harness`` (which plays the shell), then
checks what ZooKeeper holds, what each broker was told, and what the
controller answered. Facts follow Kafka 3.9's controller: a new partition is
led by its first live replica with every live replica in the ISR; a dead
broker leaves every ISR with a leader-epoch bump, the last ISR member never
leaves; unclean election only when the topic allows it.
"""

from __future__ import annotations

from moldau.cluster.controller.commands import (
    CreatePartitionStates,
    LeaderAndIsr,
    StopReplica,
    UpdateMetadata,
    UpdatePartitionState,
)
from moldau.cluster.controller.events import (
    ControlledShutdown,
    IsrChangeNotification,
    StopReplicaResult,
    TopicChange,
    UncleanLeaderElectionEnable,
)
from moldau.cluster.controller.states import ReplicaState
from moldau.cluster.zk.paths import LEADER_DURING_DELETE, NO_LEADER, RECOVERING
from moldau.protocol.errors import ErrorCode
from support.controller_harness import Harness
from support.fake_zk_view import FakeZkView


def cluster(brokers: int = 3) -> Harness:
    harness = Harness(FakeZkView(), range(1, brokers + 1))
    harness.elect()
    return harness


def leaders(h: Harness) -> dict[tuple[str, int], tuple[int, int, tuple[int, ...]]]:
    return {tp: (s.leader, s.leader_epoch, s.isr) for tp, s in h.view.states().items()}


def of(kind: type, commands: list) -> list:
    return [c for c in commands if isinstance(c, kind)]


def test_election_tells_every_broker_the_cluster() -> None:
    h = Harness(FakeZkView(), [1, 2, 3])
    commands = h.elect()
    assert [c.broker_id for c in of(UpdateMetadata, commands)] == [1, 2, 3]
    assert all(
        len(c.brokers) == 3 and c.controller_epoch == 1 for c in of(UpdateMetadata, commands)
    )


def test_new_topic_first_live_replica_leads_with_every_live_replica_in_sync() -> None:
    h = cluster()
    h.stop(3)
    commands = h.create_topic("t", [[1, 2, 3], [3, 2, 1]])
    assert leaders(h) == {("t", 0): (1, 0, (1, 2)), ("t", 1): (2, 0, (2, 1))}
    (create,) = of(CreatePartitionStates, commands)
    assert create.fence.epoch == 1 and all(s.controller_epoch == 1 for s in create.states.values())
    assert {c.broker_id for c in of(LeaderAndIsr, commands)} == {1, 2}  # 3 is down
    assert all(p.is_new for c in of(LeaderAndIsr, commands) for p in c.partitions)
    assert h.brokers[1].leads() == {("t", 0)} and h.brokers[2].leads() == {("t", 1)}
    assert h.brokers[1].metadata[("t", 1)].offline_replicas == (3,)


def test_new_partition_without_live_replicas_waits_for_its_broker() -> None:
    h = cluster()
    h.stop(3)
    h.create_topic("t", [[3]])
    assert leaders(h) == {}
    h.start(3)
    assert leaders(h) == {("t", 0): (3, 0, (3,))}
    assert h.brokers[3].leads() == {("t", 0)}


def test_broker_loss_moves_leadership_and_shrinks_every_isr_with_an_epoch_bump() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2, 3], [2, 3, 1]])
    commands = h.stop(1)
    assert leaders(h) == {("t", 0): (2, 1, (2, 3)), ("t", 1): (2, 1, (2, 3))}
    assert {c.broker_id for c in commands if hasattr(c, "broker_id")} <= {2, 3}
    assert h.brokers[2].leads() == {("t", 0), ("t", 1)}
    assert h.brokers[3].metadata[("t", 0)].offline_replicas == (1,)


def test_last_isr_member_stays_in_the_isr_and_leads_again_when_back() -> None:
    h = cluster()
    h.create_topic("t", [[1]])
    h.stop(1)
    assert leaders(h) == {("t", 0): (NO_LEADER, 1, (1,))}
    h.start(1)
    assert leaders(h) == {("t", 0): (1, 2, (1,))}
    assert h.brokers[1].leads() == {("t", 0)}


def test_unclean_election_only_when_the_topic_enables_it() -> None:
    h = cluster(2)
    h.create_topic("t", [[1, 2]])
    isr = h.view.leader_sets_isr(("t", 0), (1,))  # follower 2 fell behind
    h.feed(IsrChangeNotification({("t", 0): isr}))
    h.stop(1)
    assert leaders(h) == {("t", 0): (NO_LEADER, 1, (1,))}
    h.feed(UncleanLeaderElectionEnable("t", True))
    state = h.view.state(("t", 0))
    assert state is not None
    assert (state.leader, state.leader_epoch, state.isr) == (2, 2, (2,))
    assert state.leader_recovery_state == RECOVERING
    assert h.brokers[2].leads() == {("t", 0)}


def test_unclean_setting_at_topic_creation() -> None:
    h = cluster(2)
    assignment = h.view.create_topic("t", [[1, 2]])
    h.feed(TopicChange(frozenset({"t"}), {"t": assignment}, {"t": True}))
    h.feed(IsrChangeNotification({("t", 0): h.view.leader_sets_isr(("t", 0), (1,))}))
    h.stop(1)
    assert leaders(h)[("t", 0)][0] == 2


def test_broker_arrival_gets_everything_and_its_replicas() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2, 3], [2, 3, 1]])
    h.stop(3)
    commands = h.start(3)
    full = [c for c in of(UpdateMetadata, commands) if c.broker_id == 3]
    assert len(full) == 1 and {(p.topic, p.partition) for p in full[0].partitions} == {
        ("t", 0),
        ("t", 1),
    }
    assert [c.broker_id for c in of(LeaderAndIsr, commands)] == [3]
    assert set(h.brokers[3].partitions) == {("t", 0), ("t", 1)}
    assert not of(UpdatePartitionState, commands)  # the leader, not the controller, re-adds it


def test_partition_increase() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2]])
    commands = h.add_partitions("t", [[3, 1], [2, 3]])
    assert leaders(h) == {
        ("t", 0): (1, 0, (1, 2)),
        ("t", 1): (3, 0, (3, 1)),
        ("t", 2): (2, 0, (2, 3)),
    }
    (create,) = of(CreatePartitionStates, commands)
    assert set(create.states) == {1, 2}


def test_topic_deletion_removes_replicas_everywhere_then_the_znodes() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2], [2, 3]])
    h.ack_deletes = False
    commands = h.delete_topic("t")
    um = of(UpdateMetadata, commands)
    assert {p.leader for c in um for p in c.partitions} == {LEADER_DURING_DELETE}
    stops = {c.broker_id: c.partitions for c in of(StopReplica, commands)}
    assert set(stops) == {1, 2, 3} and all(s.delete for ps in stops.values() for s in ps)
    assert "t" in h.view.topics() and "t" in h.view.marks()
    assert not of(StopReplica, h.delete_topic("t"))  # the same marks again: nothing re-sent
    for broker_id, ps in stops.items():
        h.feed(StopReplicaResult(broker_id, frozenset((s.topic, s.partition) for s in ps)))
    assert h.view.topics() == {} and h.view.marks() == frozenset()
    assert h.view.states() == {} and h.controller.known_topics() == frozenset()


def test_deletion_while_a_replica_is_down_completes_when_it_returns() -> None:
    h = cluster()
    h.create_topic("t", [[1, 3], [2, 3]])
    h.stop(3)
    h.delete_topic("t")
    assert "t" in h.view.topics() and "t" in h.view.marks()
    ctx = h.controller.context
    assert ctx is not None and ctx.replicas.get(("t", 0, 3)) is ReplicaState.DELETION_INELIGIBLE
    commands = h.start(3)
    assert [c.broker_id for c in of(StopReplica, commands)] == [3]
    assert h.view.topics() == {} and h.view.marks() == frozenset()


def test_broker_dying_mid_deletion_retries_when_back() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2]])
    h.ack_deletes = False
    h.delete_topic("t")
    h.stop(2)
    h.ack_deletes = True
    h.feed(StopReplicaResult(1, frozenset({("t", 0)})))
    assert "t" in h.view.topics()
    h.start(2)
    assert h.view.topics() == {}


def test_deletion_mark_of_an_unknown_topic_is_removed() -> None:
    h = cluster()
    h.view.mark_for_deletion("ghost")
    h.delete_topic("ghost")
    assert h.view.marks() == frozenset()


def test_controlled_shutdown_moves_leaderships_and_leaves_isrs() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2, 3], [2, 1, 3], [1], [1, 3]])
    h.feed(IsrChangeNotification({("t", 3): h.view.leader_sets_isr(("t", 3), (1,))}))
    reply = h.controlled_shutdown(1)
    assert reply.error is ErrorCode.NONE
    # t-2 has one replica (not counted, as in Kafka); t-3's other replica is not in sync
    assert reply.remaining == frozenset({("t", 3)})
    assert leaders(h) == {
        ("t", 0): (2, 1, (2, 3)),
        ("t", 1): (2, 1, (2, 3)),
        ("t", 2): (1, 0, (1,)),
        ("t", 3): (1, 0, (1,)),
    }
    stops = [c for c in h.commands if isinstance(c, StopReplica)]
    assert [(c.broker_id, [(s.partition, s.delete) for s in c.partitions]) for c in stops] == [
        (1, [(1, False)])
    ]
    h.stop(1)  # then it goes: its partitions without another in-sync replica go leaderless
    assert leaders(h)[("t", 2)] == (NO_LEADER, 1, (1,))
    assert leaders(h)[("t", 3)] == (NO_LEADER, 1, (1,))


def test_controlled_shutdown_with_a_stale_or_unknown_broker_epoch() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2]])
    assert h.controlled_shutdown(1, epoch=h.up[1].epoch - 1).error is ErrorCode.STALE_BROKER_EPOCH
    h.stop(2)
    h.feed(ControlledShutdown(2, 5))
    assert h.replies[-1].error is ErrorCode.BROKER_NOT_AVAILABLE
    assert leaders(h)[("t", 0)][0] == 1


def test_failover_new_controller_reaches_the_same_leaders_without_writes() -> None:
    view = FakeZkView()
    old = Harness(view, [1, 2, 3], controller_id=1)
    old.elect()
    old.create_topic("t", [[1, 2, 3], [2, 3, 1], [3, 1, 2]])
    old.stop(3)
    before = leaders(old)
    new = Harness(view, [1, 2], controller_id=2)
    commands = new.elect()
    assert not of(UpdatePartitionState, commands) and not of(CreatePartitionStates, commands)
    assert leaders(new) == before
    assert {c.broker_id for c in of(LeaderAndIsr, commands)} == {1, 2}
    assert new.brokers[2].leads() == old.brokers[2].leads()


def test_failover_repairs_what_happened_without_a_controller() -> None:
    view = FakeZkView()
    old = Harness(view, [1, 2, 3])
    old.elect()
    old.create_topic("t", [[1, 2, 3]])
    new = Harness(view, [2, 3], controller_id=2)  # broker 1 died with the controller
    new.elect()
    assert leaders(new) == {("t", 0): (2, 1, (2, 3))}


def test_deposed_controller_writes_nothing_and_goes_quiet() -> None:
    view = FakeZkView()
    old = Harness(view, [1, 2, 3])
    old.elect()
    old.create_topic("t", [[1, 2, 3]])
    Harness(view, [1, 2, 3], controller_id=2).elect()  # a new controller, epoch 2
    before = dict(view.nodes)
    told = {b: len(broker.received) for b, broker in old.brokers.items()}
    commands = old.stop(1)
    assert of(UpdatePartitionState, commands)  # it tried: t-0 lost its leader
    assert view.nodes == before
    assert {b: len(broker.received) for b, broker in old.brokers.items()} == told
    assert not old.controller.active
    assert old.start(1) == []


def test_stale_partition_state_is_re_read_and_retried() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2, 3]])
    h.view.leader_sets_isr(("t", 0), (1, 3))  # the leader shrank the ISR, not yet notified
    commands = h.stop(3)
    writes = of(UpdatePartitionState, commands)
    assert len(writes) == 2 and writes[0].state.zk_version == 0 and writes[1].state.zk_version == 1
    assert leaders(h) == {("t", 0): (1, 1, (1,))}
    # the brokers never saw the batch whose write failed, only the retry's
    told = [
        p
        for b in (1, 2)
        for c in of(LeaderAndIsr, h.brokers[b].received)
        for p in c.partitions
        if not p.is_new
    ]
    assert [(p.isr, p.leader_epoch, p.partition_epoch) for p in told] == [((1,), 1, 2)] * 2


def test_isr_change_notification_reaches_every_broker() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2, 3]])
    state = h.view.leader_sets_isr(("t", 0), (1, 2))
    commands = h.feed(IsrChangeNotification({("t", 0): state}))
    assert [c.broker_id for c in of(UpdateMetadata, commands)] == [1, 2, 3]
    assert all(b.metadata[("t", 0)].isr == (1, 2) for b in h.brokers.values())
    assert not of(UpdatePartitionState, commands)


def test_failover_mid_deletion_finishes_it() -> None:
    view = FakeZkView()
    old = Harness(view, [1, 2, 3])
    old.elect()
    old.create_topic("t", [[1, 2]])
    old.ack_deletes = False
    old.delete_topic("t")  # the controller dies before the replicas answer
    new = Harness(view, [1, 2, 3], controller_id=2)
    new.elect()
    assert view.topics() == {} and view.marks() == frozenset()


def test_failover_creates_the_states_the_old_controller_never_wrote() -> None:
    view = FakeZkView()
    view.create_topic("t", [[2, 3]])  # created by an admin; the controller died before seeing it
    new = Harness(view, [1, 2, 3], controller_id=1)
    new.elect()
    assert leaders(new) == {("t", 0): (2, 0, (2, 3))}
    assert new.brokers[2].leads() == {("t", 0)}


def test_topic_removed_behind_the_controllers_back_is_forgotten_and_can_return() -> None:
    h = cluster()
    h.create_topic("t", [[1, 2]])
    for path in [p for p in h.view.nodes if p.startswith("/brokers/topics/t")]:
        del h.view.nodes[path]
    h.feed(TopicChange(frozenset(), {}))
    assert h.controller.known_topics() == frozenset()
    h.create_topic("t", [[2, 3]])  # the state tables let it be new again
    assert leaders(h) == {("t", 0): (2, 0, (2, 3))}
