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

Failover (Kafka 3.9's behaviour). A broker that becomes leader of an
offsets partition replays it in slices (``moldau.group.loading``), letting
the event loop run between them; its groups answer
COORDINATOR_LOAD_IN_PROGRESS meanwhile, and a load whose leadership goes
away stops and is forgotten (NOT_COORDINATOR). Every write the coordinator
makes is appended as leader and an answer that depends on it goes out only
once the partition's high watermark has passed it, i.e. every ISR member has
it (Kafka: ``offsets.commit.required.acks`` -1; the coordinator runtime
releases answers at the high watermark): :meth:`GroupService.release`. It
waits in the purgatory, woken by the partition's appends, high-watermark
moves and leadership changes, for ``offsets.commit.timeout.ms``, and fails
with the runtime's errors (:func:`coordinator_error`). A single node's high
watermark moves with each append, so it answers at once.

Where moldau departs from Kafka: the pure coordinator applies a change to
its memory when it writes it, not when the write is replicated (Kafka's
runtime keeps uncommitted state in a timeline and reverts it when the write
fails). A write that fails is answered with the error, and its records stay
in the log of a leader that goes on leading (they are replicated later with
the next write) or are truncated away with the leadership.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..cluster.metadata import MetadataStore
from ..group.config import GroupConfig
from ..group.coordinator import GroupCoordinator
from ..group.history import HISTORY_TOPIC, RebalanceRecord
from ..group.loading import PartitionLoad
from ..group.placement import partition_for_group
from ..group.runtime import LoggedRecord, TxnMarker, TxnProducer, TxnRecord
from ..protocol.batch import RecordBatchError, iter_batches
from ..protocol.errors import ErrorCode, KafkaError
from ..protocol.records import Record, build_batch, decode_batch
from ..replication.partition import Partition
from .config import BrokerConfig
from .internal_topics import OFFSETS_TOPIC
from .purgatory import FetchPurgatory
from .replica_manager import ReplicaManager
from .topics import TopicAdminApi

log = logging.getLogger(__name__)

HISTORY_RETENTION_MS = 7 * 24 * 60 * 60 * 1000
_READ_CHUNK = 4 * 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Written:
    """Records the coordinator appended to an offsets partition: the last
    one's offset and the leader epoch that wrote them."""

    partition: Partition
    last_offset: int
    epoch: int


def coordinator_error(code: ErrorCode) -> ErrorCode:
    """The error a client gets for a group write the log refused or did not
    replicate in time (Kafka 3.9's ``GroupCoordinatorService``: a lost
    leadership sends the client to find the coordinator again; too few
    replicas or a timeout make it retry)."""
    if code in (ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.KAFKA_STORAGE_ERROR):
        return ErrorCode.NOT_COORDINATOR
    if code in (
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    ):
        return ErrorCode.COORDINATOR_NOT_AVAILABLE
    return code


def replication_status(writes: Iterable[Written], min_insync: int) -> ErrorCode | None:
    """Where answers that depend on ``writes`` stand: None while the high
    watermark of some partition is not past its write, NONE once every one
    is, else the client's error (:func:`coordinator_error`)."""
    status: ErrorCode | None = ErrorCode.NONE
    for written in writes:
        outcome = written.partition.check_replicated(written.last_offset, written.epoch, min_insync)
        if outcome is None:
            status = None
        elif outcome != ErrorCode.NONE:
            return coordinator_error(outcome)
    return status


def release_when_replicated(
    purgatory: FetchPurgatory,
    writes: list[Written],
    min_insync: int,
    timeout_ms: int,
    answer: Callable[[ErrorCode], T],
) -> T | Awaitable[T]:
    """``answer`` with :func:`replication_status` of ``writes``: at once if it
    is settled, else once it is (the purgatory wakes on the partitions'
    appends, high-watermark moves and leadership changes), or with
    REQUEST_TIMED_OUT's client error after ``timeout_ms``."""
    status = replication_status(writes, min_insync)
    if status is not None:
        return answer(status)
    keys = [(w.partition.topic, w.partition.index) for w in writes]

    def read() -> tuple[T, bool]:
        code = replication_status(writes, min_insync)
        if code is None:
            return answer(coordinator_error(ErrorCode.REQUEST_TIMED_OUT)), False
        return answer(code), True

    return purgatory.read_when_ready(keys, read, timeout_ms)


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
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: int | None = None
        self._last_warning = ""
        self.commit_timeout_ms = int(config.get("offsets.commit.timeout.ms"))
        #: Per offsets partition led here: the leader epoch its groups were
        #: loaded (or are being loaded) at, the load still running, and the
        #: last write appended under that leadership.
        self._led_epochs: dict[int, int] = {}
        self._loads: dict[int, asyncio.Task[None]] = {}
        self._written: dict[int, Written] = {}
        self._history_forwarder: HistoryForwarder | None = None

    # -- startup ------------------------------------------------------------

    def load(self) -> None:
        """Replay every offsets partition this broker leads."""
        info = self.metadata.topic(OFFSETS_TOPIC)
        if info is None:
            return
        for index in range(info.partition_count):
            partition = self.replicas.get(OFFSETS_TOPIC, index)
            if partition is not None and partition.is_leader:
                self.leadership_changed(partition)

    def ensure_topic(self) -> None:
        """Create ``__consumer_offsets`` on first use, as Kafka does; raise
        COORDINATOR_NOT_AVAILABLE while it cannot exist yet.

        A single node caps its replication factor at the one broker. A
        cluster does not, as Kafka does not: until
        ``offsets.topic.replication.factor`` brokers are alive the topic is
        not created, so that offsets are never kept on fewer replicas than
        asked for.
        """
        if self.metadata.topic(OFFSETS_TOPIC) is not None:
            return
        brokers = len(self.metadata.brokers(self.config.inter_broker_listener))
        wanted = int(self.config.get("offsets.topic.replication.factor"))
        if self.config.cluster_mode and brokers < wanted:
            message = (
                f"{OFFSETS_TOPIC} needs offsets.topic.replication.factor={wanted} live brokers "
                f"and {brokers} are alive: consumer groups wait until enough brokers join"
            )
            self._warn_once(message)
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, message)
        created = self.topics.create_internal_topic(
            OFFSETS_TOPIC,
            self.num_partitions,
            min(wanted, brokers),
            {
                "cleanup.policy": "compact",
                "segment.bytes": str(self.config.get("offsets.topic.segment.bytes")),
            },
        )
        if created is None:
            raise KafkaError(
                ErrorCode.COORDINATOR_NOT_AVAILABLE, f"{OFFSETS_TOPIC} is being created"
            )

    def _warn_once(self, message: str) -> None:
        if message != self._last_warning:
            self._last_warning = message
            log.warning("%s", message)

    def leadership_changed(self, partition: Partition) -> None:
        """Load the groups of an offsets partition this broker now leads, and
        drop those of one it no longer leads: their requests then get
        NOT_COORDINATOR and find the leader.

        An empty partition (a new topic) is served at once; any other is
        replayed in slices by a task while its groups wait
        (COORDINATOR_LOAD_IN_PROGRESS). The same leadership told again (a
        LeaderAndIsr at the same epoch) changes nothing; a new epoch reloads,
        since another leader may have written meanwhile."""
        if partition.topic != OFFSETS_TOPIC:
            return
        index = partition.index
        if partition.is_leader and self._led_epochs.get(index) == partition.leader_epoch:
            return
        self._stop_leading(index)
        if partition.is_leader:
            self._led_epochs[index] = partition.leader_epoch
            self._written_up_to_log_end(partition)
            load = PartitionLoad(self.coordinator, index, _records_of(partition), self.clock)
            load.start()
            if partition.log_start_offset == partition.log_end_offset:
                load.run_slice()
            else:
                self._loads[index] = asyncio.get_running_loop().create_task(
                    self._load_in_slices(load), name=f"load {OFFSETS_TOPIC}-{index}"
                )
        self.after_call()

    def _written_up_to_log_end(self, partition: Partition) -> None:
        """A new leader loads its groups from the whole log, also from records
        its high watermark has not passed yet (as Kafka does): answers that
        depend on them wait for them as for its own writes."""
        end = partition.log_end_offset
        if end == partition.log_start_offset:
            self._written.pop(partition.index, None)
            return
        epoch = partition.log.leader_epochs.epoch_for_offset(end - 1)
        self._written[partition.index] = Written(partition, end - 1, epoch)

    def _stop_leading(self, index: int) -> None:
        """Forget the partition's groups and any load under way. Its last
        write stays: an answer still waiting for it now fails
        (NOT_COORDINATOR), as one about to wait for it must."""
        self._led_epochs.pop(index, None)
        task = self._loads.pop(index, None)
        if task is not None:
            task.cancel()
        if index in self.coordinator.owned_partitions | self.coordinator.loading_partitions:
            self.coordinator.unload_partition(index)

    async def _load_in_slices(self, load: PartitionLoad) -> None:
        """Replay ``load`` one slice at a time, letting the loop run between
        slices. ``leadership_changed`` cancels it when the leadership goes
        (always between two slices: the loop runs one thing at a time)."""
        started = self.clock()
        try:
            while not load.run_slice():
                await asyncio.sleep(0)
        except Exception:
            # As Kafka does: a load that fails is logged, and the partition
            # is served with what was read rather than refused forever.
            log.exception("loading %s-%d failed", OFFSETS_TOPIC, load.partition)
            self.coordinator.finish_loading(load.partition)
        finally:
            if self._loads.get(load.partition) is asyncio.current_task():
                self._loads.pop(load.partition)
        if load.skipped:
            log.warning(
                "skipped %d unreadable records in %s-%d",
                load.skipped,
                OFFSETS_TOPIC,
                load.partition,
            )
        log.info(
            "loaded %d records of %s-%d in %d ms",
            load.replayed,
            OFFSETS_TOPIC,
            load.partition,
            self.clock() - started,
        )
        self.after_call()

    def coordinator_for(self, group_id: str) -> int:
        """The broker that coordinates ``group_id``: its offsets partition's leader."""
        try:
            self.ensure_topic()
        except KafkaError as exc:
            # What Kafka answers while its offsets topic cannot be created.
            log.warning("cannot create %s: %s", OFFSETS_TOPIC, exc.message)
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, exc.message) from None
        index = partition_for_group(group_id, self.num_partitions)
        view = self.metadata.partition(OFFSETS_TOPIC, index)
        if view is not None:
            leader = view.leader
        else:
            partition = self.replicas.get(OFFSETS_TOPIC, index)
            leader = -1 if partition is None else partition.leader_id
        if leader < 0:
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        return leader

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
        partition = self.replicas.get(OFFSETS_TOPIC, index)
        if partition is None:
            raise KafkaError(ErrorCode.NOT_COORDINATOR)
        producer_id, epoch = producer if producer is not None else (-1, -1)
        batch = build_batch(
            [Record(i, 0, key, value) for i, (key, value) in enumerate(records)],
            base_timestamp=self.clock(),
            producer_id=producer_id,
            producer_epoch=epoch,
            # Sequence 0 in a transaction, as Kafka's coordinator writes them.
            base_sequence=0 if producer is not None else -1,
            is_transactional=producer is not None,
        )
        try:
            result = partition.append_as_leader(batch, from_coordinator=True)
        except KafkaError as exc:
            raise KafkaError(coordinator_error(exc.code), exc.message) from None
        self._written[index] = Written(partition, result.last_offset, partition.leader_epoch)

    # -- answers released at the high watermark ------------------------------

    def writes_for(self, group_ids: Iterable[str]) -> list[Written]:
        """The last write to each of the groups' partitions: an answer given
        now depends on them (and on nothing later)."""
        indexes = {partition_for_group(g, self.num_partitions) for g in group_ids}
        return [self._written[i] for i in sorted(indexes) if i in self._written]

    def release(
        self,
        purgatory: FetchPurgatory,
        group_ids: Iterable[str],
        answer: Callable[[ErrorCode], T],
    ) -> T | Awaitable[T]:
        """``answer(NONE)`` once the groups' writes so far are on every ISR
        member, else ``answer(error)`` (:func:`replication_status`; a timeout
        after ``offsets.commit.timeout.ms`` is COORDINATOR_NOT_AVAILABLE).
        At once when nothing is pending, as on a single node."""
        return release_when_replicated(
            purgatory,
            self.writes_for(group_ids),
            self._min_insync(),
            self.commit_timeout_ms,
            answer,
        )

    def _min_insync(self) -> int:
        """The offsets topic's ``min.insync.replicas``, else the broker's (as
        for any acks=all append)."""
        info = self.metadata.topic(OFFSETS_TOPIC)
        configured = info.configs.get("min.insync.replicas") if info is not None else None
        return int(configured or self.config.get("min.insync.replicas"))

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
            brokers = len(self.metadata.brokers(self.config.inter_broker_listener))
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
        due = self.coordinator.next_deadline()
        if due == self._timer_due:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_due = due
        if due is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, (due - self.clock()) / 1000)
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due = None
        try:
            self.coordinator.tick()
        except Exception:
            log.exception("group coordinator tick failed")
        self.after_call()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self._loads.values():
            task.cancel()
        self._loads.clear()
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
        inter = config.inter_broker_listener
        _, host, port = next(a for a in config.advertised_listeners if a[0] == inter)
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


