"""The controller's shell: ZooKeeper watches in, writes and broker requests out.

The pure ``Controller`` decides; this runs it on the event loop (Kafka:
KafkaController's ZooKeeper side and its ControllerEventManager):

- Campaign as Kafka does: watch /controller with ``exists``; when it is
  absent try ``ZkStore.elect_controller``; the winner reads everything and
  feeds ``ControllerElected``. A deleted /controller starts a new campaign;
  a lost session deposes this controller at once (no more requests go out)
  and the new session campaigns again.
- ONE queue, handled one item at a time in arrival order. A watch only
  queues what fired; the read happens when the item is handled (as in
  Kafka, whose events read ZooKeeper in ``process``), and re-arms the watch
  in the same read, so a change between two reads is never missed and
  events reach the controller in the order their reads saw ZooKeeper.
  Watches armed while this broker was controller in an earlier term are
  ignored (``_term``).
- Commands run under the contract of ``controller.commands``: writes in
  order, fenced by the controller epoch; a failed fence deposes this
  controller and it campaigns again; a lost conditional write drops the
  batch's requests and replies and feeds ``PartitionStatesStale`` with the
  states re-read; each broker request goes to ``BrokerChannels``, and a
  StopReplica with delete comes back as ``StopReplicaResult``.
- Any other ZooKeeper failure while active (a connection lost mid-write,
  when it is unknown whether the write landed) deposes this controller too,
  and it campaigns again a moment later: the next term reads everything
  afresh, so nothing rests on a guess.

- The auto-rebalance timer: after each event the shell (re)arms one timer
  for ``Controller.next_check_ms`` that queues ``LeaderImbalanceCheck``;
  the controller decides whether it is due.

Each event and each batch of commands is logged at INFO in one line.

Where moldau departs from Kafka: topic config changes are followed only
for unclean.leader.election.enable (the one config the controller reads),
by re-reading the topic's config znode on each /config/changes
notification; and a controller deposed by a failed fence while its session
lives deletes its own /controller before campaigning (Kafka would wait for
a /controller change that cannot come).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from kazoo.exceptions import KazooException, NodeExistsError, NoNodeError
from kazoo.protocol.states import WatchedEvent

from moldau.cluster import wire
from moldau.cluster.channels import BrokerChannels
from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    AlterReassignmentsReply,
    CheckReassignments,
    Command,
    ControlledShutdownReply,
    CreatePartitionStates,
    DeleteTopic,
    ElectLeadersReply,
    Fence,
    LeaderAndIsr,
    RemoveDeletionMarks,
    RemoveZkReassignments,
    Reply,
    StopReplica,
    UpdateMetadata,
    UpdatePartitionState,
    UpdateTopicAssignment,
)
from moldau.cluster.controller.context import TopicPartition
from moldau.cluster.controller.controller import Controller
from moldau.cluster.controller.events import (
    AlterPartition,
    AlterReassignments,
    BrokerChange,
    ControlledShutdown,
    ControllerElected,
    ControllerMoved,
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
from moldau.cluster.controller.rebalance import RebalanceConfig
from moldau.cluster.zk.client import SessionState
from moldau.cluster.zk.paths import (
    REASSIGN_PARTITIONS,
    TopicAssignment,
    ZkDataError,
)
from moldau.cluster.zk.store import ControllerLease, StaleVersion, ZkStore, ZkStoreError
from moldau.cluster.zk.store import ControllerMoved as FenceFailed
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.messages import Message

log = logging.getLogger(__name__)

UNCLEAN_KEY = "unclean.leader.election.enable"

#: After a ZooKeeper failure, the next campaign waits this long (no busy loop
#: while the connection is down).
RECAMPAIGN_DELAY_S = 0.5


class Watch(Enum):
    """What a watch that fired asks the shell to read."""

    BROKERS = "brokers"
    TOPICS = "topics"
    TOPIC = "topic"
    DELETIONS = "deletions"
    ISR_CHANGES = "isr changes"
    CONFIG_CHANGES = "config changes"
    REASSIGNMENT = "reassign partitions"


@dataclass(frozen=True)
class _Fired:
    term: int
    watch: Watch
    topic: str = ""


@dataclass(frozen=True)
class _Campaign:
    done: asyncio.Future[None] | None = None


@dataclass(frozen=True)
class _SessionLost:
    pass


Request = (
    ControlledShutdown | AlterPartition | ElectLeaders | AlterReassignments | ListReassignments
)


@dataclass(frozen=True)
class _Submit:
    event: Request
    reply: asyncio.Future[Reply]


@dataclass(frozen=True)
class _Feed:
    event: StopReplicaResult | LeaderImbalanceCheck | ReassignmentIsrChange


_Item = _Fired | _Campaign | _SessionLost | _Submit | _Feed


@dataclass
class _Term:
    """One term as controller: its lease and the per-topic watches armed."""

    number: int
    lease: ControllerLease
    topic_watches: set[str] = field(default_factory=set)
    unclean: dict[str, bool | None] = field(default_factory=dict)
    config_seen: str = ""
    reassignment_seen: int | None = None


class ControllerShell:
    """Runs one broker's ``Controller`` against ZooKeeper and the brokers."""

    def __init__(
        self,
        store: ZkStore,
        broker_id: int,
        channels: BrokerChannels,
        *,
        clock: Callable[[], int],
        unclean_default: bool = False,
        rebalance: RebalanceConfig | None = None,
    ) -> None:
        """``clock`` gives milliseconds (the controller's ``now_ms`` and the
        timestamp in /controller); ``unclean_default`` is the broker's
        unclean.leader.election.enable, ``rebalance`` its auto leader
        rebalance keys (Kafka's defaults when None)."""
        self.store = store
        self.broker_id = broker_id
        self.channels = channels
        self.clock = clock
        self.controller = Controller(
            broker_id, unclean_default=unclean_default, rebalance_config=rebalance
        )
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._term: _Term | None = None
        self._terms = 0
        self._controller_watch_armed = False
        self._session_lost = False
        self._recampaign: asyncio.TimerHandle | None = None
        self._check_timer: tuple[int, asyncio.TimerHandle] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start handling events and campaign once; returns when that first
        campaign is decided (``is_active`` tells whether it won)."""
        self.store.client.on_state(self._on_session)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"controller-{self.broker_id}"
        )
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Campaign(done))
        await done

    async def stop(self) -> None:
        """Stop handling events, resign (a fenced delete of /controller) if
        active, and close the channels."""
        if self._recampaign is not None:
            self._recampaign.cancel()
        self._arm_check_timer(None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        term = self._term
        self._depose("stopping")
        if term is not None and not self._session_lost:
            try:
                await self.store.client.unless_away(self.store.resign_controller(term.lease))
            except (FenceFailed, KazooException) as exc:
                log.info("controller %d: resigning did nothing (%s)", self.broker_id, exc)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, _Submit) and not item.reply.done():
                item.reply.set_exception(KafkaError(ErrorCode.NOT_CONTROLLER))
            if isinstance(item, _Campaign) and item.done is not None and not item.done.done():
                item.done.set_result(None)
        await self.channels.close()

    @property
    def is_active(self) -> bool:
        return self._term is not None

    @property
    def epoch(self) -> int:
        """The controller epoch of the current term, -1 when not controller."""
        return -1 if self._term is None else self._term.lease.epoch

    async def submit(self, event: Request) -> Reply:
        """Handle a broker's ControlledShutdown or AlterPartition, or an
        operator's ElectLeaders, in turn with every other event;
        NOT_CONTROLLER if this broker is not (or stops being) the controller
        before it is handled."""
        if not self.is_active:
            raise KafkaError(ErrorCode.NOT_CONTROLLER)
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Submit(event, reply))
        return await reply

    # -- the queue -------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._handle(item)
            except asyncio.CancelledError:
                raise
            except (KazooException, ZkStoreError) as exc:
                self._zookeeper_failed(item, exc)
            except Exception as exc:
                log.exception("controller %d: %s failed", self.broker_id, _item_name(item))
                self._zookeeper_failed(item, exc)
            finally:
                if isinstance(item, _Campaign) and item.done is not None and not item.done.done():
                    item.done.set_result(None)

    def _zookeeper_failed(self, item: _Item, exc: Exception) -> None:
        log.warning(
            "controller %d: %s failed (%s: %s)",
            self.broker_id,
            _item_name(item),
            type(exc).__name__,
            exc,
        )
        if isinstance(item, _Submit) and not item.reply.done():
            item.reply.set_exception(KafkaError(ErrorCode.NOT_CONTROLLER, str(exc)))
        if self._term is not None:
            self._depose(f"ZooKeeper failed: {exc}")
        if not self._session_lost:  # a new session campaigns by itself
            self._recampaign_later()

    def _recampaign_later(self) -> None:
        if self._recampaign is not None:
            self._recampaign.cancel()
        self._recampaign = asyncio.get_running_loop().call_later(
            RECAMPAIGN_DELAY_S, self._queue.put_nowait, _Campaign()
        )

    async def _handle(self, item: _Item) -> None:
        if isinstance(item, _Campaign):
            await self._campaign()
        elif isinstance(item, _SessionLost):
            if self._term is not None:
                self._depose("ZooKeeper session lost")
        elif isinstance(item, _Submit):
            if self._term is None:
                item.reply.set_exception(KafkaError(ErrorCode.NOT_CONTROLLER))
            else:
                await self._feed(item.event, item.reply)
                if not item.reply.done():  # deposed while handling it
                    item.reply.set_exception(KafkaError(ErrorCode.NOT_CONTROLLER))
        elif isinstance(item, _Feed):
            if self._term is not None:
                await self._feed(item.event)
        elif self._term is not None and item.term == self._term.number:
            for event in await self._read(self._term, item):
                if self._term is None:
                    break
                await self._feed(event)

    def _on_session(self, state: SessionState) -> None:
        """Called on the loop. A lost session stops the requests at once; the
        term ends when the queue reaches ``_SessionLost``."""
        if state is SessionState.LOST:
            self._session_lost = True
            self._controller_watch_armed = False
            self.channels.update_brokers({})
            self._queue.put_nowait(_SessionLost())
        elif state is SessionState.CONNECTED and self._session_lost:
            self._session_lost = False
            self._queue.put_nowait(_Campaign())

    # -- election --------------------------------------------------------------

    def _controller_changed(self, event: WatchedEvent) -> None:
        self._controller_watch_armed = False
        self._queue.put_nowait(_Campaign())

    async def _campaign(self) -> None:
        """Kafka's elect(): watch /controller; run if nobody holds it."""
        if self._session_lost:
            return
        watch = None if self._controller_watch_armed else self._controller_changed
        current = await self.store.controller(watch)
        self._controller_watch_armed = True
        if self._term is not None:
            if current is not None and current.broker_id == self.broker_id:
                return  # still ours
            holder = "nobody" if current is None else f"broker {current.broker_id}"
            self._depose(f"/controller changed: {holder} holds it")
        if current is not None and not await self.store.release_own_controller():
            return  # another's: wait for the watch
        try:
            lease = await self.store.elect_controller(self.broker_id, self.clock())
        except FenceFailed:
            return  # lost the race; the watch fires when the winner goes
        await self._take_office(lease)

    async def _take_office(self, lease: ControllerLease) -> None:
        """Read everything, arming every watch, and feed ``ControllerElected``
        (Kafka: onControllerFailover)."""
        self._terms += 1
        term = _Term(self._terms, lease)
        self._term = term
        store = self.store
        brokers = await store.live_brokers(self._watch(term, Watch.BROKERS))
        names = await store.topics(self._watch(term, Watch.TOPICS))
        # All at once: the ZooKeeper client pipelines them on its one
        # connection, where one after another cost a round trip each (0.3 s
        # for 150 partitions on a loaded machine, all of it inside the
        # failover of a leader that was also the controller).
        assignments = await asyncio.gather(*(self._read_topic(term, t) for t in names))
        topics = {t: a for t, a in zip(names, assignments, strict=True) if a is not None}
        keys = [(topic, p) for topic, assignment in topics.items() for p in assignment.partitions]
        found = await asyncio.gather(*(store.partition_state(*key) for key in keys))
        states = {key: s for key, s in zip(keys, found, strict=True) if s is not None}
        unclean = await self._read_unclean(term, topics)
        marked = await store.topics_marked_for_deletion(self._watch(term, Watch.DELETIONS))
        changes = await store.config_changes(self._watch(term, Watch.CONFIG_CHANGES))
        term.config_seen = changes[-1] if changes else ""
        await store.take_isr_changes(self._watch(term, Watch.ISR_CHANGES))  # states read above
        legacy = await self._read_reassignment(term)
        if self._term is not term:
            return
        log.info(
            "controller %d epoch %d: elected (znode version %d)",
            self.broker_id,
            lease.epoch,
            lease.epoch_zk_version,
        )
        await self._feed(
            ControllerElected(
                lease.epoch,
                lease.epoch_zk_version,
                brokers,
                topics,
                states,
                frozenset(marked),
                {t: v for t, v in unclean.items() if v is not None},
            )
        )
        for event in legacy:
            if self._term is term:
                await self._feed(event)

    def _depose(self, reason: str) -> None:
        """End the term: the controller forgets everything, no more requests
        go out, and watches of this term are ignored from now on."""
        term = self._term
        if term is None:
            return
        self._term = None
        self.controller.handle(ControllerMoved(), self.clock())
        self._arm_check_timer(None)
        self.channels.update_brokers({})
        log.info(
            "controller %d epoch %d: no longer controller (%s)",
            self.broker_id,
            term.lease.epoch,
            reason,
        )

    # -- watches and reads -----------------------------------------------------

    def _watch(self, term: _Term, watch: Watch, topic: str = "") -> Callable[[WatchedEvent], None]:
        def fired(event: WatchedEvent) -> None:
            if watch is Watch.TOPIC:
                term.topic_watches.discard(topic)
            if self._term is term:
                self._queue.put_nowait(_Fired(term.number, watch, topic))

        return fired

    async def _read_topic(self, term: _Term, topic: str) -> TopicAssignment | None:
        """A topic's assignment, arming its data watch unless one is armed."""
        armed = topic in term.topic_watches
        term.topic_watches.add(topic)
        assignment = await self.store.topic(
            topic, None if armed else self._watch(term, Watch.TOPIC, topic)
        )
        if assignment is None:
            term.topic_watches.discard(topic)
        return assignment

    async def _read_unclean(self, term: _Term, topics: Iterable[str]) -> dict[str, bool | None]:
        """The topics' unclean.leader.election.enable overrides, remembered
        so that a config change notification can tell whether it changed."""
        names = list(topics)
        configs = await asyncio.gather(*(self.store.topic_config(t) for t in names))
        found = {t: _unclean(c) for t, c in zip(names, configs, strict=True)}
        term.unclean.update(found)
        return found

    async def _read_reassignment(self, term: _Term) -> list[Event]:
        """/admin/reassign_partitions if it was created since last read (our
        own rewrites of it change its data, not its czxid), re-arming the
        watch; a znode that cannot be read is logged and left to the operator."""
        try:
            found = await self.store.partition_reassignment(self._watch(term, Watch.REASSIGNMENT))
        except ZkDataError as exc:
            log.warning("controller %d: %s ignored: %s", self.broker_id, REASSIGN_PARTITIONS, exc)
            return []
        if found is None or found[0] == term.reassignment_seen:
            return []
        term.reassignment_seen = found[0]
        return [ZkPartitionReassignment(found[1])]

    async def _read(self, term: _Term, fired: _Fired) -> list[Event]:
        """The event(s) a fired watch stands for, re-arming the watch."""
        store = self.store
        if fired.watch is Watch.BROKERS:
            return [BrokerChange(await store.live_brokers(self._watch(term, Watch.BROKERS)))]
        if fired.watch is Watch.TOPICS:
            names = frozenset(await store.topics(self._watch(term, Watch.TOPICS)))
            added: dict[str, TopicAssignment] = {}
            for topic in sorted(names - self.controller.known_topics()):
                assignment = await self._read_topic(term, topic)
                if assignment is not None:
                    added[topic] = assignment
            unclean = await self._read_unclean(term, added)
            for gone in set(term.unclean) - names:
                del term.unclean[gone]
            return [TopicChange(names, added, {t: v for t, v in unclean.items() if v is not None})]
        if fired.watch is Watch.TOPIC:
            assignment = await self._read_topic(term, fired.topic)
            if assignment is None or fired.topic not in self.controller.known_topics():
                return []
            return [PartitionModification(fired.topic, assignment)]
        if fired.watch is Watch.DELETIONS:
            marked = await store.topics_marked_for_deletion(self._watch(term, Watch.DELETIONS))
            return [TopicDeletion(frozenset(marked))]
        if fired.watch is Watch.REASSIGNMENT:
            return await self._read_reassignment(term)
        if fired.watch is Watch.ISR_CHANGES:
            changed = await store.take_isr_changes(self._watch(term, Watch.ISR_CHANGES))
            states = {}
            for topic, partition in sorted(changed):
                state = await store.partition_state(topic, partition)
                if state is not None:
                    states[(topic, partition)] = state
            return [IsrChangeNotification(states)] if states else []
        return await self._read_config_changes(term)

    async def _read_config_changes(self, term: _Term) -> list[Event]:
        """Notifications newer than the last one seen: a known topic whose
        unclean.leader.election.enable differs from what was read before."""
        names = await self.store.config_changes(self._watch(term, Watch.CONFIG_CHANGES))
        events: list[Event] = []
        known = self.controller.known_topics()
        for name in names:
            if name <= term.config_seen:
                continue
            term.config_seen = name
            change = await self.store.config_change(name)
            if change is None or change[0] != "topics" or change[1] not in known:
                continue
            topic = change[1]
            enabled = _unclean(await self.store.topic_config(topic))
            if enabled != term.unclean.get(topic):
                term.unclean[topic] = enabled
                events.append(UncleanLeaderElectionEnable(topic, enabled))
        return events

    # -- commands --------------------------------------------------------------

    async def _feed(self, event: Event, reply: asyncio.Future[Reply] | None = None) -> None:
        """Hand ``event`` to the controller and run what it decides."""
        term = self._term
        assert term is not None
        context = self.controller.context
        known = (
            event.states
            if isinstance(event, ControllerElected)
            else ({} if context is None else context.leadership)
        )
        leaders_before = {tp: s.leader for tp, s in known.items()}
        isr_before = {tp: s.isr for tp, s in known.items()}
        commands = self.controller.handle(event, self.clock())
        prefix = f"controller {self.broker_id} epoch {term.lease.epoch}"
        log.info("%s: %s", prefix, describe_event(event))
        if commands:
            log.info("%s: decided %s", prefix, describe_commands(commands, leaders_before))
        for line in unclean_elections(commands, isr_before):
            log.warning("%s: %s", prefix, line)
        if self.controller.context is not None:
            self.channels.update_brokers(self.controller.context.brokers)
        self._arm_check_timer(self.controller.next_check_ms)
        await self._execute(term, commands, reply)

    def _arm_check_timer(self, due_ms: int | None) -> None:
        """One timer, for the controller's next imbalance check (none: None)."""
        if self._check_timer is not None:
            if self._check_timer[0] == due_ms:
                return
            self._check_timer[1].cancel()
            self._check_timer = None
        if due_ms is None:
            return
        delay_s = max(0, due_ms - self.clock()) / 1000
        handle = asyncio.get_running_loop().call_later(delay_s, self._check_due)
        self._check_timer = (due_ms, handle)

    def _check_due(self) -> None:
        self._check_timer = None  # re-armed after the check, even if it was early
        self._queue.put_nowait(_Feed(LeaderImbalanceCheck()))

    async def _execute(
        self, term: _Term, commands: list[Command], reply: asyncio.Future[Reply] | None
    ) -> None:
        stale: set[TopicPartition] = set()
        # Partition-state updates in a row go out together: the ZooKeeper
        # client sends them in this order on its one connection and
        # ZooKeeper applies them in that order, so the outcome is that of
        # writing one after another (after a failed fence every later one
        # fails it too), without a round trip each. A broker's death
        # rewrites the state of every partition it hosted (150 took 0.3 s
        # one by one) before the LeaderAndIsr that ends the failover.
        updating: list[tuple[UpdatePartitionState, asyncio.Future[None]]] = []
        for command in [*commands, None]:
            if isinstance(command, UpdatePartitionState):
                updating.append((command, asyncio.ensure_future(self._write(command))))
                continue
            if updating:
                updated, updating = updating, []
                if not await self._settle(updated, stale):
                    return
            if command is None:
                break
            if isinstance(
                command,
                CreatePartitionStates
                | UpdateTopicAssignment
                | RemoveZkReassignments
                | DeleteTopic
                | RemoveDeletionMarks,
            ):
                try:
                    await self._write(command)
                except FenceFailed as exc:
                    self._deposed_by_fence(exc)
                    return
                except (StaleVersion, NodeExistsError, NoNodeError):
                    if not isinstance(command, CreatePartitionStates):
                        raise
                    stale |= _partitions(command)
            elif stale or self._term is not term or self._session_lost:
                continue  # the batch assumed every write succeeded
            elif isinstance(command, LeaderAndIsr | UpdateMetadata | StopReplica):
                self._send(command)
            elif isinstance(command, CheckReassignments):
                self._queue.put_nowait(_Feed(ReassignmentIsrChange(command.partitions)))
            elif reply is not None and not reply.done():
                reply.set_result(command)
        if stale:
            log.info(
                "controller %d epoch %d: %d partition states changed behind it; re-reading",
                self.broker_id,
                term.lease.epoch,
                len(stale),
            )
            states = {tp: await self.store.partition_state(*tp) for tp in sorted(stale)}
            if self._term is term:
                await self._feed(PartitionStatesStale(states), reply)

    async def _settle(
        self,
        writes: list[tuple[UpdatePartitionState, asyncio.Future[None]]],
        stale: set[TopicPartition],
    ) -> bool:
        """Wait for ``writes``, taking their outcomes in order: a partition
        whose state changed behind the controller goes to ``stale``; False if
        the fence failed (this controller is deposed)."""
        outcomes = await asyncio.gather(*(future for _, future in writes), return_exceptions=True)
        for (command, _), outcome in zip(writes, outcomes, strict=True):
            if isinstance(outcome, FenceFailed):
                self._deposed_by_fence(outcome)
                return False
            if isinstance(outcome, StaleVersion | NodeExistsError | NoNodeError):
                stale |= _partitions(command)
            elif isinstance(outcome, BaseException):
                raise outcome
        return True

    def _deposed_by_fence(self, exc: FenceFailed) -> None:
        self._depose(str(exc))
        self._queue.put_nowait(_Campaign())

    async def _write(
        self,
        command: CreatePartitionStates
        | UpdatePartitionState
        | UpdateTopicAssignment
        | RemoveZkReassignments
        | DeleteTopic
        | RemoveDeletionMarks,
    ) -> None:
        lease = _lease(self.broker_id, command.fence)
        if isinstance(command, CreatePartitionStates):
            await self.store.create_partition_states(command.topic, command.states, lease)
        elif isinstance(command, UpdatePartitionState):
            await self.store.update_partition_state(
                command.topic, command.partition, command.state, lease
            )
        elif isinstance(command, UpdateTopicAssignment):
            await self.store.update_topic_partitions(command.topic, command.partitions, lease)
        elif isinstance(command, RemoveZkReassignments):
            await self.store.remove_partition_reassignments(command.partitions, lease)
        elif isinstance(command, DeleteTopic):
            await self.store.delete_topic(command.topic, lease)
        else:
            await self.store.remove_deletion_marks(lease, command.topics)

    def _send(self, request: LeaderAndIsr | UpdateMetadata | StopReplica) -> None:
        if isinstance(request, StopReplica) and any(p.delete for p in request.partitions):

            def answered(response: Message) -> None:
                result = wire.stop_replica_result(request, response)
                self._queue.put_nowait(_Feed(result))

            self.channels.send(request, answered)
        else:
            self.channels.send(request)


