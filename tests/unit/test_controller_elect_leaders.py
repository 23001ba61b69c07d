"""Preferred and unclean leader elections and the auto leader rebalance, in
the pure controller against a fake ZooKeeper view (Kafka 3.9's
processReplicaLeaderElection and checkAndTriggerAutoLeaderRebalance).

The scene of most tests: three brokers, six partitions whose preferred
leaders are spread over them; broker 1 dies and comes back, so its two
partitions are led elsewhere until an election hands them back.
"""

from __future__ import annotations

import pytest

from moldau.cluster.controller import rebalance
from moldau.cluster.controller.commands import (
    ElectionOutcome,
    ElectLeadersReply,
    LeaderAndIsr,
    UpdateMetadata,
    UpdatePartitionState,
)
from moldau.cluster.controller.controller import Controller
from moldau.cluster.controller.events import (
    ElectionType,
    ElectLeaders,
    IsrChangeNotification,
    LeaderImbalanceCheck,
)
from moldau.cluster.controller.rebalance import RebalanceConfig
from moldau.cluster.zk.paths import RECOVERING
from moldau.protocol.errors import ErrorCode
from support.controller_harness import Harness
from support.fake_zk_view import FakeZkView

SPREAD = [[1, 2, 3], [2, 3, 1], [3, 1, 2], [1, 3, 2], [2, 1, 3], [3, 2, 1]]
BROKER_1_PREFERS = [("t", 0), ("t", 3)]


def scene(config: RebalanceConfig | None = None) -> Harness:
    """Broker 1 died and came back; it follows again but leads nothing."""
    h = Harness(FakeZkView(), [1, 2, 3])
    h.controller = Controller(1, rebalance_config=config)
    h.elect()
    h.create_topic("t", SPREAD)
    h.stop(1)
    h.start(1)
    rejoin(h, 1)
    return h


def rejoin(h: Harness, broker_id: int) -> None:
    """What the leaders do once the follower caught up: add it to the ISR."""
    states = {}
    for tp, state in h.view.states().items():
        if broker_id not in state.isr:
            states[tp] = h.view.leader_sets_isr(tp, (*state.isr, broker_id))
    h.feed(IsrChangeNotification(states))


def leader_of(h: Harness, tp: tuple[str, int]) -> int:
    state = h.view.state(tp)
    assert state is not None
    return state.leader


def elect(h: Harness, event: ElectLeaders) -> dict[tuple[str, int], ElectionOutcome]:
    h.feed(event)
    reply = h.replies[-1]
    assert isinstance(reply, ElectLeadersReply)
    return {(o.topic, o.partition): o for o in reply.results}


def test_preferred_election_gives_leadership_back() -> None:
    h = scene()
    assert {leader_of(h, tp) for tp in BROKER_1_PREFERS} == {2, 3}
    before = h.view.states()
    commands = h.feed(ElectLeaders(None))
    reply = h.replies[-1]
    assert isinstance(reply, ElectLeadersReply)
    outcomes = {(o.topic, o.partition): (o.error, o.leader) for o in reply.results}
    assert outcomes == {
        tp: ((ErrorCode.NONE, 1) if tp in BROKER_1_PREFERS else (ErrorCode.ELECTION_NOT_NEEDED, -1))
        for tp in before
    }
    for tp in BROKER_1_PREFERS:
        after = h.view.state(tp)
        assert after is not None
        assert after.leader == 1
        assert after.leader_epoch == before[tp].leader_epoch + 1
        assert after.isr == before[tp].isr  # a preferred election keeps the ISR
    writes = [c for c in commands if isinstance(c, UpdatePartitionState)]
    assert sorted((w.topic, w.partition) for w in writes) == BROKER_1_PREFERS
    told = {c.broker_id for c in commands if isinstance(c, LeaderAndIsr)}
    assert told == {1, 2, 3}  # every replica of the two partitions
    assert all(h.brokers[1].partitions[tp].leader == 1 for tp in BROKER_1_PREFERS)
    assert {c.broker_id for c in commands if isinstance(c, UpdateMetadata)} == {1, 2, 3}
    assert h.brokers[1].leads() == set(BROKER_1_PREFERS)


def test_preferred_replica_out_of_sync_or_dead_is_not_available() -> None:
    h = Harness(FakeZkView(), [1, 2, 3])
    h.elect()
    h.create_topic("t", SPREAD)
    h.stop(1)
    outcomes = elect(h, ElectLeaders(frozenset(BROKER_1_PREFERS)))
    assert {o.error for o in outcomes.values()} == {ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE}
    h.start(1)  # live again, not yet in the ISR
    outcomes = elect(h, ElectLeaders(frozenset(BROKER_1_PREFERS)))
    assert {o.error for o in outcomes.values()} == {ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE}
    assert {leader_of(h, tp) for tp in BROKER_1_PREFERS} == {2, 3}


def test_unknown_and_deleting_partitions_are_answered() -> None:
    h = scene()
    h.ack_deletes = False
    h.create_topic("gone", [[1, 2]])
    h.delete_topic("gone")
    outcomes = elect(h, ElectLeaders(frozenset({("t", 9), ("nope", 0), ("gone", 0), ("t", 0)})))
    assert outcomes[("t", 9)].error is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert outcomes[("nope", 0)].error is ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert outcomes[("gone", 0)].error is ErrorCode.INVALID_TOPIC_EXCEPTION
    assert outcomes[("t", 0)].error is ErrorCode.NONE
    everything = elect(h, ElectLeaders(None))
    assert ("gone", 0) not in everything  # all partitions means those not being deleted


