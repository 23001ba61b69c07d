"""The transaction coordinator's decisions (Kafka 3.9's
``TransactionCoordinator``), pure: no event loop, the clock injected.

It holds the transactional ids of the ``__transaction_state`` partitions this
broker leads. Every change is written through ``persist(partition, key,
value)`` before it is applied (a write that raises leaves memory as it was
and is answered with its error); the shell appends it as leader and releases
the answer at the high watermark.

Ending a transaction is two-phased as in Kafka: EndTxn writes PrepareCommit
or PrepareAbort and answers; a :class:`MarkerJob` then asks the shell to
write the markers into every partition of the transaction, and once each
partition reported back (:meth:`TxnCoordinator.marker_written`), CompleteCommit
or CompleteAbort is written. A broker that loads a partition resumes the
jobs of every transaction it finds prepared.

The coordinator also aborts transactions that outlive their timeout (with an
epoch bump, so that the producer is fenced), every
``transaction.abort.timed.out.transaction.cleanup.interval.ms``, and removes
transactional ids idle for ``transactional.id.expiration.ms`` (a tombstone),
every ``transaction.remove.expired.transaction.cleanup.interval.ms``; the
shell calls :meth:`TxnCoordinator.tick` at :meth:`next_deadline`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from moldau.group.placement import java_string_hash, partition_for_group
from moldau.group.runtime import LoggedRecord, TxnEnd
from moldau.group.timers import Timers
from moldau.protocol.errors import ErrorCode, KafkaError

from .records import TxnRecord, decode_key, decode_value, encode_key, encode_value
from .state import NO_EPOCH, TxnMetadata, TxnState, epoch_exhausted

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
#: How long a failed CompleteX write waits before it is tried again.
COMPLETE_RETRY_MS = 100

TopicPartition = tuple[str, int]
Persist = Callable[[int, bytes, bytes | None], None]


def partition_for_transaction(transactional_id: str, num_partitions: int) -> int:
    """The ``__transaction_state`` partition of ``transactional_id``: Kafka's
    ``Utils.abs(transactionalId.hashCode) % partitions``, as for groups."""
    return (java_string_hash(transactional_id) & 0x7FFFFFFF) % num_partitions


@dataclass(frozen=True)
class TxnConfig:
    num_partitions: int = 50
    offsets_num_partitions: int = 50
    max_timeout_ms: int = 900_000
    abort_check_interval_ms: int = 10_000
    expiration_ms: int = 604_800_000
    expiration_check_interval_ms: int = 3_600_000


@dataclass(frozen=True)
class InitResult:
    error: ErrorCode
    producer_id: int = -1
    producer_epoch: int = NO_EPOCH


@dataclass(frozen=True)
class MarkerJob:
    """Markers to write for one transaction that is being completed."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    committed: bool
    #: The leader epoch of the transaction's ``__transaction_state``
    #: partition: partition logs refuse markers from an older coordinator.
    coordinator_epoch: int
    partitions: frozenset[TopicPartition]


