"""Random histories of brokers and topics keep the controller's invariants.

Hypothesis drives a cluster of five brokers through random sequences of
broker crashes, restarts (and both at once), controlled shutdowns, leader-side ISR changes
(AlterPartition, and the older direct write with a notification),
topic creation, partition increase, topic deletion, controller failover,
preferred and unclean elections asked for, auto-rebalance checks, and
partition reassignments started, replaced and cancelled, and after every
step checks what ZooKeeper holds and what the brokers believe:

- a partition's leader is live and in its ISR (or there is none: -1), except
  in a topic being deleted, whose state the controller no longer changes;
- the ISR is a non-empty subset of the replicas, and of the live brokers
  while the partition has a leader (a dead broker leaves every ISR);
- a partition's leader epoch never decreases (not across failovers either),
  and grows whenever the controller changes the leader or ISR (the leader's
  own ISR changes keep it, so the test's leader-side shrink is exempted);
- no two brokers believe they lead one partition in the same leader epoch;
- a topic whose deletion was asked for is gone once all its brokers are up;
- a partition being reassigned adds and removes replicas of its own, never
  both the same, and the controller's idea of it is what ZooKeeper holds;
- a live broker hosts only partitions it is a replica of (a removed replica
  was stopped).
"""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from moldau.cluster.controller.alter_partition import AlterPartitionItem
from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    AlterReassignmentsReply,
    ElectLeadersReply,
    UpdatePartitionState,
)
from moldau.cluster.controller.events import (
    AlterPartition,
    AlterReassignments,
    BrokerChange,
    ControlledShutdown,
    ElectionType,
    ElectLeaders,
    IsrChangeNotification,
    LeaderImbalanceCheck,
)
from moldau.cluster.zk.paths import NO_LEADER, reassignments_in_progress
from moldau.protocol.errors import ErrorCode
from support.controller_harness import Harness
from support.fake_zk_view import FakeZkView

BROKERS = (1, 2, 3, 4, 5)
TOPICS = ("a", "b", "c")

replica_lists = st.lists(
    st.lists(st.sampled_from(BROKERS), min_size=1, max_size=3, unique=True),
    min_size=1,
    max_size=3,
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("stop"), st.sampled_from(BROKERS)),
        st.tuples(st.just("start"), st.sampled_from(BROKERS)),
        st.tuples(st.just("shutdown"), st.sampled_from(BROKERS)),
        st.tuples(st.just("shrink"), st.sampled_from(TOPICS)),
        st.tuples(st.just("alter"), st.sampled_from(TOPICS), st.sets(st.sampled_from(BROKERS))),
        st.tuples(st.just("create"), st.sampled_from(TOPICS), replica_lists),
        st.tuples(st.just("expand"), st.sampled_from(TOPICS), replica_lists),
        st.tuples(st.just("delete"), st.sampled_from(TOPICS)),
        st.tuples(st.just("failover"), st.sampled_from(BROKERS)),
        st.tuples(st.just("elect"), st.sampled_from(ElectionType), st.booleans()),
        st.tuples(st.just("rebalance")),
        st.tuples(st.just("catchup")),
        st.tuples(st.just("bounce"), st.sampled_from(BROKERS)),
        st.tuples(
            st.just("reassign"),
            st.sampled_from(TOPICS),
            st.lists(st.sampled_from(BROKERS), min_size=1, max_size=3, unique=True),
        ),
        st.tuples(st.just("cancel"), st.sampled_from(TOPICS)),
    ),
    min_size=5,
    max_size=50,
)


