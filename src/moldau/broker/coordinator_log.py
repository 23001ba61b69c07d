"""What a coordinator over a compacted internal topic needs from the broker.

The group coordinator (``__consumer_offsets``) and the transaction
coordinator (``__transaction_state``) keep their state the same way, as
Kafka's coordinators do, and this module is that shared way:

- the topic is created on first use (:meth:`CoordinatorLog.ensure_topic`):
  compacted, internal; a single node caps its replication factor at the one
  broker, a cluster waits until enough brokers are alive rather than keep
  the state on fewer replicas than asked for;
- a broker that becomes leader of one of its partitions replays it
  (``moldau.group.loading``) in slices, letting the event loop run between
  them, while the partition's keys answer COORDINATOR_LOAD_IN_PROGRESS; a
  load whose leadership goes away stops and is forgotten (NOT_COORDINATOR);
- every write is appended as leader, and an answer that depends on it goes
  out only once the partition's high watermark has passed it, i.e. every
  ISR member has it (:meth:`CoordinatorLog.release`): it waits in the
  purgatory, woken by the partition's appends, high-watermark moves and
  leadership changes, for the coordinator's commit timeout, and fails with
  the runtime's errors (:func:`coordinator_error`). A single node's high
  watermark moves with each append, so it answers at once.

Where moldau departs from Kafka: the pure coordinators apply a change to
their memory when they write it, not when the write is replicated (Kafka's
runtime keeps uncommitted state in a timeline and reverts it when the write
fails). A write that fails is answered with the error, and its records stay
in the log of a leader that goes on leading (they are replicated later with
the next write) or are truncated away with the leadership.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ..cluster.metadata import MetadataStore
from ..group.loading import PartitionLoad, Replayer
from ..group.runtime import LoggedRecord, TransactionalRecord, TxnEnd, TxnProducer
from ..log.control import read_marker
from ..protocol.batch import RecordBatchError, iter_batches
from ..protocol.errors import ErrorCode, KafkaError
from ..protocol.records import Record, build_batch, decode_batch
from ..replication.partition import Partition
from .config import BrokerConfig
from .purgatory import FetchPurgatory
from .replica_manager import ReplicaManager
from .topics import TopicAdminApi

log = logging.getLogger(__name__)

_READ_CHUNK = 4 * 1024 * 1024

T = TypeVar("T")


@dataclass(frozen=True)
class Written:
    """Records a coordinator appended to one of its partitions: the last
    one's offset and the leader epoch that wrote them."""

    partition: Partition
    last_offset: int
    epoch: int


def coordinator_error(code: ErrorCode) -> ErrorCode:
    """The error a client gets for a coordinator write the log refused or did
    not replicate in time (Kafka 3.9's ``GroupCoordinatorService`` and
    ``TransactionStateManager``: a lost leadership sends the client to find
    the coordinator again; too few replicas or a timeout make it retry)."""
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


@dataclass(frozen=True)
class TopicSpec:
    """A coordinator's internal topic and the broker keys that shape it."""

    name: str
    num_partitions: int
    replication_factor_key: str
    #: Topic configs beyond ``cleanup.policy=compact``.
    configs: dict[str, str]
    #: Who waits while the topic cannot be created ("consumer groups").
    users: str
    #: The broker key of the topic's ``min.insync.replicas``, if it has one.
    min_isr_key: str | None = None