class TxnCoordinator:
    def __init__(
        self,
        config: TxnConfig,
        clock: Callable[[], int],
        persist: Persist,
        new_producer_id: Callable[[], int],
        coordinator_epoch: Callable[[int], int],
    ) -> None:
        self.config = config
        self.clock = clock
        self._persist = persist
        self._new_producer_id = new_producer_id
        self._coordinator_epoch = coordinator_epoch
        self.transactions: dict[str, TxnMetadata] = {}
        self.owned_partitions: set[int] = set()
        self.loading_partitions: set[int] = set()
        #: Per transaction being completed: the partitions still without markers.
        self._unmarked: dict[str, set[TopicPartition]] = {}
        self._jobs: list[MarkerJob] = []
        self._timers: Timers[tuple[str, str]] = Timers()

    # -- placement and lookup -----------------------------------------------------

    def partition_for(self, transactional_id: str) -> int:
        return partition_for_transaction(transactional_id, self.config.num_partitions)

    def _lookup(self, transactional_id: str) -> TxnMetadata | None:
        """The id's metadata (None: unknown), or KafkaError when this broker
        does not serve its partition (yet)."""
        index = self.partition_for(transactional_id)
        if index in self.loading_partitions:
            raise KafkaError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        if index not in self.owned_partitions:
            raise KafkaError(ErrorCode.NOT_COORDINATOR)
        return self.transactions.get(transactional_id)

    def _write(self, txn: TxnMetadata) -> None:
        """Persist ``txn`` and, once the append succeeded, hold it."""
        record = TxnRecord(
            txn.producer_id,
            txn.producer_epoch,
            txn.timeout_ms,
            txn.state,
            txn.partitions,
            txn.last_update_ms,
            txn.start_ms,
        )
        index = self.partition_for(txn.transactional_id)
        self._persist(index, encode_key(txn.transactional_id), encode_value(record))
        self.transactions[txn.transactional_id] = txn

    # -- InitProducerId -----------------------------------------------------------

    def init_producer_id(
        self,
        transactional_id: str,
        timeout_ms: int,
        expected: tuple[int, int] | None = None,
    ) -> InitResult:
        """A producer id and epoch for ``transactional_id`` (``expected``: the
        (producer id, epoch) a KIP-360 producer already has, or None)."""
        if not transactional_id:
            return InitResult(ErrorCode.INVALID_REQUEST)
        if not 0 < timeout_ms <= self.config.max_timeout_ms:
            return InitResult(ErrorCode.INVALID_TRANSACTION_TIMEOUT)
        try:
            txn = self._lookup(transactional_id)
            now = self.clock()
            if txn is None:
                txn = TxnMetadata(
                    transactional_id,
                    self._new_producer_id(),
                    NO_EPOCH,
                    timeout_ms,
                    TxnState.EMPTY,
                    last_update_ms=now,
                )
            if expected is not None and not _valid_producer_id(txn, *expected):
                return InitResult(ErrorCode.PRODUCER_FENCED)
            if txn.preparing:
                return InitResult(ErrorCode.CONCURRENT_TRANSACTIONS)
            if txn.state is TxnState.ONGOING:
                # Abort it at a bumped epoch first; the client retries and
                # then gets an epoch bumped once more.
                self._end(txn.prepare_end(False, now, fence=True))
                return InitResult(ErrorCode.CONCURRENT_TRANSACTIONS)
            if epoch_exhausted(txn.producer_epoch) and (
                expected is None or expected[1] == txn.producer_epoch
            ):
                new = txn.rotate_producer_id(
                    self._new_producer_id(), timeout_ms, now, expected is not None
                )
            else:
                bumped = _bump(txn, timeout_ms, now, None if expected is None else expected[1])
                if isinstance(bumped, ErrorCode):
                    return InitResult(bumped)
                new = bumped
            self._write(new)
        except KafkaError as exc:
            return InitResult(exc.code)
        return InitResult(ErrorCode.NONE, new.producer_id, new.producer_epoch)

    # -- AddPartitionsToTxn / AddOffsetsToTxn ---------------------------------------

    def _check_producer(
        self, transactional_id: str, producer_id: int, producer_epoch: int
    ) -> TxnMetadata:
        if not transactional_id:
            raise KafkaError(ErrorCode.INVALID_REQUEST)
        txn = self._lookup(transactional_id)
        if txn is None or txn.producer_id != producer_id:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        if txn.producer_epoch != producer_epoch:
            raise KafkaError(ErrorCode.PRODUCER_FENCED)
        return txn

    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> ErrorCode:
        wanted = frozenset(partitions)
        try:
            txn = self._check_producer(transactional_id, producer_id, producer_epoch)
            if txn.preparing:
                return ErrorCode.CONCURRENT_TRANSACTIONS
            if txn.state is TxnState.ONGOING and wanted <= txn.partitions:
                return ErrorCode.NONE
            self._write(txn.add_partitions(wanted, self.clock()))
        except KafkaError as exc:
            return exc.code
        return ErrorCode.NONE

    def add_offsets(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str
    ) -> ErrorCode:
        """The group's ``__consumer_offsets`` partition joins the transaction,
        so that its transactional offset commits get the markers too."""
        index = partition_for_group(group_id, self.config.offsets_num_partitions)
        return self.add_partitions(
            transactional_id, producer_id, producer_epoch, [(OFFSETS_TOPIC, index)]
        )

    def verify(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Sequence[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """KIP-890 part 1: whether each partition is in the producer's open
        transaction (AddPartitionsToTxn v4+ with verify_only); a partition that
        is not gets TRANSACTION_ABORTABLE, as in Kafka 3.9."""
        try:
            txn = self._check_producer(transactional_id, producer_id, producer_epoch)
            if txn.preparing:
                raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS)
        except KafkaError as exc:
            return dict.fromkeys(partitions, exc.code)
        return {
            tp: ErrorCode.NONE if tp in txn.partitions else ErrorCode.TRANSACTION_ABORTABLE
            for tp in partitions
        }

    # -- EndTxn and the markers -----------------------------------------------------

    def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, committed: bool
    ) -> ErrorCode:
        try:
            txn = self._check_producer(transactional_id, producer_id, producer_epoch)
            state = txn.state
            if state is TxnState.ONGOING:
                self._end(txn.prepare_end(committed, self.clock()))
                return ErrorCode.NONE
            done = TxnState.COMPLETE_COMMIT if committed else TxnState.COMPLETE_ABORT
            preparing = TxnState.PREPARE_COMMIT if committed else TxnState.PREPARE_ABORT
            if state is done:
                return ErrorCode.NONE  # a retry of an EndTxn that succeeded
            if state is preparing:
                return ErrorCode.CONCURRENT_TRANSACTIONS
            log.warning(
                "transactional id %s is %s and was asked to %s",
                transactional_id,
                state.kafka_name,
                "commit" if committed else "abort",
            )
            return ErrorCode.INVALID_TXN_STATE
        except KafkaError as exc:
            return exc.code

    def _end(self, prepared: TxnMetadata) -> None:
        """Write PrepareCommit/PrepareAbort and queue its markers."""
        self._write(prepared)
        self._queue_markers(prepared)

    def _queue_markers(self, txn: TxnMetadata) -> None:
        self._unmarked[txn.transactional_id] = set(txn.partitions)
        self._jobs.append(
            MarkerJob(
                txn.transactional_id,
                txn.producer_id,
                txn.producer_epoch,
                txn.state is TxnState.PREPARE_COMMIT,
                self._coordinator_epoch(self.partition_for(txn.transactional_id)),
                txn.partitions,
            )
        )
        if not txn.partitions:
            self._try_complete(txn.transactional_id)

    def take_marker_jobs(self) -> list[MarkerJob]:
        """The marker jobs queued since the last call, for the shell to run."""
        jobs, self._jobs = self._jobs, []
        return jobs

    def job_current(self, job: MarkerJob) -> bool:
        """Whether ``job`` still has markers to write here: the transaction is
        still prepared at its epoch on a partition this broker serves."""
        txn = self.transactions.get(job.transactional_id)
        return (
            txn is not None
            and txn.preparing
            and txn.producer_id == job.producer_id
            and txn.producer_epoch == job.producer_epoch
            and self.partition_for(job.transactional_id) in self.owned_partitions
            and job.transactional_id in self._unmarked
        )

    def marker_written(self, job: MarkerJob, partition: TopicPartition) -> None:
        """The marker of ``job`` is in ``partition`` (or the partition is gone);
        the last one completes the transaction."""
        if not self.job_current(job):
            return
        remaining = self._unmarked[job.transactional_id]
        remaining.discard(partition)
        if not remaining:
            self._try_complete(job.transactional_id)

    def _try_complete(self, transactional_id: str) -> None:
        txn = self.transactions[transactional_id]
        try:
            self._write(txn.complete(self.clock()))
        except KafkaError as exc:
            if exc.code == ErrorCode.NOT_COORDINATOR:
                return  # the partition's new leader resumes the job
            log.warning("could not complete transaction %s: %s", transactional_id, exc)
            self._timers.schedule(("complete", transactional_id), self.clock() + COMPLETE_RETRY_MS)
            return
        del self._unmarked[transactional_id]

    # -- the tools' view --------------------------------------------------------------

    def describe(self, transactional_id: str) -> TxnMetadata:
        """The id's metadata; KafkaError TRANSACTIONAL_ID_NOT_FOUND when unknown."""
        if not transactional_id:
            raise KafkaError(ErrorCode.INVALID_REQUEST)
        txn = self._lookup(transactional_id)
        if txn is None or txn.state is TxnState.DEAD:
            raise KafkaError(ErrorCode.TRANSACTIONAL_ID_NOT_FOUND)
        return txn

    def list_transactions(
        self,
        states: Iterable[TxnState] = (),
        producer_ids: Iterable[int] = (),
        min_duration_ms: int = -1,
    ) -> list[TxnMetadata]:
        """The ids this broker coordinates, filtered as ListTransactions asks
        (``min_duration_ms``: only transactions open longer than that).
        Raises COORDINATOR_LOAD_IN_PROGRESS while a partition loads, as Kafka."""
        if self.loading_partitions:
            raise KafkaError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        wanted_states, wanted_ids = set(states), set(producer_ids)
        now = self.clock()
        found = []
        for txn in self.transactions.values():
            if wanted_states and txn.state not in wanted_states:
                continue
            if wanted_ids and txn.producer_id not in wanted_ids:
                continue
            if min_duration_ms >= 0 and (txn.start_ms < 0 or now - txn.start_ms <= min_duration_ms):
                continue
            found.append(txn)
        return sorted(found, key=lambda t: t.transactional_id)

    # -- time ------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        return self._timers.next_deadline()

    def tick(self) -> None:
        now = self.clock()
        for kind, name in self._timers.pop_due(now):
            if kind == "abort":
                self._abort_timed_out(int(name))
            elif kind == "expire":
                self._expire_idle(int(name))
            elif kind == "complete" and name in self._unmarked:
                self._try_complete(name)

    def _schedule_checks(self, index: int) -> None:
        now = self.clock()
        self._timers.schedule(("abort", str(index)), now + self.config.abort_check_interval_ms)
        self._timers.schedule(
            ("expire", str(index)), now + self.config.expiration_check_interval_ms
        )

    def _of_partition(self, index: int) -> list[TxnMetadata]:
        return [
            t for t in self.transactions.values() if self.partition_for(t.transactional_id) == index
        ]

    def _abort_timed_out(self, index: int) -> None:
        """Abort, with an epoch bump, the partition's transactions open longer
        than their timeout (Kafka's ``abortTimedOutTransactions``)."""
        if index not in self.owned_partitions:
            return
        now = self.clock()
        for txn in self._of_partition(index):
            if txn.state is TxnState.ONGOING and txn.start_ms + txn.timeout_ms <= now:
                log.info(
                    "aborting transaction %s (producer %d epoch %d): it timed out",
                    txn.transactional_id,
                    txn.producer_id,
                    txn.producer_epoch,
                )
                try:
                    self._end(txn.prepare_end(False, now, fence=True))
                except KafkaError as exc:
                    log.warning("could not abort %s: %s", txn.transactional_id, exc)
        self._timers.schedule(("abort", str(index)), now + self.config.abort_check_interval_ms)

    def _expire_idle(self, index: int) -> None:
        """Remove the partition's ids idle longer than
        ``transactional.id.expiration.ms``: a tombstone in the log."""
        if index not in self.owned_partitions:
            return
        now = self.clock()
        for txn in self._of_partition(index):
            if txn.ended and txn.last_update_ms + self.config.expiration_ms <= now:
                txn.to(TxnState.DEAD)  # checks the transition is legal
                try:
                    self._persist(index, encode_key(txn.transactional_id), None)
                except KafkaError as exc:
                    log.warning("could not expire %s: %s", txn.transactional_id, exc)
                    continue
                del self.transactions[txn.transactional_id]
        self._timers.schedule(
            ("expire", str(index)), now + self.config.expiration_check_interval_ms
        )

    # -- loading and unloading ------------------------------------------------------

    def mark_loading(self, index: int) -> None:
        self.loading_partitions.add(index)

    def replay(self, partition: int, entry: LoggedRecord) -> None:
        """Apply one record of the log (the last record of an id wins).
        Nothing writes ``__transaction_state`` inside a transaction: ends of
        transactions are not looked for there."""
        if isinstance(entry, TxnEnd):
            return
        key, value = entry[0], entry[1]
        transactional_id = decode_key(key)
        record = decode_value(value)
        if record is None:
            self.transactions.pop(transactional_id, None)
            return
        self.transactions[transactional_id] = TxnMetadata(
            transactional_id,
            record.producer_id,
            record.producer_epoch,
            record.timeout_ms,
            record.state,
            record.partitions,
            record.start_ms,
            record.last_update_ms,
        )

    def finish_loading(self, index: int) -> None:
        """Serve the partition: resume the markers of its prepared transactions."""
        self.loading_partitions.discard(index)
        self.owned_partitions.add(index)
        for txn in self._of_partition(index):
            if txn.preparing:
                self._queue_markers(txn)
        self._schedule_checks(index)

    def unload_partition(self, index: int) -> None:
        """Forget the partition's ids: their requests now get NOT_COORDINATOR."""
        self.loading_partitions.discard(index)
        self.owned_partitions.discard(index)
        for txn in self._of_partition(index):
            del self.transactions[txn.transactional_id]
            self._unmarked.pop(txn.transactional_id, None)
        self._timers.cancel(("abort", str(index)))
        self._timers.cancel(("expire", str(index)))


def _valid_producer_id(txn: TxnMetadata, producer_id: int, epoch: int) -> bool:
    """Kafka's ``isValidProducerId``: the id is new, the producer's, or the
    previous one retried after an epoch exhaustion."""
    return (
        txn.producer_epoch == NO_EPOCH
        or producer_id == txn.producer_id
        or (producer_id == txn.last_producer_id and epoch_exhausted(epoch))
    )


def _bump(
    txn: TxnMetadata, timeout_ms: int, now: int, expected_epoch: int | None
) -> TxnMetadata | ErrorCode:
    """Kafka's ``prepareIncrementProducerEpoch``."""
    if expected_epoch is None:
        return txn.bump_epoch(timeout_ms, now, NO_EPOCH)
    if txn.producer_epoch == NO_EPOCH or expected_epoch == txn.producer_epoch:
        return txn.bump_epoch(timeout_ms, now, txn.producer_epoch)
    if expected_epoch == txn.last_producer_epoch:
        # A retry of a bump that succeeded: the same epoch again.
        return txn.bump_epoch(timeout_ms, now, txn.last_producer_epoch, epoch=txn.producer_epoch)
    return ErrorCode.PRODUCER_FENCED