def _records_of(partition: Partition) -> Iterator[LoggedRecord]:
    """Every entry of an offsets partition, in log order: its records (those
    of transactional batches with their producer id) and its transaction
    markers."""
    offset = partition.log_start_offset
    end = partition.log_end_offset
    while offset < end:
        result = partition.read(offset, _READ_CHUNK, committed_only=False)
        if not result.size:
            return
        data = b"".join(s.read() for s in result.slices)
        last = offset
        for header, view in iter_batches(data):
            if header.next_offset <= offset:
                continue
            last = header.next_offset
            try:
                _, records = decode_batch(view)
            except RecordBatchError as exc:
                # Only a damaged disk (or an older bug) stores such a batch;
                # refusing to load would keep the broker from starting.
                log.error(
                    "skipped the unreadable batch at offset %d of %s-%d: %s",
                    header.base_offset,
                    partition.topic,
                    partition.index,
                    exc,
                )
                continue
            if header.is_control:
                marker = _marker(header.producer_id, records)
                if marker is not None:
                    yield marker
                continue
            for record in records:
                if record.key is not None and header.base_offset + record.offset_delta >= offset:
                    if header.is_transactional:
                        yield TxnRecord(record.key, record.value, header.producer_id)
                    else:
                        yield record.key, record.value
        if last <= offset:
            return
        offset = last


def _marker(producer_id: int, records: Sequence[Record]) -> TxnMarker | None:
    """The transaction end a control batch holds: its one record's key is
    version (int16) and type (int16: 0 abort, 1 commit); other control
    types are not transaction ends."""
    key = records[0].key if records else None
    if key is None or len(key) < 4:
        return None
    kind = int.from_bytes(key[2:4], "big", signed=True)
    return TxnMarker(producer_id, kind == 1) if kind in (0, 1) else None
