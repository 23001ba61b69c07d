"""What one controller event decided, and its rendering into commands
(Kafka: ControllerBrokerRequestBatch).

Pure. The controller records ZooKeeper writes as it decides them and broker
requests as intents (which broker should hear of which partition); the
requests are rendered from the context at the end of the event, so each
carries the final state of every partition it names, and a batch whose
write lost can be rendered again after the re-read (``merge_requests``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moldau.cluster.controller import alter_partition
from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    AlterPartitionResult,
    AlterReassignmentsReply,
    CheckReassignments,
    Command,
    ControlledShutdownReply,
    CreatePartitionStates,
    ElectionOutcome,
    ElectLeadersReply,
    Fence,
    LeaderAndIsr,
    ListReassignmentsReply,
    PartitionLeadership,
    ReassignmentOutcome,
    RemoveZkReassignments,
    StopReplica,
    StopReplicaPartition,
    UpdateMetadata,
    UpdateTopicAssignment,
    ZkWrite,
)
from moldau.cluster.controller.context import ControllerContext, TopicPartition
from moldau.cluster.controller.events import ElectionType
from moldau.cluster.zk.paths import LEADER_DURING_DELETE, PartitionState, ReplicaAssignment
from moldau.protocol.errors import ErrorCode


@dataclass(frozen=True)
class AlterReply:
    """An AlterPartition answer to render: per item its error, NONE meaning
    "answer from the state" (a lost write leaves the state different)."""

    broker_id: int
    error: ErrorCode
    items: tuple[tuple[alter_partition.AlterPartitionItem, ErrorCode], ...] = ()


@dataclass
class ElectReply:
    """An ElectLeaders answer to render: per partition its error and message.
    Mutable: after a lost write the controller elects those partitions again
    and replaces their outcome."""

    election_type: ElectionType
    outcomes: dict[TopicPartition, tuple[ErrorCode, str | None]]


@dataclass
class Batch:
    """What one event decided (Kafka: ControllerBrokerRequestBatch). Broker
    requests are intents, rendered from the context at the end, so they
    carry the final state of every partition they name."""

    creates: dict[str, dict[int, PartitionState]] = field(default_factory=dict)
    writes: list[ZkWrite] = field(default_factory=list)
    leader_and_isr: dict[int, dict[TopicPartition, bool]] = field(default_factory=dict)
    metadata_brokers: set[int] = field(default_factory=set)
    metadata_full: set[int] = field(default_factory=set)
    metadata_partitions: set[TopicPartition] = field(default_factory=set)
    stop: dict[int, dict[TopicPartition, bool]] = field(default_factory=dict)
    shutdown_replies: dict[int, ErrorCode] = field(default_factory=dict)
    alter_replies: list[AlterReply] = field(default_factory=list)
    elect_replies: list[ElectReply] = field(default_factory=list)
    topic_updates: dict[str, dict[int, ReplicaAssignment]] = field(default_factory=dict)
    reassign_replies: list[dict[TopicPartition, tuple[ErrorCode, str | None]]] = field(
        default_factory=list
    )
    list_replies: list[frozenset[TopicPartition] | None] = field(default_factory=list)
    reassignment_checks: set[TopicPartition] = field(default_factory=set)
    zk_reassignment_removals: dict[TopicPartition, tuple[int, ...] | None] = field(
        default_factory=dict
    )

    def zk_reassignment_done(self, tp: TopicPartition, target: tuple[int, ...] | None) -> None:
        """Take ``tp`` out of /admin/reassign_partitions (if its target there is
        ``target``; None: whatever it is)."""
        if self.zk_reassignment_removals.get(tp, ()) is not None:
            self.zk_reassignment_removals[tp] = target

    def lead_or_follow(self, broker_id: int, tp: TopicPartition, is_new: bool = False) -> None:
        wanted = self.leader_and_isr.setdefault(broker_id, {})
        wanted[tp] = wanted.get(tp, False) or is_new

    def merge_requests(self, other: Batch) -> None:
        """Take ``other``'s broker requests and replies (not its writes)."""
        for broker_id, tps in other.leader_and_isr.items():
            for tp, is_new in tps.items():
                self.lead_or_follow(broker_id, tp, is_new)
        self.metadata_brokers |= other.metadata_brokers
        self.metadata_full |= other.metadata_full
        self.metadata_partitions |= other.metadata_partitions
        for broker_id, stops in other.stop.items():
            self.stop.setdefault(broker_id, {}).update(stops)
        self.shutdown_replies = {**other.shutdown_replies, **self.shutdown_replies}
        self.alter_replies = [*other.alter_replies, *self.alter_replies]
        self.elect_replies = [*other.elect_replies, *self.elect_replies]
        self.reassign_replies = [*other.reassign_replies, *self.reassign_replies]
        self.list_replies = [*other.list_replies, *self.list_replies]
        self.reassignment_checks |= other.reassignment_checks


def fence(ctx: ControllerContext) -> Fence:
    return Fence(ctx.epoch, ctx.epoch_zk_version)


