"""The asyncio shell around the pure group coordinator.

The coordinator (``moldau.group``) decides; this shell gives it what a pure
core lacks: the ``__consumer_offsets`` topic to persist into (created on
first use, compacted, internal), a timer that calls ``tick()`` at the next
deadline, and the loading of every offsets partition this broker leads when
it starts. Handlers call the coordinator through ``service.coordinator`` and
then ``service.after_call()``, which re-arms the timer.

The coordinator remembers a group's recent rebalances only in memory. So that
``moldau groups describe GROUP --history`` can show them from outside the
broker, and after a restart, the shell also appends each rebalance as it ends
to ``__moldau_group_history``: one JSON record keyed by the group id, kept
for a week (a plain delete-policy topic, created on first use).

Failover and writes: the offsets topic is a :class:`CoordinatorLog`
(``coordinator_log.py``, shared with the transaction coordinator): created on
first use, loaded in slices when this broker becomes leader of one of its
partitions, written as leader with answers released at the high watermark
(:meth:`GroupService.release`, ``offsets.commit.timeout.ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ..cluster.metadata import MetadataStore
from ..group.config import GroupConfig
from ..group.coordinator import GroupCoordinator
from ..group.history import HISTORY_TOPIC, RebalanceRecord
from ..group.placement import partition_for_group
from ..group.runtime import TxnProducer
from ..protocol.errors import ErrorCode, KafkaError
from ..protocol.records import Record, build_batch
from ..replication.partition import Partition
from .config import BrokerConfig
from .coordinator_log import CoordinatorLog, DeadlineTimer, TopicSpec
from .internal_topics import OFFSETS_TOPIC
from .purgatory import FetchPurgatory
from .replica_manager import ReplicaManager
from .topics import TopicAdminApi

log = logging.getLogger(__name__)

HISTORY_RETENTION_MS = 7 * 24 * 60 * 60 * 1000

T = TypeVar("T")


class GroupService:
    """Owns the coordinator, its timer and its topic on this broker.

    It gets what it uses, not the broker core: the hosted partitions to
    read and append, the topic admin to create its topics, so that no
    module of the broker imports this one but the composition root.
    """

    def __init__(
        self,
        config: BrokerConfig,
        clock: Callable[[], int],
        metadata: MetadataStore,
        replicas: ReplicaManager,
        topics: TopicAdminApi,
    ) -> None:
        self.config = config
        self.clock = clock
        self.metadata = metadata
        self.replicas = replicas
        self.topics = topics
        self.num_partitions = int(config.get("offsets.topic.num.partitions"))
        self.coordinator = GroupCoordinator(
            GroupConfig(
                offsets_topic_num_partitions=self.num_partitions,
                group_initial_rebalance_delay_ms=int(
                    config.get("group.initial.rebalance.delay.ms")
                ),
                group_min_session_timeout_ms=int(config.get("group.min.session.timeout.ms")),
                group_max_session_timeout_ms=int(config.get("group.max.session.timeout.ms")),
                group_max_size=int(config.get("group.max.size")),
                offsets_retention_minutes=int(config.get("offsets.retention.minutes")),
                offsets_retention_check_interval_ms=int(
                    config.get("offsets.retention.check.interval.ms")
                ),
                offset_metadata_max_bytes=int(config.get("offset.metadata.max.bytes")),
            ),
            clock,
            self._persist,
            self._record_rebalance,
        )
        self.timer = DeadlineTimer(clock, self.coordinator, self.after_call, "group coordinator")
        self.store = CoordinatorLog(
            TopicSpec(
                OFFSETS_TOPIC,
                self.num_partitions,
                "offsets.topic.replication.factor",
                {"segment.bytes": str(config.get("offsets.topic.segment.bytes"))},
                "consumer groups",
            ),
            config,
            clock,
            metadata,
            replicas,
            topics,
            self.coordinator,
            self.after_call,
            int(config.get("offsets.commit.timeout.ms")),
        )
        self._history_forwarder: HistoryForwarder | None = None

    # -- startup and leadership (the shared machinery of ``coordinator_log``) --

    def load(self) -> None:
        """Replay every offsets partition this broker leads."""
        self.store.load()

    def ensure_topic(self) -> None:
        """Create ``__consumer_offsets`` on first use, as Kafka does; raise
        COORDINATOR_NOT_AVAILABLE while it cannot exist yet."""
        self.store.ensure_topic()

    def leadership_changed(self, partition: Partition) -> None:
        """Load or drop the groups of an offsets partition whose leadership
        changed (:meth:`CoordinatorLog.leadership_changed`)."""
        self.store.leadership_changed(partition)

    def coordinator_for(self, group_id: str) -> int:
        """The broker that coordinates ``group_id``: its offsets partition's leader."""
        return self.store.leader_of(partition_for_group(group_id, self.num_partitions))

    def transaction_completed(
        self, topic: str, index: int, producer_id: int, producer_epoch: int, committed: bool
    ) -> None:
        """A transaction marker was appended here as leader: in an offsets
        partition, the offsets the transaction committed there apply or go."""
        if topic == OFFSETS_TOPIC:
            self.coordinator.complete_transaction(index, producer_id, committed)
            self.after_call()

    def topic_deleted(self, topic: str) -> None:
        """Committed offsets of a deleted topic go with it, as in Kafka."""
        self.coordinator.forget_topic(topic)
        self.after_call()

    # -- persistence and time -----------------------------------------------

    def _persist(
        self,
        index: int,
        records: list[tuple[bytes, bytes | None]],
        producer: TxnProducer | None = None,
    ) -> None:
        self.store.append(index, records, producer)

    # -- answers released at the high watermark ------------------------------

    def release(
        self,
        purgatory: FetchPurgatory,
        group_ids: Iterable[str],
        answer: Callable[[ErrorCode], T],
    ) -> T | Awaitable[T]:
        """``answer(NONE)`` once the groups' writes so far are on every ISR
        member, else ``answer(error)`` (:meth:`CoordinatorLog.release`; a
        timeout after ``offsets.commit.timeout.ms`` is
        COORDINATOR_NOT_AVAILABLE). At once when nothing is pending, as on a
        single node."""
        indexes = [partition_for_group(g, self.num_partitions) for g in group_ids]
        return self.store.release(purgatory, indexes, answer)

    def _record_rebalance(self, group_id: str, record: RebalanceRecord) -> None:
        """Appends an ended rebalance to the history topic: here when this
        broker leads its partition, else (cluster mode) through the
        partition's leader (:class:`HistoryForwarder`), so that the history
        of every group is kept, replicated, whichever broker coordinates it.

        The history is for people; failing to keep it must not fail the
        group, so errors are logged, not raised into the coordinator.
        """
        try:
            value = record.to_json(group_id)
            partition = self._history_partition()
            if partition is not None and partition.is_leader:
                batch = build_batch(
                    [Record(0, 0, group_id.encode(), value)], base_timestamp=self.clock()
                )
                partition.append_as_leader(batch)
            elif self.config.cluster_mode:
                if self._history_forwarder is None:
                    self._history_forwarder = HistoryForwarder(self.config)
                self._history_forwarder.send(group_id, value)
        except Exception:
            log.exception("could not record a rebalance of group %s", group_id)

    def _history_partition(self) -> Partition | None:
        """The history topic's partition hosted here, the topic created on
        first use; None while it is being created (cluster mode) or when this
        broker holds no replica of it."""
        if self.metadata.topic(HISTORY_TOPIC) is None:
            brokers = len(self.metadata.brokers())
            replication = min(int(self.config.get("offsets.topic.replication.factor")), brokers)
            created = self.topics.create_internal_topic(
                HISTORY_TOPIC,
                1,
                replication,
                {"cleanup.policy": "delete", "retention.ms": str(HISTORY_RETENTION_MS)},
            )
            if created is None:
                return None
        return self.replicas.get(HISTORY_TOPIC, 0)

    def after_call(self) -> None:
        """Re-arm the timer for the coordinator's next deadline."""
        self.timer.rearm()

    async def close(self) -> None:
        self.timer.cancel()
        self.store.close()
        if self._history_forwarder is not None:
            await self._history_forwarder.close()