def _lease(broker_id: int, fence: Fence) -> ControllerLease:
    return ControllerLease(broker_id, fence.epoch, fence.epoch_zk_version)


def _partitions(write: CreatePartitionStates | UpdatePartitionState) -> set[TopicPartition]:
    if isinstance(write, CreatePartitionStates):
        return {(write.topic, p) for p in write.states}
    return {(write.topic, write.partition)}


def _unclean(config: dict[str, str]) -> bool | None:
    value = config.get(UNCLEAN_KEY)
    return None if value is None else value.strip().lower() == "true"


def _item_name(item: _Item) -> str:
    if isinstance(item, _Fired):
        return f"reading {item.watch.value}" + (f" of {item.topic}" if item.topic else "")
    if isinstance(item, _Submit | _Feed):
        return type(item.event).__name__
    return type(item).__name__.lstrip("_").lower()


# -- log lines -------------------------------------------------------------------


def _ids(ids: Iterable[int]) -> str:
    return ",".join(str(i) for i in sorted(ids))


def describe_event(event: Event) -> str:
    """One line for operators: what happened."""
    if isinstance(event, ControllerElected):
        return (
            f"took over: {len(event.brokers)} live brokers [{_ids(event.brokers)}], "
            f"{len(event.topics)} topics, {len(event.states)} partition states, "
            f"{len(event.marked_for_deletion)} topics marked for deletion"
        )
    if isinstance(event, BrokerChange):
        return f"live brokers now [{_ids(event.brokers)}]"
    if isinstance(event, TopicChange):
        added = ", ".join(
            f"{t} ({len(a.partitions)} partitions)" for t, a in sorted(event.added.items())
        )
        return f"topics changed: {len(event.topics)} topics" + (f"; new: {added}" if added else "")
    if isinstance(event, PartitionModification):
        return f"topic {event.topic} now has {len(event.assignment.partitions)} partitions"
    if isinstance(event, TopicDeletion):
        return f"topics marked for deletion: [{', '.join(sorted(event.topics))}]"
    if isinstance(event, IsrChangeNotification):
        return f"ISR changed in ZooKeeper for {len(event.states)} partitions"
    if isinstance(event, ControlledShutdown):
        return f"broker {event.broker_id} (epoch {event.broker_epoch}) asks to shut down"
    if isinstance(event, AlterPartition):
        return (
            f"broker {event.broker_id} asks to alter the ISR of {len(event.partitions)} partitions"
        )
    if isinstance(event, PartitionStatesStale):
        return f"{len(event.states)} partition states changed behind the controller, re-read"
    if isinstance(event, StopReplicaResult):
        return (
            f"broker {event.broker_id} deleted {len(event.partitions) - len(event.failed)}"
            f" replicas, failed {len(event.failed)}"
        )
    if isinstance(event, UncleanLeaderElectionEnable):
        return f"topic {event.topic}: {UNCLEAN_KEY}={event.enabled}"
    if isinstance(event, ElectLeaders):
        which = "all" if event.partitions is None else str(len(event.partitions))
        return f"{event.election_type.name.lower()} leader election asked for {which} partitions"
    if isinstance(event, LeaderImbalanceCheck):
        return "leader imbalance check"
    if isinstance(event, AlterReassignments):
        cancels = sum(1 for t in event.targets.values() if t is None)
        return (
            f"reassignment asked for {len(event.targets) - cancels} partitions, "
            f"cancel for {cancels}"
        )
    if isinstance(event, ListReassignments):
        return "reassignments listed"
    if isinstance(event, ZkPartitionReassignment):
        return f"{REASSIGN_PARTITIONS} created for {len(event.targets)} partitions"
    if isinstance(event, ReassignmentIsrChange):
        return f"ISR changed for {len(event.partitions)} partitions being reassigned"
    return type(event).__name__