def render(ctx: ControllerContext, controller_id: int, batch: Batch) -> list[Command]:
    """The commands of a batch, in Kafka's order: writes (topic assignments
    before partition states), LeaderAndIsr, UpdateMetadata, StopReplica,
    then replies and the note to check reassignments; requests only to
    live brokers."""
    fence_ = fence(ctx)
    out: list[Command] = [
        CreatePartitionStates(fence_, topic, states)
        for topic, states in sorted(batch.creates.items())
    ]
    out.extend(
        UpdateTopicAssignment(fence_, topic, dict(sorted(parts.items())))
        for topic, parts in sorted(batch.topic_updates.items())
    )
    out.extend(batch.writes)
    removals = batch.zk_reassignment_removals
    if removals:
        out.append(RemoveZkReassignments(fence_, dict(sorted(removals.items()))))
    present = ctx.live_or_shutting_down()
    common = (controller_id, ctx.epoch)
    for broker_id, wanted in sorted(batch.leader_and_isr.items()):
        parts = tuple(
            _leadership(ctx, tp, is_new)
            for tp, is_new in sorted(wanted.items())
            if tp in ctx.leadership
            and tp in ctx.assignments
            and tp not in batch.stop.get(broker_id, {})
        )
        if broker_id in present and parts:
            leaders = sorted({p.leader for p in parts} & present)
            out.append(
                LeaderAndIsr(
                    broker_id,
                    *common,
                    ctx.broker_epoch(broker_id),
                    parts,
                    tuple(ctx.brokers[b] for b in leaders),
                )
            )
    brokers = tuple(ctx.brokers[b] for b in sorted(ctx.brokers))
    for broker_id in sorted((batch.metadata_brokers | batch.metadata_full) & present):
        tps = ctx.assignments if broker_id in batch.metadata_full else batch.metadata_partitions
        parts = tuple(
            _leadership(ctx, tp)
            for tp in sorted(tps)
            if tp in ctx.leadership and tp in ctx.assignments
        )
        out.append(UpdateMetadata(broker_id, *common, ctx.broker_epoch(broker_id), parts, brokers))
    for broker_id, stops in sorted(batch.stop.items()):
        if broker_id in present:
            out.append(
                StopReplica(
                    broker_id,
                    *common,
                    ctx.broker_epoch(broker_id),
                    tuple(_stop(ctx, tp, delete) for tp, delete in sorted(stops.items())),
                )
            )
    for broker_id, error in sorted(batch.shutdown_replies.items()):
        remaining = frozenset(
            tp
            for tp, replicas in ctx.assignments.items()
            if ctx.leader_of(tp) == broker_id and len(replicas) > 1 and not ctx.is_deleting(tp)
        )
        out.append(ControlledShutdownReply(broker_id, error, remaining))
    out.extend(_alter_reply(ctx, reply) for reply in batch.alter_replies)
    out.extend(_elect_reply(ctx, reply) for reply in batch.elect_replies)
    out.extend(
        AlterReassignmentsReply(
            tuple(ReassignmentOutcome(t, p, *outcome) for (t, p), outcome in sorted(reply.items()))
        )
        for reply in batch.reassign_replies
    )
    for asked in batch.list_replies:
        out.append(
            ListReassignmentsReply(
                {tp: a for tp, a in sorted(ctx.reassigning.items()) if asked is None or tp in asked}
            )
        )
    if batch.reassignment_checks:
        out.append(CheckReassignments(frozenset(batch.reassignment_checks)))
    return out


def _leadership(
    ctx: ControllerContext, tp: TopicPartition, is_new: bool = False
) -> PartitionLeadership:
    state = ctx.leadership[tp]
    replicas = ctx.assignments[tp]
    moving = ctx.reassigning.get(tp)
    return PartitionLeadership(
        topic=tp[0],
        partition=tp[1],
        controller_epoch=state.controller_epoch,
        leader=LEADER_DURING_DELETE if ctx.is_deleting(tp) else state.leader,
        leader_epoch=state.leader_epoch,
        isr=tuple(state.isr),
        partition_epoch=state.zk_version,
        replicas=replicas,
        offline_replicas=tuple(r for r in replicas if r not in ctx.brokers),
        leader_recovery_state=state.leader_recovery_state,
        is_new=is_new,
        topic_id=ctx.topic_ids.get(tp[0]),
        adding_replicas=() if moving is None else moving.adding,
        removing_replicas=() if moving is None else moving.removing,
    )


def _alter_reply(ctx: ControllerContext, reply: AlterReply) -> AlterPartitionReply:
    """An accepted item is answered from the state now known: after a lost
    write (re-read by ``PartitionStatesStale``) it no longer matches, and the
    leader gets INVALID_UPDATE_VERSION, as from Kafka."""
    results = []
    for item, error in reply.items:
        state = ctx.leadership.get((item.topic, item.partition))
        if error is ErrorCode.NONE and state is not None:
            if alter_partition.is_applied(state, reply.broker_id, item):
                results.append(
                    AlterPartitionResult(
                        item.topic,
                        item.partition,
                        ErrorCode.NONE,
                        state.leader,
                        state.leader_epoch,
                        tuple(state.isr),
                        state.zk_version,
                        state.leader_recovery_state,
                    )
                )
                continue
            error = ErrorCode.INVALID_UPDATE_VERSION
        results.append(AlterPartitionResult(item.topic, item.partition, error))
    return AlterPartitionReply(reply.broker_id, reply.error, tuple(results))


def _elect_reply(ctx: ControllerContext, reply: ElectReply) -> ElectLeadersReply:
    """A partition elected is answered with the leader it has now, which the
    handler waits to see in its metadata cache (Kafka's DelayedElectLeader)."""
    results = []
    for tp, (error, message) in sorted(reply.outcomes.items()):
        leader = ctx.leader_of(tp) if error is ErrorCode.NONE else None
        results.append(
            ElectionOutcome(tp[0], tp[1], error, message, -1 if leader is None else leader)
        )
    return ElectLeadersReply(tuple(results))


def _stop(ctx: ControllerContext, tp: TopicPartition, delete: bool) -> StopReplicaPartition:
    """Kafka sends the leader epoch, or EpochDuringDelete (-2) for a deletion."""
    state = ctx.leadership.get(tp)
    epoch = LEADER_DURING_DELETE if delete or state is None else state.leader_epoch
    return StopReplicaPartition(tp[0], tp[1], epoch, delete)
