"""The controller's in-memory view of the cluster (Kafka: ControllerContext).

Pure. What the controller believes ZooKeeper holds, plus the state tables:
live brokers with their epochs, each topic's id and replica assignment, each
partition's leader, leader epoch, ISR and the version of its state znode,
the topics queued for deletion, and the controller's own epoch (with the
version of /controller_epoch that fences its writes).

The context is changed only by the controller, and only after it has
decided the ZooKeeper write that makes the same change: a write is
predicted to succeed (ZooKeeper bumps a znode's version by exactly one per
set, and a created znode has version 0), and a failed one is answered by
an event carrying the state re-read, which replaces the prediction.

A partition being reassigned has its full replica set (RS) in
``assignments`` and its whole ``ReplicaAssignment`` (with the adding and
removing replicas) in ``reassigning`` (Kafka: partitionsBeingReassigned and
partitionFullReplicaAssignment).

Where moldau departs from Kafka: no per-broker features, and topic configs
are reduced to the one the controller reads (unclean.leader.election.enable).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from moldau.cluster.controller.election import LeaderAndIsr
from moldau.cluster.controller.states import (
    PartitionState as PartitionPhase,
)
from moldau.cluster.controller.states import (
    ReplicaState,
    StateTable,
    partition_table,
    replica_table,
)
from moldau.cluster.zk.paths import (
    Endpoint,
    PartitionState,
    ReplicaAssignment,
    TopicAssignment,
)

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class LiveBroker:
    """A registered broker. ``epoch`` is the broker epoch, in ZooKeeper mode the
    czxid of its /brokers/ids/N znode: it grows with every registration, so a
    restarted broker is told apart from the one before it."""

    broker_id: int
    epoch: int
    endpoints: tuple[Endpoint, ...] = ()
    rack: str | None = None


def to_leader_and_isr(state: PartitionState) -> LeaderAndIsr:
    """The election view of a znode state; the znode version is the partition epoch."""
    return LeaderAndIsr(
        state.leader,
        state.leader_epoch,
        tuple(state.isr),
        state.leader_recovery_state,
        state.zk_version,
    )


@dataclass
class ControllerContext:
    """Everything the controller decides from. Mutable; owned by one Controller."""

    broker_id: int
    epoch: int
    epoch_zk_version: int
    unclean_default: bool = False
    brokers: dict[int, LiveBroker] = field(default_factory=dict)
    shutting_down: set[int] = field(default_factory=set)
    topic_ids: dict[str, uuid.UUID | None] = field(default_factory=dict)
    assignments: dict[TopicPartition, tuple[int, ...]] = field(default_factory=dict)
    leadership: dict[TopicPartition, PartitionState] = field(default_factory=dict)
    topics_to_delete: set[str] = field(default_factory=set)
    unclean_topics: dict[str, bool] = field(default_factory=dict)
    reassigning: dict[TopicPartition, ReplicaAssignment] = field(default_factory=dict)
    partitions: StateTable[TopicPartition, PartitionPhase] = field(default_factory=partition_table)
    replicas: StateTable[tuple[str, int, int], ReplicaState] = field(default_factory=replica_table)

    # -- brokers ---------------------------------------------------------------

    def live_ids(self) -> set[int]:
        """Brokers that may lead: registered and not shutting down (Kafka: liveBrokerIds)."""
        return set(self.brokers) - self.shutting_down

    def live_or_shutting_down(self) -> set[int]:
        return set(self.brokers)

    def broker_epoch(self, broker_id: int) -> int:
        return self.brokers[broker_id].epoch

    # -- topics ----------------------------------------------------------------

    def topics(self) -> set[str]:
        return set(self.topic_ids)

    def partitions_of(self, topic: str) -> list[TopicPartition]:
        return sorted(tp for tp in self.assignments if tp[0] == topic)

    def partitions_on(self, broker_ids: Iterable[int]) -> list[TopicPartition]:
        wanted = set(broker_ids)
        return sorted(tp for tp, replicas in self.assignments.items() if wanted & set(replicas))

    def add_partitions(self, topic: str, assignment: TopicAssignment) -> list[TopicPartition]:
        """Record the partitions of ``assignment`` not known yet; returns them."""
        self.topic_ids.setdefault(topic, assignment.topic_id)
        added = []
        for partition, replicas in sorted(assignment.partitions.items()):
            tp = (topic, partition)
            if tp not in self.assignments:
                self.assignments[tp] = tuple(replicas.replicas)
                if replicas.is_reassigning:
                    self.reassigning[tp] = replicas
                added.append(tp)
        return added

    def remove_topic(self, topic: str) -> None:
        """Forget a topic whose znodes are gone; its state-table entries must
        already be NonExistent (the tables forget those)."""
        for tp in self.partitions_of(topic):
            del self.assignments[tp]
            self.leadership.pop(tp, None)
            self.reassigning.pop(tp, None)
        self.topic_ids.pop(topic, None)
        self.topics_to_delete.discard(topic)
        self.unclean_topics.pop(topic, None)

    def full_assignment(self, tp: TopicPartition) -> ReplicaAssignment:
        """The replicas with, mid-reassignment, those being added and removed."""
        return self.reassigning.get(tp) or ReplicaAssignment(self.assignments[tp])

    def set_assignment(self, tp: TopicPartition, assignment: ReplicaAssignment) -> None:
        self.assignments[tp] = assignment.replicas
        if assignment.is_reassigning:
            self.reassigning[tp] = assignment
        else:
            self.reassigning.pop(tp, None)

    def unclean_allowed(self, topic: str) -> bool:
        return self.unclean_topics.get(topic, self.unclean_default)

    def is_deleting(self, tp: TopicPartition) -> bool:
        return tp[0] in self.topics_to_delete

    # -- partitions ------------------------------------------------------------

    def leader_of(self, tp: TopicPartition) -> int | None:
        state = self.leadership.get(tp)
        return None if state is None else state.leader

    def phase_for(self, tp: TopicPartition) -> PartitionPhase:
        """Online when led by a live broker, Offline when it has state but no
        live leader, New before its first state is written."""
        state = self.leadership.get(tp)
        if state is None:
            return PartitionPhase.NEW
        if state.leader in self.live_or_shutting_down():
            return PartitionPhase.ONLINE
        return PartitionPhase.OFFLINE

    def set_replica_states(
        self, replicas: Iterable[tuple[str, int, int]], target: ReplicaState
    ) -> None:
        self.replicas.move_all(replicas, target)

    def replicas_of(self, tp: TopicPartition) -> list[tuple[str, int, int]]:
        return [(tp[0], tp[1], b) for b in self.assignments[tp]]


def load_context(
    broker_id: int,
    epoch: int,
    epoch_zk_version: int,
    brokers: Mapping[int, LiveBroker],
    topics: Mapping[str, TopicAssignment],
    states: Mapping[TopicPartition, PartitionState],
    unclean_topics: Mapping[str, bool],
    unclean_default: bool,
) -> ControllerContext:
    """A new controller's context from what it read (Kafka:
    initializeControllerContext and the state machines' startup): partitions
    with a state are Online or Offline by their leader's liveness, the rest
    New; replicas are Online on live brokers and Offline elsewhere."""
    context = ControllerContext(
        broker_id,
        epoch,
        epoch_zk_version,
        unclean_default=unclean_default,
        brokers=dict(brokers),
        unclean_topics=dict(unclean_topics),
    )
    for topic, assignment in sorted(topics.items()):
        for tp in context.add_partitions(topic, assignment):
            if tp in states:
                context.leadership[tp] = states[tp]
            context.partitions.move(tp, PartitionPhase.NEW)
            if context.phase_for(tp) is not PartitionPhase.NEW:
                context.partitions.move(tp, context.phase_for(tp))
            for replica in context.replicas_of(tp):
                context.replicas.move(replica, ReplicaState.NEW)
                online = replica[2] in context.brokers
                context.replicas.move(
                    replica, ReplicaState.ONLINE if online else ReplicaState.OFFLINE
                )
    return context
