"""The controller as a pure state machine: ``handle(event, now_ms) -> commands``.

Kafka's KafkaController, PartitionStateMachine, ReplicaStateMachine and
TopicDeletionManager in one event handler over a ``ControllerContext``. The
shell (ZooKeeper watches, broker channels) feeds events and runs the
commands, under the contract written in ``commands``.

The heart is ``_reconcile``: given a partition's state and the live
brokers, the one next state Kafka's controller would write, or none.

- No state yet (a new partition): the first live replicas lead, all live
  replicas in the ISR, leader epoch 0 (Kafka: NewPartition -> OnlinePartition).
- Leader gone: elect from the live ISR, or with the topic's
  unclean.leader.election.enable from any live replica (OfflinePartition ->
  OnlinePartition); leader shutting down: the controlled-shutdown election.
- Otherwise, or when no one can be elected: drop dead brokers (and
  shutting-down followers) from the ISR, the leader becoming -1 if it is
  dead, but never empty the ISR: its last member stays (Kafka's
  removeReplicasFromIsr, OfflineReplica). Every change bumps the leader
  epoch, as Kafka's ``newLeaderAndIsr`` does.

Reconciling is idempotent, so the controller can run it over every
partition on a broker change or a failover and write only what changed.

Where moldau departs from Kafka:

- Replicas of a new partition on a dead broker start Offline rather than
  Online (Kafka marks them Online and skips the request at send time).
- When several ISR members die at once, one write drops them all (Kafka
  writes once per dead broker, each bumping the leader epoch); if none is
  left, the ISR keeps the old leader if it was in it, else its first member.
- A replica deletion is one StopReplica with delete (Kafka first sends one
  without delete, then one with).
- No reassignment, preferred-leader election or auto rebalance yet; ``now_ms``
  is taken for the timers those need and read by no rule today.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from moldau.cluster.controller import alter_partition, election
from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    AlterPartitionResult,
    Command,
    ControlledShutdownReply,
    CreatePartitionStates,
    DeleteTopic,
    Fence,
    LeaderAndIsr,
    PartitionLeadership,
    RemoveDeletionMarks,
    StopReplica,
    StopReplicaPartition,
    UpdateMetadata,
    UpdatePartitionState,
    ZkWrite,
)
from moldau.cluster.controller.context import (
    ControllerContext,
    LiveBroker,
    TopicPartition,
    load_context,
    to_leader_and_isr,
)
from moldau.cluster.controller.events import (
    AlterPartition,
    BrokerChange,
    ControlledShutdown,
    ControllerElected,
    ControllerMoved,
    Event,
    IsrChangeNotification,
    PartitionModification,
    PartitionStatesStale,
    StopReplicaResult,
    TopicChange,
    TopicDeletion,
    UncleanLeaderElectionEnable,
)
from moldau.cluster.controller.states import PartitionState as Phase
from moldau.cluster.controller.states import ReplicaState
from moldau.cluster.zk.paths import (
    LEADER_DURING_DELETE,
    NO_LEADER,
    PartitionState,
    TopicAssignment,
)
from moldau.protocol.errors import ErrorCode

#: Kafka's AbstractControlRequest.UNKNOWN_BROKER_EPOCH: an old client's
#: ControlledShutdown carries no epoch and is not checked.
UNKNOWN_BROKER_EPOCH = -1


@dataclass(frozen=True)
class _AlterReply:
    broker_id: int
    error: ErrorCode
    items: tuple[tuple[alter_partition.AlterPartitionItem, ErrorCode], ...] = ()


@dataclass
class _Batch:
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
    #: AlterPartition answers: broker, request error, and per item its error
    #: (None: rendered from the state, which a failed write leaves different)
    alter_replies: list[_AlterReply] = field(default_factory=list)

    def lead_or_follow(self, broker_id: int, tp: TopicPartition, is_new: bool = False) -> None:
        wanted = self.leader_and_isr.setdefault(broker_id, {})
        wanted[tp] = wanted.get(tp, False) or is_new

    def merge_requests(self, other: _Batch) -> None:
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


class Controller:
    """One broker's controller: inactive until ``ControllerElected``, inactive
    again (issuing nothing) once it learns it was deposed."""

    def __init__(self, broker_id: int, *, unclean_default: bool = False) -> None:
        self.broker_id = broker_id
        self.unclean_default = unclean_default
        self.context: ControllerContext | None = None
        self._last = _Batch()

    @property
    def active(self) -> bool:
        return self.context is not None

    def known_topics(self) -> frozenset[str]:
        """The topics in the context, for the shell to build ``TopicChange``."""
        return frozenset() if self.context is None else frozenset(self.context.topics())

    def handle(self, event: Event, now_ms: int) -> list[Command]:
        """React to one event; an inactive controller answers nothing."""
        if isinstance(event, ControllerElected):
            self.context = load_context(
                self.broker_id,
                event.epoch,
                event.epoch_zk_version,
                event.brokers,
                event.topics,
                event.states,
                event.unclean_topics,
                self.unclean_default,
            )
        elif isinstance(event, ControllerMoved):
            self.context = None
        if self.context is None:
            return []
        batch = _Batch()
        self._dispatch(self.context, event, batch)
        self._last = batch
        return self._render(self.context, batch)

    def _dispatch(self, ctx: ControllerContext, event: Event, batch: _Batch) -> None:
        if isinstance(event, ControllerElected):
            self._on_elected(ctx, event, batch)
        elif isinstance(event, BrokerChange):
            self._on_broker_change(ctx, event.brokers, batch)
        elif isinstance(event, TopicChange):
            self._on_topic_change(ctx, event, batch)
        elif isinstance(event, PartitionModification):
            if event.topic in ctx.topics() and event.topic not in ctx.topics_to_delete:
                self._new_partitions(ctx, event.topic, event.assignment, batch)
        elif isinstance(event, TopicDeletion):
            self._on_topic_deletion(ctx, event.topics, batch)
        elif isinstance(event, IsrChangeNotification):
            self._on_isr_change(ctx, event, batch)
        elif isinstance(event, ControlledShutdown):
            self._on_controlled_shutdown(ctx, event, batch)
        elif isinstance(event, AlterPartition):
            self._on_alter_partition(ctx, event, batch)
        elif isinstance(event, PartitionStatesStale):
            self._on_stale(ctx, event, batch)
        elif isinstance(event, StopReplicaResult):
            self._on_stop_replica_result(ctx, event, batch)
        elif isinstance(event, UncleanLeaderElectionEnable):
            if event.enabled is None:
                ctx.unclean_topics.pop(event.topic, None)
            else:
                ctx.unclean_topics[event.topic] = event.enabled
            for tp in ctx.partitions_of(event.topic):
                self._reconcile(ctx, tp, batch)

    # -- events ----------------------------------------------------------------

    def _on_elected(self, ctx: ControllerContext, event: ControllerElected, batch: _Batch) -> None:
        """Kafka's onControllerFailover: finish deletions, repair every
        partition, then tell every broker everything."""
        self._on_topic_deletion(ctx, event.marked_for_deletion, batch)
        batch.metadata_full |= ctx.live_or_shutting_down()
        for tp in sorted(ctx.assignments):
            if not ctx.is_deleting(tp):
                self._reconcile(ctx, tp, batch)
                self._announce(ctx, tp, batch)

    def _on_broker_change(
        self, ctx: ControllerContext, now: Mapping[int, LiveBroker], batch: _Batch
    ) -> None:
        old = ctx.brokers
        bounced = {b for b in old if b in now and now[b].epoch != old[b].epoch}
        failed = {b for b in old if b not in now} | bounced
        started = {b: now[b] for b in now if b not in old or b in bounced}
        if failed:
            self._brokers_failed(ctx, failed, batch)
        if started:
            self._brokers_started(ctx, started, batch)

    def _brokers_failed(self, ctx: ControllerContext, failed: set[int], batch: _Batch) -> None:
        """Kafka's onBrokerFailure: the replicas go Offline (or, mid-deletion,
        ineligible until the broker returns), then every partition is repaired."""
        for broker_id in failed:
            ctx.brokers.pop(broker_id, None)
            ctx.shutting_down.discard(broker_id)
        for tp in ctx.partitions_on(failed):
            for replica in ctx.replicas_of(tp):
                if replica[2] not in failed:
                    continue
                state = ctx.replicas.get(replica)
                if not ctx.is_deleting(tp):
                    ctx.replicas.move(replica, ReplicaState.OFFLINE)
                elif state is ReplicaState.DELETION_STARTED:
                    ctx.replicas.move(replica, ReplicaState.DELETION_INELIGIBLE)
        for tp in sorted(ctx.assignments):
            self._reconcile(ctx, tp, batch)
        batch.metadata_brokers |= ctx.live_or_shutting_down()

    def _brokers_started(
        self, ctx: ControllerContext, started: dict[int, LiveBroker], batch: _Batch
    ) -> None:
        """Kafka's onBrokerStartup: everyone learns the broker list, the new
        brokers learn every partition and their own replicas, offline and new
        partitions elect, and waiting deletions resume."""
        ctx.brokers.update(started)
        batch.metadata_brokers |= ctx.live_or_shutting_down()
        batch.metadata_full |= set(started)
        resumed: set[str] = set()
        for tp in ctx.partitions_on(started):
            if ctx.is_deleting(tp):
                resumed.add(tp[0])
                continue
            for replica in ctx.replicas_of(tp):
                if replica[2] in started:
                    ctx.replicas.move(replica, ReplicaState.ONLINE)
                    batch.lead_or_follow(replica[2], tp)
        for tp in sorted(ctx.assignments):
            self._reconcile(ctx, tp, batch)
        for topic in sorted(resumed):
            self._delete_replicas(ctx, topic, batch)

    def _on_topic_change(self, ctx: ControllerContext, event: TopicChange, batch: _Batch) -> None:
        for topic in sorted(ctx.topics() - event.topics):
            self._forget_topic(ctx, topic)
        for topic, assignment in sorted(event.added.items()):
            if topic in ctx.topics():
                continue
            if topic in event.unclean_topics:
                ctx.unclean_topics[topic] = event.unclean_topics[topic]
            self._new_partitions(ctx, topic, assignment, batch)

    def _new_partitions(
        self, ctx: ControllerContext, topic: str, assignment: TopicAssignment, batch: _Batch
    ) -> None:
        """Kafka's onNewPartitionCreation, for a new topic or added partitions."""
        for tp in ctx.add_partitions(topic, assignment):
            for replica in ctx.replicas_of(tp):
                ctx.replicas.move(replica, ReplicaState.NEW)
                online = replica[2] in ctx.live_or_shutting_down()
                ctx.replicas.move(replica, ReplicaState.ONLINE if online else ReplicaState.OFFLINE)
            ctx.partitions.move(tp, Phase.NEW)
            self._reconcile(ctx, tp, batch)

    def _forget_topic(self, ctx: ControllerContext, topic: str) -> None:
        """A topic znode vanished without a deletion through the controller."""
        for tp in ctx.partitions_of(topic):
            ctx.partitions.forget(tp)
            for replica in ctx.replicas_of(tp):
                ctx.replicas.forget(replica)
        ctx.remove_topic(topic)

    def _on_topic_deletion(
        self, ctx: ControllerContext, marked: frozenset[str], batch: _Batch
    ) -> None:
        unknown = marked - ctx.topics()
        if unknown:
            batch.writes.append(RemoveDeletionMarks(_fence(ctx), frozenset(unknown)))
        for topic in sorted(marked & ctx.topics() - ctx.topics_to_delete):
            self._start_deletion(ctx, topic, batch)

    def _start_deletion(self, ctx: ControllerContext, topic: str, batch: _Batch) -> None:
        """Kafka's onTopicDeletion: the partitions leave (brokers see leader -2
        in UpdateMetadata), then every replica is deleted."""
        ctx.topics_to_delete.add(topic)
        for tp in ctx.partitions_of(topic):
            if ctx.partitions.get(tp) is not Phase.OFFLINE:
                ctx.partitions.move(tp, Phase.OFFLINE)
            ctx.partitions.move(tp, Phase.NON_EXISTENT)
            batch.metadata_partitions.add(tp)
        batch.metadata_brokers |= ctx.live_or_shutting_down()
        self._delete_replicas(ctx, topic, batch)

    def _delete_replicas(self, ctx: ControllerContext, topic: str, batch: _Batch) -> None:
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
        self._maybe_complete_deletion(ctx, topic, batch)

    def _maybe_complete_deletion(self, ctx: ControllerContext, topic: str, batch: _Batch) -> None:
        """Kafka's completeDeleteTopic, once every replica is deleted."""
        replicas = [r for tp in ctx.partitions_of(topic) for r in ctx.replicas_of(tp)]
        if all(ctx.replicas.get(r) is ReplicaState.DELETION_SUCCESSFUL for r in replicas):
            ctx.replicas.move_all(replicas, ReplicaState.NON_EXISTENT)
            batch.writes.append(DeleteTopic(_fence(ctx), topic))
            ctx.remove_topic(topic)

    def _on_stop_replica_result(
        self, ctx: ControllerContext, event: StopReplicaResult, batch: _Batch
    ) -> None:
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
            self._maybe_complete_deletion(ctx, topic, batch)

    def _on_isr_change(
        self, ctx: ControllerContext, event: IsrChangeNotification, batch: _Batch
    ) -> None:
        """A leader wrote a new ISR: take it (unless older than what the
        controller knows), tell every broker, and repair it if needed."""
        for tp, state in sorted(event.states.items()):
            if tp not in ctx.assignments or ctx.is_deleting(tp):
                continue
            known = ctx.leadership.get(tp)
            if known is not None and state.zk_version < known.zk_version:
                continue
            ctx.leadership[tp] = state
            batch.metadata_partitions.add(tp)
            batch.metadata_brokers |= ctx.live_or_shutting_down()
            self._reconcile(ctx, tp, batch)

    def _on_controlled_shutdown(
        self, ctx: ControllerContext, event: ControlledShutdown, batch: _Batch
    ) -> None:
        """Kafka's doControlledShutdown: move the leaderships the broker holds,
        stop and drop it from the ISR where it follows; partitions with one
        replica are left alone."""
        broker_id = event.broker_id
        if broker_id not in ctx.brokers:
            batch.shutdown_replies[broker_id] = ErrorCode.BROKER_NOT_AVAILABLE
            return
        if UNKNOWN_BROKER_EPOCH != event.broker_epoch < ctx.broker_epoch(broker_id):
            batch.shutdown_replies[broker_id] = ErrorCode.STALE_BROKER_EPOCH
            return
        ctx.shutting_down.add(broker_id)
        for tp in ctx.partitions_on([broker_id]):
            if ctx.is_deleting(tp) or len(ctx.assignments[tp]) < 2:
                continue
            if ctx.leader_of(tp) != broker_id:
                ctx.replicas.move((tp[0], tp[1], broker_id), ReplicaState.OFFLINE)
                batch.stop.setdefault(broker_id, {})[tp] = False
            self._reconcile(ctx, tp, batch)
        batch.shutdown_replies[broker_id] = ErrorCode.NONE

    def _on_alter_partition(
        self, ctx: ControllerContext, event: AlterPartition, batch: _Batch
    ) -> None:
        """A leader's ISR change: check it (``alter_partition``), write it
        conditionally, tell every broker, answer with the state written."""
        broker_id = event.broker_id
        if broker_id not in ctx.brokers or ctx.broker_epoch(broker_id) != event.broker_epoch:
            batch.alter_replies.append(_AlterReply(broker_id, ErrorCode.STALE_BROKER_EPOCH))
            return
        items = []
        for item in event.partitions:
            tp = (item.topic, item.partition)
            known = tp in ctx.assignments and not ctx.is_deleting(tp)
            current = ctx.leadership.get(tp) if known else None
            replicas = ctx.assignments.get(tp, ())
            error = alter_partition.check(current, replicas, ctx.live_ids(), broker_id, item)
            if error is None:
                assert current is not None  # check() answers a missing state
                state = PartitionState(
                    broker_id,
                    item.leader_epoch,
                    item.isr,
                    ctx.epoch,
                    item.leader_recovery_state,
                    current.zk_version,
                )
                batch.writes.append(UpdatePartitionState(_fence(ctx), tp[0], tp[1], state))
                ctx.leadership[tp] = replace(state, zk_version=current.zk_version + 1)
                batch.metadata_partitions.add(tp)
                batch.metadata_brokers |= ctx.live_or_shutting_down()
                error = ErrorCode.NONE
            items.append((item, error))
        batch.alter_replies.append(_AlterReply(broker_id, ErrorCode.NONE, tuple(items)))

    def _on_stale(self, ctx: ControllerContext, event: PartitionStatesStale, batch: _Batch) -> None:
        """Writes of the last batch lost to a newer znode: take what is there,
        decide again, and re-send everything the last batch would have sent."""
        for tp, state in sorted(event.states.items()):
            if tp not in ctx.assignments:
                continue
            if state is None:
                ctx.leadership.pop(tp, None)
            else:
                ctx.leadership[tp] = state
            self._reconcile(ctx, tp, batch)
            batch.metadata_partitions.add(tp)
        batch.merge_requests(self._last)

    # -- one partition ---------------------------------------------------------

    def _reconcile(self, ctx: ControllerContext, tp: TopicPartition, batch: _Batch) -> None:
        """Write the partition's next state if it needs one (see the module doc)."""
        if ctx.is_deleting(tp):
            return
        current = ctx.leadership.get(tp)
        if current is None:
            first = election.initial(ctx.assignments[tp], ctx.live_ids())
            if first is None:
                return  # stays New until a replica's broker is live
            state = PartitionState(
                first.leader, first.leader_epoch, first.isr, ctx.epoch, zk_version=0
            )
            batch.creates.setdefault(tp[0], {})[tp[1]] = replace(state, zk_version=-1)
            ctx.leadership[tp] = state
            self._announce(ctx, tp, batch, is_new=True)
        else:
            target = _next_state(ctx, tp, to_leader_and_isr(current))
            if target is not None:
                state = PartitionState(
                    target.leader,
                    target.leader_epoch,
                    target.isr,
                    ctx.epoch,
                    target.leader_recovery_state,
                    current.zk_version,
                )
                batch.writes.append(UpdatePartitionState(_fence(ctx), tp[0], tp[1], state))
                ctx.leadership[tp] = replace(state, zk_version=current.zk_version + 1)
                self._announce(ctx, tp, batch)
        ctx.partitions.move(tp, ctx.phase_for(tp))

    def _announce(
        self, ctx: ControllerContext, tp: TopicPartition, batch: _Batch, is_new: bool = False
    ) -> None:
        """LeaderAndIsr to the replicas (but a replica being stopped gets only
        its StopReplica), UpdateMetadata to every broker."""
        for broker_id in ctx.assignments[tp]:
            batch.lead_or_follow(broker_id, tp, is_new)
        batch.metadata_partitions.add(tp)
        batch.metadata_brokers |= ctx.live_or_shutting_down()

    # -- rendering -------------------------------------------------------------

    def _render(self, ctx: ControllerContext, batch: _Batch) -> list[Command]:
        fence = _fence(ctx)
        out: list[Command] = [
            CreatePartitionStates(fence, topic, states)
            for topic, states in sorted(batch.creates.items())
        ]
        out.extend(batch.writes)
        present = ctx.live_or_shutting_down()
        common = (self.broker_id, ctx.epoch)
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
            out.append(
                UpdateMetadata(broker_id, *common, ctx.broker_epoch(broker_id), parts, brokers)
            )
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
        return out