def test_unclean_election_only_without_a_live_leader() -> None:
    h = Harness(FakeZkView(), [1, 2, 3])
    h.elect()
    h.create_topic("u", [[1, 2], [3, 2], [1, 3]])
    for tp in [("u", 0), ("u", 2)]:
        state = h.view.state(tp)
        assert state is not None
        h.feed(IsrChangeNotification({tp: h.view.leader_sets_isr(tp, (1,))}))
    h.stop(1)
    h.stop(3)
    assert leader_of(h, ("u", 0)) == -1  # no live ISR member, unclean off for the topic
    outcomes = elect(h, ElectLeaders(None, ElectionType.UNCLEAN))
    assert outcomes[("u", 0)].error is ErrorCode.NONE
    assert outcomes[("u", 0)].leader == 2
    state = h.view.state(("u", 0))
    assert state is not None
    assert (state.leader, state.isr, state.leader_recovery_state) == (2, (2,), RECOVERING)
    assert outcomes[("u", 1)].error is ErrorCode.ELECTION_NOT_NEEDED  # 2 took over cleanly
    assert outcomes[("u", 2)].error is ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE  # 1 and 3 dead


def test_an_election_whose_write_lost_is_decided_again() -> None:
    h = scene()
    tp = ("t", 0)
    state = h.view.state(tp)
    assert state is not None
    h.view.leader_sets_isr(tp, (3, 1))  # the leader shrank the ISR; not yet notified
    outcomes = elect(h, ElectLeaders(frozenset({tp})))
    assert outcomes[tp].error is ErrorCode.NONE
    after = h.view.state(tp)
    assert after is not None
    assert (after.leader, after.isr) == (1, (3, 1))
    assert len([r for r in h.replies if isinstance(r, ElectLeadersReply)]) == 1


# -- the auto rebalance ------------------------------------------------------------


def test_rebalance_rule_threshold_and_eligibility() -> None:
    assignments = {("t", p): [1 + (p % 2), 3] for p in range(20)}  # 10 prefer 1, 10 prefer 2
    leaders = {tp: r[0] for tp, r in assignments.items()}
    leaders[("t", 0)] = 3  # 1 of broker 1's 10: 10%, not above 10%
    assert rebalance.partitions_to_rebalance(assignments, leaders, lambda tp: True, 10) == []
    leaders[("t", 2)] = 3  # 20%
    chosen = rebalance.partitions_to_rebalance(assignments, leaders, lambda tp: True, 10)
    assert chosen == [("t", 0), ("t", 2)]
    assert rebalance.partitions_to_rebalance(
        assignments, leaders, lambda tp: tp != ("t", 2), 10
    ) == [("t", 0)]
    assert rebalance.partitions_to_rebalance(assignments, leaders, lambda tp: True, 20) == []
    del leaders[("t", 0)], leaders[("t", 2)]  # no leader yet: balanced
    assert rebalance.partitions_to_rebalance(assignments, leaders, lambda tp: True, 0) == []


def test_auto_rebalance_runs_when_due_and_then_every_interval() -> None:
    h = Harness(FakeZkView(), [1, 2, 3])
    h.controller = Controller(1, rebalance_config=RebalanceConfig(True, 2000, 10))
    h.now_ms = 1_000
    h.elect()
    due = h.controller.next_check_ms
    assert due == 1_001 + rebalance.FIRST_CHECK_DELAY_MS
    h.create_topic("t", SPREAD)
    h.stop(1)
    h.start(1)
    rejoin(h, 1)
    h.now_ms = due - 10
    assert h.feed(LeaderImbalanceCheck()) == []  # early: nothing, deadline kept
    assert h.controller.next_check_ms == due
    h.now_ms = due
    commands = h.feed(LeaderImbalanceCheck())
    assert sorted(
        (c.topic, c.partition) for c in commands if isinstance(c, UpdatePartitionState)
    ) == (BROKER_1_PREFERS)
    assert {leader_of(h, tp) for tp in BROKER_1_PREFERS} == {1}
    assert h.controller.next_check_ms == due + 1 + 2000
    assert not any(isinstance(c, ElectLeadersReply) for c in commands)  # nobody asked


@pytest.mark.parametrize("enabled", [False, True])
def test_auto_rebalance_disabled_or_balanced_does_nothing(enabled: bool) -> None:
    config = RebalanceConfig(enabled, 2000, 10)
    h = scene(config) if not enabled else Harness(FakeZkView(), [1, 2, 3])
    if enabled:
        h.controller = Controller(1, rebalance_config=config)
        h.elect()
        h.create_topic("t", SPREAD)  # balanced from the start
    assert (h.controller.next_check_ms is None) is not enabled
    h.now_ms += 60_000
    writes = [c for c in h.feed(LeaderImbalanceCheck()) if isinstance(c, UpdatePartitionState)]
    assert writes == []


def test_a_deposed_controller_has_no_timer() -> None:
    from moldau.cluster.controller.events import ControllerMoved

    h = scene(RebalanceConfig(True, 2000, 10))
    assert h.controller.next_check_ms is not None
    h.feed(ControllerMoved())
    assert h.controller.next_check_ms is None
    h.now_ms += 60_000
    assert h.feed(LeaderImbalanceCheck()) == []