def unclean_elections(
    commands: Sequence[Command], isr_before: Mapping[TopicPartition, Sequence[int]]
) -> list[str]:
    """A line per leader elected from outside the ISR: what it did not have
    is lost (its followers log the offsets they truncate)."""
    lines = []
    for c in commands:
        if not isinstance(c, UpdatePartitionState) or c.state.leader < 0:
            continue
        before = isr_before.get((c.topic, c.partition))
        if before and c.state.leader not in before:
            lines.append(
                f"unclean leader election of {c.topic}-{c.partition}: broker {c.state.leader} "
                f"leads at epoch {c.state.leader_epoch} but was not in the ISR "
                f"[{_ids(before)}]; records only they had are lost"
            )
    return lines


def describe_commands(
    commands: Sequence[Command], leaders_before: dict[TopicPartition, int]
) -> str:
    """One line for operators: what the controller decided to do about it
    (a write that then fails is logged where it fails)."""
    created = sum(len(c.states) for c in commands if isinstance(c, CreatePartitionStates))
    updates = [c for c in commands if isinstance(c, UpdatePartitionState)]
    moved = sum(
        1
        for c in updates
        if leaders_before.get((c.topic, c.partition), c.state.leader) != c.state.leader
    )
    parts: list[str] = []
    if created:
        parts.append(f"{created} new partition states to write")
    if updates:
        parts.append(f"{len(updates)} partition states to write ({moved} move leader)")
    moved_topics = [c.topic for c in commands if isinstance(c, UpdateTopicAssignment)]
    if moved_topics:
        parts.append(f"replica assignments to write for [{', '.join(moved_topics)}]")
    legacy = sum(len(c.partitions) for c in commands if isinstance(c, RemoveZkReassignments))
    if legacy:
        parts.append(f"{legacy} partitions to take out of {REASSIGN_PARTITIONS} if there")
    deleted = [c.topic for c in commands if isinstance(c, DeleteTopic)]
    if deleted:
        parts.append(f"topics to delete [{', '.join(deleted)}]")
    for kind in (LeaderAndIsr, UpdateMetadata, StopReplica):
        to = [c.broker_id for c in commands if isinstance(c, kind)]
        if to:
            parts.append(f"{kind.__name__} to [{_ids(to)}]")
    replies = [c for c in commands if isinstance(c, ControlledShutdownReply | AlterPartitionReply)]
    if replies:
        parts.append(f"answered broker {_ids(r.broker_id for r in replies)}")
    if any(isinstance(c, ElectLeadersReply) for c in commands):
        parts.append("answered the election request")
    if any(isinstance(c, AlterReassignmentsReply) for c in commands):
        parts.append("answered the reassignment request")
    return "; ".join(parts) or "nothing to do"