def _fence(ctx: ControllerContext) -> Fence:
    return Fence(ctx.epoch, ctx.epoch_zk_version)


def _next_state(
    ctx: ControllerContext, tp: TopicPartition, current: election.LeaderAndIsr
) -> election.LeaderAndIsr | None:
    replicas = ctx.assignments[tp]
    live, present, leaving = ctx.live_ids(), ctx.live_or_shutting_down(), ctx.shutting_down
    if current.leader not in live:
        if current.leader in leaving:
            result = election.controlled_shutdown(replicas, current, present, leaving)
        else:
            result = election.offline(
                replicas, current, live, unclean_allowed=ctx.unclean_allowed(tp[0])
            )
        if result.leader_and_isr is not None:
            return result.leader_and_isr
    leader = current.leader if current.leader in present else NO_LEADER
    isr = tuple(
        r for r in current.isr if r in present and (r not in leaving or r == leader)
    ) or _last_standing(current)
    if leader == current.leader and isr == current.isr:
        return None
    return current.with_leader(leader, isr)


def _last_standing(current: election.LeaderAndIsr) -> tuple[int, ...]:
    """The ISR is never emptied: the member that stays when all are gone."""
    return (current.leader,) if current.leader in current.isr else current.isr[:1]


def _leadership(
    ctx: ControllerContext, tp: TopicPartition, is_new: bool = False
) -> PartitionLeadership:
    state = ctx.leadership[tp]
    replicas = ctx.assignments[tp]
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
    )


def _alter_reply(ctx: ControllerContext, reply: _AlterReply) -> AlterPartitionReply:
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


def _stop(ctx: ControllerContext, tp: TopicPartition, delete: bool) -> StopReplicaPartition:
    """Kafka sends the leader epoch, or EpochDuringDelete (-2) for a deletion."""
    state = ctx.leadership.get(tp)
    epoch = LEADER_DURING_DELETE if delete or state is None else state.leader_epoch
    return StopReplicaPartition(tp[0], tp[1], epoch, delete)