class HistoryForwarder:
    """Sends rebalance records to the leader of the history partition when
    it is another broker (cluster mode), as a producer with acks=all and
    Kafka's admin client id (which may write internal topics).

    One task sends them in order; it starts with the first record, with this
    broker's own listener as bootstrap (the producer finds the leader).
    Records beyond ``QUEUE_LIMIT`` waiting are dropped with a warning: the
    history is for people and must not hold a broker's memory.
    """

    QUEUE_LIMIT = 10_000
    #: How long closing waits for records still being sent.
    CLOSE_TIMEOUT_S = 2.0

    def __init__(self, config: BrokerConfig) -> None:
        _, host, port = config.advertised_listeners[0]
        self.bootstrap = f"{host or '127.0.0.1'}:{port}"
        self._queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(self.QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None

    def send(self, group_id: str, value: bytes) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="rebalance history forwarder"
            )
        try:
            self._queue.put_nowait((group_id, value))
        except asyncio.QueueFull:
            log.warning("dropped a rebalance of group %s: the history is behind", group_id)

    async def _run(self) -> None:
        # Only cluster mode gets here: a single node loads no client code.
        from ..client.producer import Producer
        from .handlers.produce import ADMIN_CLIENT_ID

        producer = Producer(
            self.bootstrap, client_id=ADMIN_CLIENT_ID, acks=-1, allow_auto_create_topics=False
        )
        try:
            await producer.start()
            while (item := await self._queue.get()) is not None:
                group_id, value = item
                try:
                    sent = await producer.send(HISTORY_TOPIC, value, group_id.encode(), partition=0)
                except KafkaError as exc:  # e.g. the topic is not there yet
                    log.warning("could not record a rebalance of group %s: %s", group_id, exc)
                    continue
                sent.add_done_callback(functools.partial(_history_sent, group_id))
        except Exception:
            log.exception("the rebalance history forwarder stopped")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.close(), self.CLOSE_TIMEOUT_S)

    async def close(self) -> None:
        if self._task is None or self._task.done():
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), self.CLOSE_TIMEOUT_S * 2)
        except TimeoutError:
            self._task.cancel()


def _history_sent(group_id: str, sent: asyncio.Future[object]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        log.warning("could not record a rebalance of group %s: %s", group_id, sent.exception())