class CoordinatorLog:
    """One coordinator's internal topic on this broker: creating it, loading
    and unloading its partitions as leadership comes and goes, appending the
    coordinator's writes and releasing answers at the high watermark.

    ``target`` is the pure coordinator; ``on_change`` is called after a
    partition was loaded or unloaded (the shell re-arms its timers there)."""

    def __init__(
        self,
        spec: TopicSpec,
        config: BrokerConfig,
        clock: Callable[[], int],
        metadata: MetadataStore,
        replicas: ReplicaManager,
        topics: TopicAdminApi,
        target: Replayer,
        on_change: Callable[[], None],
        commit_timeout_ms: int,
    ) -> None:
        self.spec = spec
        self.config = config
        self.clock = clock
        self.metadata = metadata
        self.replicas = replicas
        self.topics = topics
        self.target = target
        self.on_change = on_change
        self.commit_timeout_ms = commit_timeout_ms
        self._last_warning = ""
        #: Per partition led here: the leader epoch its state was loaded (or
        #: is being loaded) at, the load still running, and the last write
        #: appended under that leadership.
        self._led_epochs: dict[int, int] = {}
        self._loads: dict[int, asyncio.Task[None]] = {}
        self._written: dict[int, Written] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    # -- the topic ------------------------------------------------------------

    def ensure_topic(self) -> None:
        """Create the topic on first use, as Kafka does; raise
        COORDINATOR_NOT_AVAILABLE while it cannot exist yet."""
        if self.metadata.topic(self.name) is not None:
            return
        brokers = len(self.metadata.brokers())
        wanted = int(self.config.get(self.spec.replication_factor_key))
        if self.config.cluster_mode and brokers < wanted:
            message = (
                f"{self.name} needs {self.spec.replication_factor_key}={wanted} live brokers "
                f"and {brokers} are alive: {self.spec.users} wait until enough brokers join"
            )
            self._warn_once(message)
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, message)
        replication = min(wanted, brokers)
        configs = {"cleanup.policy": "compact", **self.spec.configs}
        if self.spec.min_isr_key is not None:
            min_isr = int(self.config.get(self.spec.min_isr_key))
            configs["min.insync.replicas"] = str(min(min_isr, replication))
        created = self.topics.create_internal_topic(
            self.name, self.spec.num_partitions, replication, configs
        )
        if created is None:
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"{self.name} is being created")

    def _warn_once(self, message: str) -> None:
        if message != self._last_warning:
            self._last_warning = message
            log.warning("%s", message)

    def leader_of(self, index: int) -> int:
        """The broker that leads partition ``index``: the coordinator of its
        keys. Creates the topic on first use; raises
        COORDINATOR_NOT_AVAILABLE while there is none."""
        try:
            self.ensure_topic()
        except KafkaError as exc:
            # What Kafka answers while its internal topic cannot be created.
            log.warning("cannot create %s: %s", self.name, exc.message)
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, exc.message) from None
        view = self.metadata.partition(self.name, index)
        if view is not None:
            leader = view.leader
        else:
            partition = self.replicas.get(self.name, index)
            leader = -1 if partition is None else partition.leader_id
        if leader < 0:
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        return leader

    def min_insync(self) -> int:
        """The topic's ``min.insync.replicas``, else the broker's (as for any
        acks=all append)."""
        info = self.metadata.topic(self.name)
        configured = info.configs.get("min.insync.replicas") if info is not None else None
        return int(configured or self.config.get("min.insync.replicas"))

    # -- leadership and loading -------------------------------------------------

    def load(self) -> None:
        """Replay every partition this broker leads (at startup)."""
        info = self.metadata.topic(self.name)
        if info is None:
            return
        for index in range(info.partition_count):
            partition = self.replicas.get(self.name, index)
            if partition is not None and partition.is_leader:
                self.leadership_changed(partition)

    def leadership_changed(self, partition: Partition) -> None:
        """Load the state of a partition this broker now leads, and drop that
        of one it no longer leads: its requests then get NOT_COORDINATOR and
        find the leader.

        An empty partition (a new topic) is served at once; any other is
        replayed in slices by a task while its keys wait
        (COORDINATOR_LOAD_IN_PROGRESS). The same leadership told again (a
        LeaderAndIsr at the same epoch) changes nothing; a new epoch reloads,
        since another leader may have written meanwhile."""
        if partition.topic != self.name:
            return
        index = partition.index
        if partition.is_leader and self._led_epochs.get(index) == partition.leader_epoch:
            return
        self._stop_leading(index)
        if partition.is_leader:
            self._led_epochs[index] = partition.leader_epoch
            self._written_up_to_log_end(partition)
            load = PartitionLoad(self.target, index, records_of(partition), self.clock)
            load.start()
            if partition.log_start_offset == partition.log_end_offset:
                load.run_slice()
            else:
                self._loads[index] = asyncio.get_running_loop().create_task(
                    self._load_in_slices(load), name=f"load {self.name}-{index}"
                )
        self.on_change()

    def led_epoch(self, index: int) -> int:
        """The leader epoch partition ``index`` is led at here (-1: not led)."""
        return self._led_epochs.get(index, -1)

    def _written_up_to_log_end(self, partition: Partition) -> None:
        """A new leader loads from the whole log, also from records its high
        watermark has not passed yet (as Kafka does): answers that depend on
        them wait for them as for its own writes."""
        end = partition.log_end_offset
        if end == partition.log_start_offset:
            self._written.pop(partition.index, None)
            return
        epoch = partition.log.leader_epochs.epoch_for_offset(end - 1)
        self._written[partition.index] = Written(partition, end - 1, epoch)

    def _stop_leading(self, index: int) -> None:
        """Forget the partition's state and any load under way. Its last write
        stays: an answer still waiting for it now fails (NOT_COORDINATOR), as
        one about to wait for it must."""
        self._led_epochs.pop(index, None)
        task = self._loads.pop(index, None)
        if task is not None:
            task.cancel()
        if index in self.target.owned_partitions | self.target.loading_partitions:
            self.target.unload_partition(index)

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
            log.exception("loading %s-%d failed", self.name, load.partition)
            self.target.finish_loading(load.partition)
        finally:
            if self._loads.get(load.partition) is asyncio.current_task():
                self._loads.pop(load.partition)
        if load.skipped:
            log.warning(
                "skipped %d unreadable records in %s-%d", load.skipped, self.name, load.partition
            )
        log.info(
            "loaded %d records of %s-%d in %d ms",
            load.replayed,
            self.name,
            load.partition,
            self.clock() - started,
        )
        self.on_change()

    # -- writes and answers released at the high watermark -----------------------

    def append(
        self,
        index: int,
        records: list[tuple[bytes, bytes | None]],
        producer: TxnProducer | None = None,
    ) -> None:
        """Append ``records`` to partition ``index`` as its leader (inside
        ``producer``'s transaction when given: a transactional offset
        commit); raises KafkaError with the client's error
        (:func:`coordinator_error`)."""
        partition = self.replicas.get(self.name, index)
        if partition is None:
            raise KafkaError(ErrorCode.NOT_COORDINATOR)
        producer_id, epoch = producer if producer is not None else (-1, -1)
        batch = build_batch(
            [Record(i, 0, key, value) for i, (key, value) in enumerate(records)],
            base_timestamp=self.clock(),
            producer_id=producer_id,
            producer_epoch=epoch,
            # Sequence 0 in a transaction, as Kafka's coordinators write them.
            base_sequence=0 if producer is not None else -1,
            is_transactional=producer is not None,
        )
        try:
            result = partition.append_as_leader(batch, from_coordinator=True)
        except KafkaError as exc:
            raise KafkaError(coordinator_error(exc.code), exc.message) from None
        self._written[index] = Written(partition, result.last_offset, partition.leader_epoch)

    def writes_for(self, indexes: Iterable[int]) -> list[Written]:
        """The last write to each of the partitions: an answer given now
        depends on them (and on nothing later)."""
        return [self._written[i] for i in sorted(set(indexes)) if i in self._written]

    def release(
        self,
        purgatory: FetchPurgatory,
        indexes: Iterable[int],
        answer: Callable[[ErrorCode], T],
    ) -> T | Awaitable[T]:
        """``answer(NONE)`` once the partitions' writes so far are on every ISR
        member, else ``answer(error)`` (:func:`replication_status`; a timeout
        after the commit timeout is COORDINATOR_NOT_AVAILABLE). At once when
        nothing is pending, as on a single node."""
        return release_when_replicated(
            purgatory, self.writes_for(indexes), self.min_insync(), self.commit_timeout_ms, answer
        )

    def close(self) -> None:
        for task in self._loads.values():
            task.cancel()
        self._loads.clear()


