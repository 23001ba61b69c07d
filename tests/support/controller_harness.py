"""Drive a pure ``Controller`` against a ``FakeZkView`` and fake brokers.

The harness plays the shell under the contract of
``moldau.cluster.controller.commands``: it applies the writes to the view,
feeds back ``ControllerMoved`` or ``PartitionStatesStale`` (dropping the
batch's requests), delivers broker requests to the brokers that are up, and
answers StopReplica-with-delete with ``StopReplicaResult`` when asked to.

Each fake broker keeps, per partition, the newest LeaderAndIsr it accepted
(by leader epoch, then partition epoch; a request of an older controller
epoch is ignored, as Kafka's brokers do) and drops it on StopReplica.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    AlterReassignmentsReply,
    CheckReassignments,
    Command,
    ControlledShutdownReply,
    CreatePartitionStates,
    DeleteTopic,
    ElectLeadersReply,
    LeaderAndIsr,
    ListReassignmentsReply,
    PartitionLeadership,
    RemoveDeletionMarks,
    RemoveZkReassignments,
    Reply,
    StopReplica,
    UpdateMetadata,
    UpdatePartitionState,
    UpdateTopicAssignment,
)
from moldau.cluster.controller.context import LiveBroker, TopicPartition
from moldau.cluster.controller.controller import Controller
from moldau.cluster.controller.events import (
    BrokerChange,
    ControlledShutdown,
    ControllerMoved,
    Event,
    PartitionModification,
    PartitionStatesStale,
    ReassignmentIsrChange,
    StopReplicaResult,
    TopicChange,
    TopicDeletion,
)
from moldau.cluster.zk.paths import Endpoint, PartitionState
from support.fake_zk_view import FakeZkView, Outcome

ZK_WRITES = (
    CreatePartitionStates,
    UpdatePartitionState,
    UpdateTopicAssignment,
    RemoveZkReassignments,
    DeleteTopic,
    RemoveDeletionMarks,
)
REPLIES = (
    ControlledShutdownReply,
    AlterPartitionReply,
    ElectLeadersReply,
    AlterReassignmentsReply,
    ListReassignmentsReply,
)


@dataclass
class FakeBroker:
    broker_id: int
    controller_epoch: int = 0
    partitions: dict[TopicPartition, PartitionLeadership] = field(default_factory=dict)
    metadata: dict[TopicPartition, PartitionLeadership] = field(default_factory=dict)
    received: list[Command] = field(default_factory=list)

    def accept(self, request: Command) -> list[TopicPartition]:
        """Apply a request; returns the partitions deleted (for StopReplicaResult)."""
        assert isinstance(request, LeaderAndIsr | UpdateMetadata | StopReplica)
        if request.controller_epoch < self.controller_epoch:
            return []
        self.controller_epoch = request.controller_epoch
        self.received.append(request)
        if isinstance(request, LeaderAndIsr):
            for p in request.partitions:
                tp = (p.topic, p.partition)
                known = self.partitions.get(tp)
                if known is None or (p.leader_epoch, p.partition_epoch) >= (
                    known.leader_epoch,
                    known.partition_epoch,
                ):
                    self.partitions[tp] = p
        elif isinstance(request, UpdateMetadata):
            for p in request.partitions:
                self.metadata[(p.topic, p.partition)] = p
        else:
            for s in request.partitions:
                self.partitions.pop((s.topic, s.partition), None)
            return [(s.topic, s.partition) for s in request.partitions if s.delete]
        return []

    def leads(self) -> set[TopicPartition]:
        return {tp for tp, p in self.partitions.items() if p.leader == self.broker_id}


def live_broker(broker_id: int, epoch: int, rack: str | None = None) -> LiveBroker:
    return LiveBroker(
        broker_id, epoch, (Endpoint("PLAINTEXT", "127.0.0.1", 9000 + broker_id),), rack
    )


class Harness:
    """One controller, one view, brokers that can go down and come back."""

    def __init__(self, view: FakeZkView, broker_ids: Iterable[int], controller_id: int = 1) -> None:
        self.view = view
        self.now_ms = 0
        self.next_epoch = 100
        self.up: dict[int, LiveBroker] = {}
        for b in broker_ids:
            self.up[b] = self._register(b)
        self.brokers = {b: FakeBroker(b) for b in self.up}
        self.controller = Controller(controller_id)
        self.ack_deletes = True
        self.commands: list[Command] = []
        self.replies: list[Reply] = []

    def _register(self, broker_id: int) -> LiveBroker:
        self.next_epoch += 1
        return live_broker(broker_id, self.next_epoch)

    # -- driving ---------------------------------------------------------------

    def elect(self) -> list[Command]:
        return self.feed(self.view.elected(self.up))

    def feed(self, event: Event) -> list[Command]:
        """Handle ``event`` and everything it leads to; returns every command."""
        issued: list[Command] = []
        pending: list[Event] = [event]
        while pending:
            self.now_ms += 1
            commands = self.controller.handle(pending.pop(0), self.now_ms)
            issued.extend(commands)
            follow_up = self._run(commands)
            pending[:0] = follow_up
        self.commands.extend(issued)
        return issued

    def _run(self, commands: list[Command]) -> list[Event]:
        stale: dict[TopicPartition, PartitionState | None] = {}
        for command in commands:
            if isinstance(command, ZK_WRITES):
                outcome = self.view.apply(command)
                if outcome is Outcome.MOVED:
                    return [ControllerMoved()]
                if outcome is Outcome.STALE:
                    stale.update({tp: self.view.state(tp) for tp in self.view.touched(command)})
        if stale:
            return [PartitionStatesStale(stale)]
        follow_up: list[Event] = []
        for command in commands:
            if isinstance(command, REPLIES):
                self.replies.append(command)
            elif isinstance(command, CheckReassignments):
                follow_up.append(ReassignmentIsrChange(command.partitions))
            elif not isinstance(command, ZK_WRITES) and command.broker_id in self.up:
                deleted = self.brokers[command.broker_id].accept(command)
                if deleted and self.ack_deletes:
                    follow_up.append(StopReplicaResult(command.broker_id, frozenset(deleted)))
        return follow_up

    # -- the world -------------------------------------------------------------

    def stop(self, broker_id: int) -> list[Command]:
        del self.up[broker_id]
        return self.feed(BrokerChange(dict(self.up)))

    def start(self, broker_id: int) -> list[Command]:
        self.up[broker_id] = self._register(broker_id)
        self.brokers[broker_id] = FakeBroker(broker_id)  # a restart forgets its cache
        return self.feed(BrokerChange(dict(self.up)))

    def create_topic(self, topic: str, replicas: list[list[int]]) -> list[Command]:
        assignment = self.view.create_topic(topic, replicas)
        topics = frozenset(self.view.topics())
        return self.feed(TopicChange(topics, {topic: assignment}))

    def add_partitions(self, topic: str, replicas: list[list[int]]) -> list[Command]:
        return self.feed(PartitionModification(topic, self.view.add_partitions(topic, replicas)))

    def delete_topic(self, topic: str) -> list[Command]:
        self.view.mark_for_deletion(topic)
        commands = self.feed(TopicDeletion(self.view.marks()))
        if topic not in self.view.topics():
            commands += self.feed(TopicChange(frozenset(self.view.topics()), {}))
        return commands

    def controlled_shutdown(
        self, broker_id: int, epoch: int | None = None
    ) -> ControlledShutdownReply:
        self.feed(
            ControlledShutdown(broker_id, self.up[broker_id].epoch if epoch is None else epoch)
        )
        reply = self.replies[-1]
        assert isinstance(reply, ControlledShutdownReply)
        return reply
