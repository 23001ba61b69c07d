"""Topic deletion (Kafka: TopicDeletionManager), as functions over the context.

Pure. A topic marked under /admin/delete_topics leaves the brokers' metadata
at once (leader -2 in UpdateMetadata), then each replica is deleted with a
StopReplica; a replica whose broker is down waits (DeletionIneligible) and
is retried when its broker registers again; once every replica answered,
the topic's znodes go, the deletion mark last. Until then the controller
changes nothing else of the topic.
"""

from __future__ import annotations

from moldau.cluster.controller.batch import Batch, fence
from moldau.cluster.controller.commands import DeleteTopic, RemoveDeletionMarks
from moldau.cluster.controller.context import ControllerContext
from moldau.cluster.controller.events import StopReplicaResult
from moldau.cluster.controller.states import PartitionState as Phase
from moldau.cluster.controller.states import ReplicaState


def on_topic_deletion(ctx: ControllerContext, marked: frozenset[str], batch: Batch) -> None:
    unknown = marked - ctx.topics()
    if unknown:
        batch.writes.append(RemoveDeletionMarks(fence(ctx), frozenset(unknown)))
    for topic in sorted(marked & ctx.topics() - ctx.topics_to_delete):
        start_deletion(ctx, topic, batch)


def start_deletion(ctx: ControllerContext, topic: str, batch: Batch) -> None:
    """Kafka's onTopicDeletion: the partitions leave (brokers see leader -2
    in UpdateMetadata), then every replica is deleted."""
    ctx.topics_to_delete.add(topic)
    for tp in ctx.partitions_of(topic):
        if ctx.partitions.get(tp) is not Phase.OFFLINE:
            ctx.partitions.move(tp, Phase.OFFLINE)
        ctx.partitions.move(tp, Phase.NON_EXISTENT)
        batch.metadata_partitions.add(tp)
    batch.metadata_brokers |= ctx.live_or_shutting_down()
    delete_replicas(ctx, topic, batch)


def delete_replicas(ctx: ControllerContext, topic: str, batch: Batch) -> None:
    """Kafka's onPartitionDeletion: StopReplica with delete to replicas on
    live brokers; those on dead brokers wait (DeletionIneligible) until
    their broker returns."""
    present = ctx.live_or_shutting_down()
    for tp in ctx.partitions_of(topic):
        for replica in ctx.replicas_of(tp):
            state = ctx.replicas.get(replica)
            if state in (ReplicaState.DELETION_STARTED, ReplicaState.DELETION_SUCCESSFUL):
                continue
            if state is not ReplicaState.OFFLINE:
                ctx.replicas.move(replica, ReplicaState.OFFLINE)
            if replica[2] in present:
                ctx.replicas.move(replica, ReplicaState.DELETION_STARTED)
                batch.stop.setdefault(replica[2], {})[tp] = True
            else:
                ctx.replicas.move(replica, ReplicaState.DELETION_INELIGIBLE)
    maybe_complete_deletion(ctx, topic, batch)


def maybe_complete_deletion(ctx: ControllerContext, topic: str, batch: Batch) -> None:
    """Kafka's completeDeleteTopic, once every replica is deleted."""
    replicas = [r for tp in ctx.partitions_of(topic) for r in ctx.replicas_of(tp)]
    if all(ctx.replicas.get(r) is ReplicaState.DELETION_SUCCESSFUL for r in replicas):
        ctx.replicas.move_all(replicas, ReplicaState.NON_EXISTENT)
        batch.writes.append(DeleteTopic(fence(ctx), topic))
        ctx.remove_topic(topic)


def on_stop_replica_result(ctx: ControllerContext, event: StopReplicaResult, batch: Batch) -> None:
    topics = set()
    for tp in sorted(event.partitions | event.failed):
        replica = (tp[0], tp[1], event.broker_id)
        if not ctx.is_deleting(tp) or ctx.replicas.get(replica) is not (
            ReplicaState.DELETION_STARTED
        ):
            continue
        failed = tp in event.failed
        ctx.replicas.move(
            replica,
            ReplicaState.DELETION_INELIGIBLE if failed else ReplicaState.DELETION_SUCCESSFUL,
        )
        topics.add(tp[0])
    for topic in sorted(topics):
        maybe_complete_deletion(ctx, topic, batch)