class Ticking(Protocol):
    """A pure core driven by time: what is due next, and doing it."""

    def next_deadline(self) -> int | None: ...

    def tick(self) -> None: ...


class DeadlineTimer:
    """Calls a pure core's ``tick`` at its next deadline.

    :meth:`rearm` after every call into the core (a call may move the next
    deadline); after each tick ``after_tick`` runs, which re-arms too.
    """

    def __init__(
        self, clock: Callable[[], int], core: Ticking, after_tick: Callable[[], None], name: str
    ) -> None:
        self.clock = clock
        self.core = core
        self.after_tick = after_tick
        self.name = name
        self._handle: asyncio.TimerHandle | None = None
        self._due: int | None = None

    def rearm(self) -> None:
        due = self.core.next_deadline()
        if due == self._due:
            return
        self.cancel()
        self._due = due
        if due is not None:
            delay = max(0.0, (due - self.clock()) / 1000)
            self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._due = None
        try:
            self.core.tick()
        except Exception:
            log.exception("%s tick failed", self.name)
        self.after_tick()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due = None


def records_of(partition: Partition) -> Iterator[LoggedRecord]:
    """Every entry of a coordinator's partition, in log order: its records
    (those of transactional batches with their producer id) and the ends of
    the transactions they were written in."""
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
                if header.is_control:
                    marker = read_marker(header, view)
                    if marker is not None:
                        yield TxnEnd(header.producer_id, marker.committed)
                    continue
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
            for record in records:
                if record.key is None or header.base_offset + record.offset_delta < offset:
                    continue
                if header.is_transactional:
                    yield TransactionalRecord(record.key, record.value, header.producer_id)
                else:
                    yield record.key, record.value
        if last <= offset:
            return
        offset = last
