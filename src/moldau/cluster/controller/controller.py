"""The controller as a pure state machine: ``handle(event, now_ms) -> commands``.

Kafka's KafkaController, PartitionStateMachine and ReplicaStateMachine in
one event handler over a ``ControllerContext``; topic deletion (Kafka's
TopicDeletionManager) is in ``deletion``, the request batch in ``batch``.
The shell (ZooKeeper watches, broker channels) feeds events and runs the
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

Reassignment (KIP-455; Kafka's onPartitionReassignment, the rules in
``reassignment``): an operator's target (AlterPartitionReassignments) is
written to the topic znode as RS with the adding and removing replicas,
the leader epoch is bumped and every replica of RS told (the adding ones as
new replicas), and the partition's ISR changes (AlterPartition, ISR change
notifications) ask for ``ReassignmentIsrChange``. Once every target
replica is in the ISR: the replicas become the target, the leader moves to
a live, in-sync target replica if it is not one, the removed replicas leave
the ISR and are stopped and deleted, the topic znode is rewritten. A cancel
returns to the original replicas the same way; a new target replaces the
old at once (replicas only the old one added are deleted). A new
controller resumes every reassignment it finds in the topic znodes.
Kafka's legacy /admin/reassign_partitions is served too: its targets start
when it is created, each partition leaves it when its reassignment
completes or an operator's request takes it over, and it is deleted once
empty.
Where moldau departs from Kafka: completing writes the partition state once
(Kafka writes it for the leader move, then once per replica removed), a
topic marked for deletion mid-reassignment is deleted at once (Kafka
waits for the reassignment), and the targets of /admin/reassign_partitions
are checked as an operator's request's are (Kafka takes an empty one).

Leader elections an operator asks for (ElectLeaders; Kafka's
onReplicaElection) and the auto rebalance (``rebalance``) write and announce
their state as ``_reconcile`` does. The auto-rebalance timer is the one rule
that reads ``now_ms``: the controller keeps the deadline
(``next_check_ms``) and the shell feeds ``LeaderImbalanceCheck`` when it
is due.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from moldau.cluster.controller import alter_partition, deletion, election, reassignment, rebalance
from moldau.cluster.controller.batch import AlterReply, Batch, ElectReply, fence, render
from moldau.cluster.controller.commands import (
    Command,
    Fence,
    UpdatePartitionState,
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
    AlterReassignments,
    BrokerChange,
    ControlledShutdown,
    ControllerElected,
    ControllerMoved,
    ElectionType,
    ElectLeaders,
    Event,
    IsrChangeNotification,
    LeaderImbalanceCheck,
    ListReassignments,
    PartitionModification,
    PartitionStatesStale,
    ReassignmentIsrChange,
    StopReplicaResult,
    TopicChange,
    TopicDeletion,
    UncleanLeaderElectionEnable,
    ZkPartitionReassignment,
)
from moldau.cluster.controller.states import PartitionState as Phase
from moldau.cluster.controller.states import ReplicaState
from moldau.cluster.zk.paths import (
    NO_LEADER,
    PartitionState,
    ReplicaAssignment,
    TopicAssignment,
)
from moldau.protocol.errors import ErrorCode

#: Kafka's AbstractControlRequest.UNKNOWN_BROKER_EPOCH: an old client's
#: ControlledShutdown carries no epoch and is not checked.
UNKNOWN_BROKER_EPOCH = -1


class Controller:
    """One broker's controller: inactive until ``ControllerElected``, inactive
    again (issuing nothing) once it learns it was deposed."""

    def __init__(
        self,
        broker_id: int,
        *,
        unclean_default: bool = False,
        rebalance_config: rebalance.RebalanceConfig | None = None,
    ) -> None:
        self.broker_id = broker_id
        self.unclean_default = unclean_default
        self.rebalance = rebalance_config or rebalance.RebalanceConfig()
        self.context: ControllerContext | None = None
        self._last = Batch()
        self._next_check_ms: int | None = None

    @property
    def next_check_ms(self) -> int | None:
        """When the shell should feed ``LeaderImbalanceCheck`` next; None while
        inactive or with the auto rebalance disabled."""
        return self._next_check_ms

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
            if self.rebalance.enabled:
                self._next_check_ms = now_ms + rebalance.FIRST_CHECK_DELAY_MS
        elif isinstance(event, ControllerMoved):
            self.context = None
        if self.context is None:
            self._next_check_ms = None
            return []
        if isinstance(event, LeaderImbalanceCheck):
            due = self._next_check_ms
            if due is None or now_ms < due:
                return []
            self._next_check_ms = now_ms + self.rebalance.interval_ms
        batch = Batch()
        self._dispatch(self.context, event, batch)
        self._last = batch
        return render(self.context, self.broker_id, batch)

    def _dispatch(self, ctx: ControllerContext, event: Event, batch: Batch) -> None:
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
            deletion.on_topic_deletion(ctx, event.topics, batch)
        elif isinstance(event, IsrChangeNotification):
            self._on_isr_change(ctx, event, batch)
        elif isinstance(event, ControlledShutdown):
            self._on_controlled_shutdown(ctx, event, batch)
        elif isinstance(event, AlterPartition):
            self._on_alter_partition(ctx, event, batch)
        elif isinstance(event, PartitionStatesStale):
            self._on_stale(ctx, event, batch)
        elif isinstance(event, StopReplicaResult):
            deletion.on_stop_replica_result(ctx, event, batch)
        elif isinstance(event, UncleanLeaderElectionEnable):
            if event.enabled is None:
                ctx.unclean_topics.pop(event.topic, None)
            else:
                ctx.unclean_topics[event.topic] = event.enabled
            for tp in ctx.partitions_of(event.topic):
                self._reconcile(ctx, tp, batch)
        elif isinstance(event, ElectLeaders):
            self._on_elect_leaders(ctx, event, batch)
        elif isinstance(event, LeaderImbalanceCheck):
            self._on_imbalance_check(ctx, batch)
        elif isinstance(event, AlterReassignments):
            self._on_alter_reassignments(ctx, event, batch)
        elif isinstance(event, ListReassignments):
            batch.list_replies.append(event.partitions)
        elif isinstance(event, ZkPartitionReassignment):
            outcomes = self._start_reassignments(ctx, event.targets, batch)
            for tp, (error, _) in outcomes.items():
                if error is not ErrorCode.NONE:
                    batch.zk_reassignment_done(tp, None)
        elif isinstance(event, ReassignmentIsrChange):
            self._on_reassignment_isr_change(ctx, event, batch)

    # -- events ----------------------------------------------------------------

    def _on_elected(self, ctx: ControllerContext, event: ControllerElected, batch: Batch) -> None:
        """Kafka's onControllerFailover: finish deletions, repair every
        partition, then tell every broker everything."""
        deletion.on_topic_deletion(ctx, event.marked_for_deletion, batch)
        batch.metadata_full |= ctx.live_or_shutting_down()
        for tp in sorted(ctx.assignments):
            if not ctx.is_deleting(tp):
                self._reconcile(ctx, tp, batch)
                self._announce(ctx, tp, batch)
        for tp, moving in sorted(ctx.reassigning.items()):  # Kafka: maybeResumeReassignments
            if not ctx.is_deleting(tp):
                self._reassign(ctx, tp, moving, batch)

    def _on_broker_change(
        self, ctx: ControllerContext, now: Mapping[int, LiveBroker], batch: Batch
    ) -> None:
        old = ctx.brokers
        bounced = {b for b in old if b in now and now[b].epoch != old[b].epoch}
        failed = {b for b in old if b not in now} | bounced
        started = {b: now[b] for b in now if b not in old or b in bounced}
        if failed:
            self._brokers_failed(ctx, failed, batch)
        if started:
            self._brokers_started(ctx, started, batch)

    def _brokers_failed(self, ctx: ControllerContext, failed: set[int], batch: Batch) -> None:
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
        self, ctx: ControllerContext, started: dict[int, LiveBroker], batch: Batch
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
            deletion.delete_replicas(ctx, topic, batch)

    def _on_topic_change(self, ctx: ControllerContext, event: TopicChange, batch: Batch) -> None:
        for topic in sorted(ctx.topics() - event.topics):
            self._forget_topic(ctx, topic)
        for topic, assignment in sorted(event.added.items()):
            if topic in ctx.topics():
                continue
            if topic in event.unclean_topics:
                ctx.unclean_topics[topic] = event.unclean_topics[topic]
            self._new_partitions(ctx, topic, assignment, batch)

    def _new_partitions(
        self, ctx: ControllerContext, topic: str, assignment: TopicAssignment, batch: Batch
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

    def _on_isr_change(
        self, ctx: ControllerContext, event: IsrChangeNotification, batch: Batch
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
            if tp in ctx.reassigning:
                batch.reassignment_checks.add(tp)

    def _on_controlled_shutdown(
        self, ctx: ControllerContext, event: ControlledShutdown, batch: Batch
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
        self, ctx: ControllerContext, event: AlterPartition, batch: Batch
    ) -> None:
        """A leader's ISR change: check it (``alter_partition``), write it
        conditionally, tell every broker, answer with the state written."""
        broker_id = event.broker_id
        if broker_id not in ctx.brokers or ctx.broker_epoch(broker_id) != event.broker_epoch:
            batch.alter_replies.append(AlterReply(broker_id, ErrorCode.STALE_BROKER_EPOCH))
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
                batch.writes.append(UpdatePartitionState(fence(ctx), tp[0], tp[1], state))
                ctx.leadership[tp] = replace(state, zk_version=current.zk_version + 1)
                batch.metadata_partitions.add(tp)
                batch.metadata_brokers |= ctx.live_or_shutting_down()
                if tp in ctx.reassigning:
                    batch.reassignment_checks.add(tp)
                error = ErrorCode.NONE
            items.append((item, error))
        batch.alter_replies.append(AlterReply(broker_id, ErrorCode.NONE, tuple(items)))

    def _on_stale(self, ctx: ControllerContext, event: PartitionStatesStale, batch: Batch) -> None:
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
            if tp in ctx.reassigning:  # the lost write may have been its new leader epoch
                self._reassign(ctx, tp, ctx.reassigning[tp], batch)
        batch.merge_requests(self._last)
        for reply in batch.elect_replies:  # Kafka retries an election whose write lost
            for tp in sorted(event.states.keys() & reply.outcomes.keys()):
                if reply.outcomes[tp][0] is ErrorCode.NONE:
                    reply.outcomes[tp] = self._elect(ctx, tp, reply.election_type, batch)

    def _on_elect_leaders(self, ctx: ControllerContext, event: ElectLeaders, batch: Batch) -> None:
        """Kafka's processReplicaLeaderElection: every partition asked about
        (None: every partition not being deleted) gets an outcome."""
        wanted = event.partitions
        if wanted is None:
            wanted = frozenset(tp for tp in ctx.assignments if not ctx.is_deleting(tp))
        outcomes = {tp: self._elect(ctx, tp, event.election_type, batch) for tp in sorted(wanted)}
        batch.elect_replies.append(ElectReply(event.election_type, outcomes))

    def _on_imbalance_check(self, ctx: ControllerContext, batch: Batch) -> None:
        """Kafka's checkAndTriggerAutoLeaderRebalance (see ``rebalance``);
        as in Kafka, nothing moves while any partition is being reassigned."""
        if ctx.reassigning:
            return
        assignments = {tp: r for tp, r in ctx.assignments.items() if not ctx.is_deleting(tp)}
        leaders = {tp: s.leader for tp, s in ctx.leadership.items()}

        def can_lead(tp: TopicPartition) -> bool:
            state = ctx.leadership[tp]
            chosen = election.preferred(
                ctx.assignments[tp], to_leader_and_isr(state), ctx.live_ids()
            )
            return chosen.leader_and_isr is not None

        for tp in rebalance.partitions_to_rebalance(
            assignments, leaders, can_lead, self.rebalance.imbalance_percentage
        ):
            self._elect(ctx, tp, ElectionType.PREFERRED, batch)

    def _elect(
        self, ctx: ControllerContext, tp: TopicPartition, kind: ElectionType, batch: Batch
    ) -> tuple[ErrorCode, str | None]:
        """One partition's election as ElectLeaders asks (Kafka's errors).

        PREFERRED: needed unless the first replica leads; it must be live and
        in the ISR. UNCLEAN: needed only without a live leader; the offline
        rule with unclean elections allowed (a clean choice first)."""
        if tp not in ctx.assignments:
            return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist."
        if ctx.is_deleting(tp):
            return ErrorCode.INVALID_TOPIC_EXCEPTION, "The topic is being deleted."
        replicas, state, live = ctx.assignments[tp], ctx.leadership.get(tp), ctx.live_ids()
        if kind is ElectionType.PREFERRED:
            if state is not None and state.leader == replicas[0]:
                return ErrorCode.ELECTION_NOT_NEEDED, None
            failed = (
                ErrorCode.PREFERRED_LEADER_NOT_AVAILABLE,
                (f"preferred replica {replicas[0]} is not live or not in the ISR"),
            )
            if state is None:
                return failed
            result = election.preferred(replicas, to_leader_and_isr(state), live)
        else:
            if state is not None and state.leader in live:
                return ErrorCode.ELECTION_NOT_NEEDED, None
            failed = ErrorCode.ELIGIBLE_LEADERS_NOT_AVAILABLE, "no replica of the partition is live"
            if state is None:
                return failed
            current = to_leader_and_isr(state)
            result = election.offline(replicas, current, live, unclean_allowed=True)
        if result.leader_and_isr is None:
            return failed
        self._write(ctx, tp, state, result.leader_and_isr, batch)
        return ErrorCode.NONE, None

    # -- reassignment ----------------------------------------------------------

    def _on_alter_reassignments(
        self, ctx: ControllerContext, event: AlterReassignments, batch: Batch
    ) -> None:
        """Kafka's processApiPartitionReassignment: every partition asked
        about gets an outcome; the accepted ones start (or cancel) now, and
        leave /admin/reassign_partitions (the latest request wins)."""
        outcomes = self._start_reassignments(
            ctx, event.targets, batch, event.allow_replication_factor_change
        )
        for tp, (error, _) in outcomes.items():
            if error is ErrorCode.NONE:
                batch.zk_reassignment_done(tp, None)
        batch.reassign_replies.append(outcomes)

    def _start_reassignments(
        self,
        ctx: ControllerContext,
        targets: Mapping[TopicPartition, tuple[int, ...] | None],
        batch: Batch,
        allow_replication_factor_change: bool = True,
    ) -> dict[TopicPartition, tuple[ErrorCode, str | None]]:
        """Check each target (None: cancel) and start those accepted."""
        outcomes: dict[TopicPartition, tuple[ErrorCode, str | None]] = {}
        for tp, target in sorted(targets.items()):
            if tp not in ctx.assignments or ctx.is_deleting(tp):
                outcomes[tp] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "The partition does not exist."
                continue
            current = ctx.full_assignment(tp)
            if target is None:
                if not current.is_reassigning:
                    outcomes[tp] = ErrorCode.NO_REASSIGNMENT_IN_PROGRESS, None
                    continue
                target = current.origin_replicas()
            else:
                refusal = reassignment.validate(target, current, ctx.live_ids())
                if refusal is None and not allow_replication_factor_change:
                    refusal = reassignment.same_size(target, current)
                if refusal is not None:
                    outcomes[tp] = refusal
                    continue
            self._reassign(ctx, tp, reassignment.reassign_to(current, target), batch)
            outcomes[tp] = ErrorCode.NONE, None
        return outcomes

    def _on_reassignment_isr_change(
        self, ctx: ControllerContext, event: ReassignmentIsrChange, batch: Batch
    ) -> None:
        """Kafka's processPartitionReassignmentIsrChange: complete the
        reassignments whose target replicas are all in sync now."""
        for tp in sorted(event.partitions):
            moving, state = ctx.reassigning.get(tp), ctx.leadership.get(tp)
            if moving is None or state is None or ctx.is_deleting(tp):
                continue
            if reassignment.is_complete(moving, state.isr):
                self._reassign(ctx, tp, moving, batch)

    def _reassign(
        self, ctx: ControllerContext, tp: TopicPartition, moving: ReplicaAssignment, batch: Batch
    ) -> None:
        """Kafka's onPartitionReassignment: record the new assignment (the
        replicas no longer in it are removed at once), then start the new
        replicas, or complete it if every target replica is in sync."""
        before = ctx.full_assignment(tp)
        if before != moving:
            self._set_assignment(ctx, tp, moving, batch)
            self._remove_replicas(
                ctx, tp, [r for r in before.replicas if r not in moving.replicas], batch
            )
        state = ctx.leadership.get(tp)
        if not reassignment.is_complete(moving, () if state is None else state.isr):
            if state is not None:  # A1: a new leader epoch tells the leader of RS
                self._write(
                    ctx, tp, state, to_leader_and_isr(state).with_leader(state.leader), batch
                )
            for broker_id in moving.adding:  # A2: the new replicas start
                replica = (tp[0], tp[1], broker_id)
                if ctx.replicas.get(replica) is ReplicaState.NON_EXISTENT:
                    ctx.replicas.move(replica, ReplicaState.NEW)
                batch.lead_or_follow(broker_id, tp, is_new=True)
            return
        present = ctx.live_or_shutting_down()
        for broker_id in moving.adding:  # B1
            replica = (tp[0], tp[1], broker_id)
            ctx.replicas.move(
                replica, ReplicaState.ONLINE if broker_id in present else ReplicaState.OFFLINE
            )
        target = moving.target_replicas()
        self._set_assignment(ctx, tp, ReplicaAssignment(target), batch)  # B2, B6
        batch.zk_reassignment_done(tp, target)  # B7
        if state is not None:  # B3, B4: the leader into the target, the removed out of the ISR
            current = to_leader_and_isr(state)
            leader = current.leader
            if leader not in target or leader not in ctx.live_ids():
                chosen = election.reassigning(target, current, ctx.live_ids()).leader_and_isr
                if chosen is not None:
                    leader = chosen.leader
                elif leader not in target:
                    leader = NO_LEADER
            isr = tuple(r for r in current.isr if r in target) or _last_standing(current)
            self._write(ctx, tp, state, current.with_leader(leader, isr), batch)
        self._remove_replicas(ctx, tp, moving.removing, batch)  # B5
        self._reconcile(ctx, tp, batch)

    def _set_assignment(
        self,
        ctx: ControllerContext,
        tp: TopicPartition,
        assignment: ReplicaAssignment,
        batch: Batch,
    ) -> None:
        """The assignment in the context and, with this batch, in the topic znode."""
        ctx.set_assignment(tp, assignment)
        batch.topic_updates.setdefault(tp[0], {})[tp[1]] = assignment
        batch.metadata_partitions.add(tp)
        batch.metadata_brokers |= ctx.live_or_shutting_down()

    def _remove_replicas(
        self,
        ctx: ControllerContext,
        tp: TopicPartition,
        removed: Sequence[int],
        batch: Batch,
    ) -> None:
        """Kafka's stopRemovedReplicasOfReassignedPartition: replicas no longer
        assigned leave the ISR (a leader among them leaves its leadership,
        ``_reconcile`` elects another), are stopped and their logs deleted."""
        if not removed:
            return
        state = ctx.leadership.get(tp)
        if state is not None and set(removed) & ({state.leader} | set(state.isr)):
            current = to_leader_and_isr(state)
            replicas = ctx.assignments[tp]
            leader = current.leader if current.leader in replicas else NO_LEADER
            isr = tuple(r for r in current.isr if r in replicas) or _last_standing(current)
            self._write(ctx, tp, state, current.with_leader(leader, isr), batch)
            self._reconcile(ctx, tp, batch)
        for broker_id in removed:
            replica = (tp[0], tp[1], broker_id)
            for step in (
                ReplicaState.OFFLINE,
                ReplicaState.DELETION_STARTED,
                ReplicaState.DELETION_SUCCESSFUL,
                ReplicaState.NON_EXISTENT,
            ):
                ctx.replicas.move(replica, step)
            batch.stop.setdefault(broker_id, {})[tp] = True

    # -- one partition ---------------------------------------------------------

    def _reconcile(self, ctx: ControllerContext, tp: TopicPartition, batch: Batch) -> None:
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
            if tp in ctx.reassigning:
                batch.reassignment_checks.add(tp)
        else:
            target = _next_state(ctx, tp, to_leader_and_isr(current))
            if target is not None:
                self._write(ctx, tp, current, target, batch)
        ctx.partitions.move(tp, ctx.phase_for(tp))

    def _write(
        self,
        ctx: ControllerContext,
        tp: TopicPartition,
        current: PartitionState,
        target: election.LeaderAndIsr,
        batch: Batch,
    ) -> None:
        """Write ``target`` conditionally on the znode version read, predict
        the new version, and announce it to the replicas and every broker.
        A new ISR of a partition being reassigned may complete it (say an
        unclean election of a target replica): check after the batch."""
        state = PartitionState(
            target.leader,
            target.leader_epoch,
            target.isr,
            ctx.epoch,
            target.leader_recovery_state,
            current.zk_version,
        )
        batch.writes.append(UpdatePartitionState(fence(ctx), tp[0], tp[1], state))
        ctx.leadership[tp] = replace(state, zk_version=current.zk_version + 1)
        self._announce(ctx, tp, batch)
        ctx.partitions.move(tp, ctx.phase_for(tp))
        if tp in ctx.reassigning and tuple(target.isr) != tuple(current.isr):
            batch.reassignment_checks.add(tp)

    def _announce(
        self, ctx: ControllerContext, tp: TopicPartition, batch: Batch, is_new: bool = False
    ) -> None:
        """LeaderAndIsr to the replicas (but a replica being stopped gets only
        its StopReplica), UpdateMetadata to every broker."""
        for broker_id in ctx.assignments[tp]:
            batch.lead_or_follow(broker_id, tp, is_new)
        batch.metadata_partitions.add(tp)
        batch.metadata_brokers |= ctx.live_or_shutting_down()


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