class World:
    def __init__(self) -> None:
        self.view = FakeZkView()
        self.h = Harness(self.view, BROKERS)
        self.h.elect()
        self.h.create_topic("a", [[1, 2, 3], [2, 3, 4], [5, 1]])
        #: per partition: the last (leader epoch, leader, ISR) seen in ZooKeeper
        self.seen: dict[tuple[str, int], tuple[int, int, tuple[int, ...]]] = {}
        self.deleted: set[str] = set()

    def step(self, op: tuple) -> None:
        h, kind = self.h, op[0]
        if kind == "stop" and op[1] in h.up and len(h.up) > 1:
            h.stop(op[1])
        elif kind == "start" and op[1] not in h.up:
            h.start(op[1])
        elif kind == "shutdown" and op[1] in h.up:
            h.feed(ControlledShutdown(op[1], h.up[op[1]].epoch))
        elif kind == "shrink":
            self._leader_shrinks(op[1])
        elif kind == "alter":
            self._leader_alters((op[1], 0), op[2])
        elif kind == "catchup":
            self._followers_catch_up()
        elif kind == "bounce" and op[1] in h.up and len(h.up) > 1:
            h.stop(op[1])
            h.start(op[1])
        elif kind == "create" and op[1] not in self.view.topics():
            if op[1] not in self.view.marks():
                self.seen = {tp: v for tp, v in self.seen.items() if tp[0] != op[1]}
                h.create_topic(op[1], op[2])
                self.deleted.discard(op[1])
        elif kind == "expand" and op[1] in self.view.topics() and op[1] not in self.view.marks():
            h.add_partitions(op[1], op[2])
        elif kind == "delete" and op[1] in self.view.topics():
            h.delete_topic(op[1])
            self.deleted.add(op[1])
        elif kind == "failover" and op[1] in h.up:
            self._failover(op[1])
        elif kind == "elect":
            if op[2]:
                self._followers_catch_up()
            self._elect(op[1])
        elif kind in ("reassign", "cancel"):
            target = tuple(op[2]) if kind == "reassign" else None
            self.h.feed(AlterReassignments({(op[1], 0): target}))
            reply = self.h.replies[-1]
            assert isinstance(reply, AlterReassignmentsReply)
            event(f"{kind}: {reply.results[0].error.name}")
        elif kind == "rebalance":
            h.now_ms += 600_000  # past any check's deadline
            moved = [
                c for c in h.feed(LeaderImbalanceCheck()) if isinstance(c, UpdatePartitionState)
            ]
            event(f"auto rebalance: {'moved leaders' if moved else 'nothing to do'}")

    def _elect(self, kind: ElectionType) -> None:
        """An operator's election over every partition: each one elected is
        led as the rule says (preferred: by its first replica)."""
        self.h.feed(ElectLeaders(None, kind))
        reply = self.h.replies[-1]
        assert isinstance(reply, ElectLeadersReply)
        assignments = {
            (topic, p): a.replicas
            for topic, t in self.view.topics().items()
            for p, a in t.partitions.items()
        }
        for outcome in reply.results:
            event(f"ElectLeaders {kind.name}: {outcome.error.name}")
            state = self.view.state((outcome.topic, outcome.partition))
            if outcome.error is ErrorCode.NONE and kind is ElectionType.PREFERRED:
                assert state is not None
                assert state.leader == assignments[(outcome.topic, outcome.partition)][0]

    def _leader_shrinks(self, topic: str) -> None:
        """The leader of the topic's first partition drops its followers."""
        tp = (topic, 0)
        state = self.view.state(tp)
        if state is None or state.leader == NO_LEADER or len(state.isr) < 2:
            return
        if topic in self.view.marks():
            return
        new = self.view.leader_sets_isr(tp, (state.leader,))
        self.seen[tp] = (new.leader_epoch, new.leader, new.isr)
        self.h.feed(IsrChangeNotification({tp: new}))

    def _followers_catch_up(self) -> None:
        """Every live replica catches up: the leaders ask for it in their ISRs
        (what gives preferred elections something to do)."""
        topics = self.view.topics()
        for tp in sorted(self.view.states()):
            if tp[0] not in self.view.marks():
                replicas = topics[tp[0]].partitions[tp[1]].replicas
                self._leader_alters(tp, set(replicas) & set(self.h.up))

    def _leader_alters(self, tp: tuple[str, int], followers: set[int]) -> None:
        """The leader of the partition asks for an ISR of itself and
        ``followers`` (dead or unassigned ones included: to be refused)."""
        state = self.view.state(tp)
        if state is None or state.leader not in self.h.up:
            return
        isr = (state.leader, *sorted(followers - {state.leader}))
        moving = tp in reassignments_in_progress(self.view.topics())  # may complete now
        item = AlterPartitionItem(*tp, state.leader_epoch, isr, state.zk_version)
        self.h.feed(AlterPartition(state.leader, self.h.up[state.leader].epoch, (item,)))
        reply = self.h.replies[-1]
        assert isinstance(reply, AlterPartitionReply)
        new = self.view.state(tp)
        assert new is not None
        event(f"AlterPartition: {reply.partitions[0].error.name}")
        if reply.partitions[0].error is ErrorCode.NONE and not moving:
            assert new.isr == isr and new.leader_epoch == state.leader_epoch
        self.seen[tp] = (new.leader_epoch, new.leader, new.isr)

    def _failover(self, controller_id: int) -> None:
        old = self.h
        new = Harness(self.view, [], controller_id=controller_id)
        new.up, new.brokers, new.next_epoch = old.up, old.brokers, old.next_epoch
        self.h = new
        new.elect()
        before = dict(self.view.nodes)
        old.feed(BrokerChange({}))  # the deposed controller sees every broker go...
        assert self.view.nodes == before  # ...and its writes change nothing

    def check(self) -> None:
        live = set(self.h.up)
        assignments = {
            (topic, p): a.replicas
            for topic, t in self.view.topics().items()
            for p, a in t.partitions.items()
        }
        deleting = self.view.marks()
        for tp, state in self.view.states().items():
            if tp[0] in deleting:
                continue  # frozen until deleted, as in Kafka
            assert set(state.isr) <= set(assignments[tp]) and state.isr, (tp, state)
            assert state.leader == NO_LEADER or (state.leader in live and state.leader in state.isr)
            assert state.leader == NO_LEADER or set(state.isr) <= live, (tp, state)
            seen = self.seen.get(tp)
            if seen is not None and (state.leader, state.isr) != seen[1:]:
                assert state.leader_epoch > seen[0], (tp, seen, state)
            assert seen is None or state.leader_epoch >= seen[0], (tp, seen, state)
            self.seen[tp] = (state.leader_epoch, state.leader, state.isr)
        believed: dict[tuple[tuple[str, int], int], int] = {}
        for broker_id in live:
            broker = self.h.brokers[broker_id]
            for tp in broker.leads():
                key = (tp, broker.partitions[tp].leader_epoch)
                assert key not in believed, (key, believed[key], broker_id)
                believed[key] = broker_id
        if set(BROKERS) <= live:
            assert not self.deleted & set(self.view.topics()), self.deleted
        self._check_reassignments(live, assignments, deleting)

    def _check_reassignments(
        self,
        live: set[int],
        assignments: dict[tuple[str, int], tuple[int, ...]],
        deleting: frozenset[str],
    ) -> None:
        moving = {
            tp: a
            for tp, a in reassignments_in_progress(self.view.topics()).items()
            if tp[0] not in deleting
        }
        for tp, a in moving.items():
            assert set(a.adding) | set(a.removing) <= set(a.replicas), (tp, a)
            assert not set(a.adding) & set(a.removing) and a.target_replicas(), (tp, a)
        context = self.h.controller.context
        assert context is not None
        assert {tp: a for tp, a in context.reassigning.items() if tp[0] not in deleting} == moving
        for broker_id in live:
            for tp in self.h.brokers[broker_id].partitions:
                if tp[0] not in deleting and tp in assignments:
                    assert broker_id in assignments[tp], (broker_id, tp, assignments[tp])


@settings(max_examples=300, deadline=None)
@given(steps)
def test_random_histories_keep_the_invariants(history: list[tuple]) -> None:
    world = World()
    for op in history:
        world.step(op)
        world.check()
    for broker_id in BROKERS:  # everyone back: every deletion completes
        if broker_id not in world.h.up:
            world.h.start(broker_id)
        world.check()
