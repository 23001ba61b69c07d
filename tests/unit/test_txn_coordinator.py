"""The transaction coordinator's decisions, with an injected clock and a log
kept in a list (the records are replayed by a second coordinator to check
what a new leader would see)."""

from __future__ import annotations

import itertools

import pytest

from moldau.group.placement import partition_for_group
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.txn.coordinator import (
    MarkerJob,
    TxnConfig,
    TxnCoordinator,
    partition_for_transaction,
)
from moldau.txn.records import decode_key, decode_value
from moldau.txn.state import MAX_EPOCH, IllegalTransition, TxnMetadata, TxnState

TX = "tx-1"
T0 = ("t", 0)
T1 = ("t", 1)
CONFIG = TxnConfig(
    num_partitions=4,
    offsets_num_partitions=5,
    max_timeout_ms=60_000,
    abort_check_interval_ms=1_000,
    expiration_ms=100_000,
    expiration_check_interval_ms=10_000,
)


class Harness:
    def __init__(self) -> None:
        self.now = 1_000
        self.log: list[tuple[int, bytes, bytes | None]] = []
        self.fail: ErrorCode | None = None
        self.ids = itertools.count(100)
        self.coordinator = self.fresh()
        for index in range(CONFIG.num_partitions):
            self.coordinator.mark_loading(index)
            self.coordinator.finish_loading(index)

    def fresh(self) -> TxnCoordinator:
        return TxnCoordinator(
            CONFIG, lambda: self.now, self.persist, lambda: next(self.ids), lambda index: 7
        )

    def persist(self, index: int, key: bytes, value: bytes | None) -> None:
        if self.fail is not None:
            raise KafkaError(self.fail)
        self.log.append((index, key, value))

    def init(
        self, expected: tuple[int, int] | None = None, timeout: int = 10_000
    ) -> tuple[int, int]:
        result = self.coordinator.init_producer_id(TX, timeout, expected)
        assert result.error == ErrorCode.NONE, result
        return result.producer_id, result.producer_epoch

    def state(self, tx: str = TX) -> TxnMetadata:
        return self.coordinator.transactions[tx]

    def finish_markers(self) -> list[MarkerJob]:
        jobs = self.coordinator.take_marker_jobs()
        for job in jobs:
            for tp in job.partitions:
                self.coordinator.marker_written(job, tp)
        return jobs

    def advance(self, ms: int) -> None:
        self.now += ms
        self.coordinator.tick()


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_partition_is_kafkas_abs_hash_mod_partitions() -> None:
    # Java: "tx-1".hashCode() == ((116 * 31 + 120) * 31 + 45) * 31 + 49 == 3572520.
    assert partition_for_transaction("tx-1", 50) == 3572520 % 50


def test_state_names_are_kafkas() -> None:
    assert TxnState.PREPARE_EPOCH_FENCE.kafka_name == "PrepareEpochFence"
    assert TxnState.from_kafka_name("CompleteCommit") is TxnState.COMPLETE_COMMIT
    assert TxnState.from_kafka_name("Nonsense") is None


def test_illegal_transitions_raise() -> None:
    empty = TxnMetadata(TX, 1, 0, 1000, TxnState.EMPTY)
    with pytest.raises(IllegalTransition):
        empty.to(TxnState.PREPARE_COMMIT)
    with pytest.raises(IllegalTransition):
        empty.to(TxnState.COMPLETE_ABORT)
    ongoing = empty.add_partitions(frozenset({T0}), 5)
    with pytest.raises(IllegalTransition):
        ongoing.to(TxnState.DEAD)
    assert ongoing.prepare_end(True, 6).complete(7).state is TxnState.COMPLETE_COMMIT


def test_new_id_gets_a_producer_id_at_epoch_0_and_is_written(h: Harness) -> None:
    assert h.init() == (100, 0)
    index, key, value = h.log[-1]
    assert index == partition_for_transaction(TX, 4)
    assert decode_key(key) == TX
    record = decode_value(value)
    assert record is not None
    assert (record.producer_id, record.producer_epoch, record.state) == (100, 0, TxnState.EMPTY)


def test_second_init_bumps_the_epoch_and_fences_the_first(h: Harness) -> None:
    pid, epoch = h.init()
    assert h.init() == (pid, epoch + 1)
    assert h.coordinator.add_partitions(TX, pid, epoch, [T0]) == ErrorCode.PRODUCER_FENCED
    assert h.coordinator.end_txn(TX, pid, epoch, True) == ErrorCode.PRODUCER_FENCED
    assert h.coordinator.add_partitions(TX, pid, epoch + 1, [T0]) == ErrorCode.NONE


def test_kip360_init_with_the_current_epoch_bumps_and_a_retry_gets_the_same(h: Harness) -> None:
    pid, epoch = h.init()
    assert h.init((pid, epoch)) == (pid, epoch + 1)
    assert h.init((pid, epoch)) == (pid, epoch + 1)  # retried: last epoch matches
    result = h.coordinator.init_producer_id(TX, 10_000, (pid, epoch - 5))
    assert result.error == ErrorCode.PRODUCER_FENCED
    result = h.coordinator.init_producer_id(TX, 10_000, (pid + 50, epoch))
    assert result.error == ErrorCode.PRODUCER_FENCED


def test_exhausted_epoch_gets_a_new_producer_id(h: Harness) -> None:
    pid, _ = h.init()
    h.coordinator.transactions[TX] = TxnMetadata(TX, pid, MAX_EPOCH - 1, 10_000, TxnState.EMPTY)
    new_pid, epoch = h.init((pid, MAX_EPOCH - 1))
    assert (new_pid != pid, epoch) == (True, 0)
    assert h.state().last_producer_id == pid
    # A retry (the answer was lost) gets the same new producer id and epoch.
    assert h.init((pid, MAX_EPOCH - 1)) == (new_pid, 0)
    # Without an expected epoch the exhausted id rotates too.
    h.coordinator.transactions[TX] = TxnMetadata(TX, pid, MAX_EPOCH - 1, 10_000, TxnState.EMPTY)
    assert h.init()[1] == 0


def test_timeouts_are_checked(h: Harness) -> None:
    for timeout in (0, -1, CONFIG.max_timeout_ms + 1):
        result = h.coordinator.init_producer_id(TX, timeout)
        assert result.error == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert h.coordinator.init_producer_id("", 1000).error == ErrorCode.INVALID_REQUEST
    assert h.log == []


def test_commit_writes_prepare_then_complete_once_every_marker_is_written(h: Harness) -> None:
    pid, epoch = h.init()
    assert h.coordinator.add_partitions(TX, pid, epoch, [T0]) == ErrorCode.NONE
    assert h.coordinator.add_partitions(TX, pid, epoch, [T1]) == ErrorCode.NONE
    writes = len(h.log)
    assert h.coordinator.add_partitions(TX, pid, epoch, [T0, T1]) == ErrorCode.NONE
    assert len(h.log) == writes, "partitions already in the transaction are not written again"
    assert h.state().state is TxnState.ONGOING
    assert h.state().start_ms == 1_000
    assert h.coordinator.end_txn(TX, pid, epoch, True) == ErrorCode.NONE
    assert h.state().state is TxnState.PREPARE_COMMIT
    # While the markers go out: retries and new work wait.
    assert h.coordinator.end_txn(TX, pid, epoch, True) == ErrorCode.CONCURRENT_TRANSACTIONS
    assert h.coordinator.end_txn(TX, pid, epoch, False) == ErrorCode.INVALID_TXN_STATE
    assert h.coordinator.add_partitions(TX, pid, epoch, [T0]) == ErrorCode.CONCURRENT_TRANSACTIONS
    assert h.coordinator.init_producer_id(TX, 1000).error == ErrorCode.CONCURRENT_TRANSACTIONS
    [job] = h.coordinator.take_marker_jobs()
    assert job == MarkerJob(TX, pid, epoch, True, 7, frozenset({T0, T1}))
    h.coordinator.marker_written(job, T0)
    assert h.state().state is TxnState.PREPARE_COMMIT
    h.coordinator.marker_written(job, T1)
    assert h.state().state is TxnState.COMPLETE_COMMIT
    assert h.state().partitions == frozenset()
    assert h.coordinator.end_txn(TX, pid, epoch, True) == ErrorCode.NONE  # a retry
    assert h.coordinator.end_txn(TX, pid, epoch, False) == ErrorCode.INVALID_TXN_STATE
    states = [decode_value(v).state for _, _, v in h.log if v is not None]  # type: ignore[union-attr]
    assert states[-2:] == [TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT]
    # The next transaction starts from CompleteCommit.
    h.now += 50
    assert h.coordinator.add_partitions(TX, pid, epoch, [T1]) == ErrorCode.NONE
    assert (h.state().state, h.state().start_ms) == (TxnState.ONGOING, 1_050)


def test_abort(h: Harness) -> None:
    pid, epoch = h.init()
    h.coordinator.add_partitions(TX, pid, epoch, [T0])
    assert h.coordinator.end_txn(TX, pid, epoch, False) == ErrorCode.NONE
    [job] = h.finish_markers()
    assert not job.committed
    assert h.state().state is TxnState.COMPLETE_ABORT
    assert h.coordinator.end_txn(TX, pid, epoch, False) == ErrorCode.NONE
    assert h.coordinator.end_txn(TX, pid, epoch, True) == ErrorCode.INVALID_TXN_STATE


def test_end_without_a_transaction_and_unknown_ids(h: Harness) -> None:
    pid, epoch = h.init()
    assert h.coordinator.end_txn(TX, pid, epoch, True) == ErrorCode.INVALID_TXN_STATE
    assert h.coordinator.end_txn("other", pid, epoch, True) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    assert h.coordinator.end_txn(TX, pid + 1, epoch, True) == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    assert h.coordinator.add_partitions("", pid, epoch, [T0]) == ErrorCode.INVALID_REQUEST


def test_add_offsets_adds_the_groups_offsets_partition(h: Harness) -> None:
    pid, epoch = h.init()
    assert h.coordinator.add_offsets(TX, pid, epoch, "g") == ErrorCode.NONE
    expected = ("__consumer_offsets", partition_for_group("g", CONFIG.offsets_num_partitions))
    assert h.state().partitions == frozenset({expected})


def test_init_during_an_open_transaction_aborts_it_with_a_bumped_epoch(h: Harness) -> None:
    pid, epoch = h.init()
    h.coordinator.add_partitions(TX, pid, epoch, [T0])
    result = h.coordinator.init_producer_id(TX, 10_000)
    assert result.error == ErrorCode.CONCURRENT_TRANSACTIONS
    assert (h.state().state, h.state().producer_epoch) == (TxnState.PREPARE_ABORT, epoch + 1)
    # The zombie is fenced while the abort completes.
    assert h.coordinator.end_txn(TX, pid, epoch, True) == ErrorCode.PRODUCER_FENCED
    [job] = h.finish_markers()
    assert (job.committed, job.producer_epoch) == (False, epoch + 1)
    assert h.init() == (pid, epoch + 2)


def test_timed_out_transaction_is_aborted_and_its_producer_fenced(h: Harness) -> None:
    pid, epoch = h.init(timeout=1_500)
    h.coordinator.add_partitions(TX, pid, epoch, [T0])
    h.advance(1_000)  # the first check: 1 000 ms in, not timed out yet
    assert h.state().state is TxnState.ONGOING
    assert h.coordinator.next_deadline() == h.now + 1_000
    h.advance(1_000)
    assert (h.state().state, h.state().producer_epoch) == (TxnState.PREPARE_ABORT, epoch + 1)
    h.finish_markers()
    assert h.state().state is TxnState.COMPLETE_ABORT
    assert h.coordinator.end_txn(TX, pid, epoch, True) == ErrorCode.PRODUCER_FENCED
    assert h.coordinator.add_partitions(TX, pid, epoch, [T0]) == ErrorCode.PRODUCER_FENCED


def test_idle_ids_expire_with_a_tombstone(h: Harness) -> None:
    pid, epoch = h.init()
    h.coordinator.add_partitions(TX, pid, epoch, [T0])
    h.advance(CONFIG.expiration_ms + CONFIG.expiration_check_interval_ms)
    assert TX in h.coordinator.transactions, "an open transaction does not expire"
    h.coordinator.end_txn(TX, pid, h.state().producer_epoch, False)
    h.finish_markers()
    h.advance(CONFIG.expiration_ms + CONFIG.expiration_check_interval_ms)
    assert TX not in h.coordinator.transactions
    assert h.log[-1][2] is None
    assert h.init()[0] != pid, "an expired id starts over with a new producer id"


def test_verify_for_kip890(h: Harness) -> None:
    pid, epoch = h.init()
    h.coordinator.add_partitions(TX, pid, epoch, [T0])
    assert h.coordinator.verify(TX, pid, epoch, [T0, T1]) == {
        T0: ErrorCode.NONE,
        T1: ErrorCode.TRANSACTION_ABORTABLE,
    }
    assert h.coordinator.verify(TX, pid, epoch - 1, [T0]) == {T0: ErrorCode.PRODUCER_FENCED}
    assert h.coordinator.verify("nope", pid, epoch, [T0]) == {
        T0: ErrorCode.INVALID_PRODUCER_ID_MAPPING
    }
    h.coordinator.end_txn(TX, pid, epoch, True)
    assert h.coordinator.verify(TX, pid, epoch, [T0]) == {T0: ErrorCode.CONCURRENT_TRANSACTIONS}


def test_a_failed_write_changes_nothing(h: Harness) -> None:
    pid, epoch = h.init()
    h.fail = ErrorCode.NOT_COORDINATOR
    assert h.coordinator.add_partitions(TX, pid, epoch, [T0]) == ErrorCode.NOT_COORDINATOR
    assert h.state().state is TxnState.EMPTY
    assert h.coordinator.init_producer_id(TX, 1000).error == ErrorCode.NOT_COORDINATOR
    assert h.state().producer_epoch == epoch


def test_a_failed_complete_write_is_retried(h: Harness) -> None:
    pid, epoch = h.init()
    h.coordinator.add_partitions(TX, pid, epoch, [T0])
    h.coordinator.end_txn(TX, pid, epoch, True)
    h.fail = ErrorCode.COORDINATOR_NOT_AVAILABLE
    h.finish_markers()
    assert h.state().state is TxnState.PREPARE_COMMIT
    h.fail = None
    h.advance(100)
    assert h.state().state is TxnState.COMPLETE_COMMIT


def test_loading_unloading_and_resuming_markers(h: Harness) -> None:
    pid, epoch = h.init()
    h.coordinator.add_partitions(TX, pid, epoch, [T0, T1])
    h.coordinator.end_txn(TX, pid, epoch, False)
    h.coordinator.take_marker_jobs()
    index = partition_for_transaction(TX, CONFIG.num_partitions)
    # A new leader replays the log and resumes the markers.
    other = h.fresh()
    other.mark_loading(index)
    assert other.init_producer_id(TX, 1000).error == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    for i, key, value in h.log:
        if i == index:
            other.replay(index, (key, value))
    other.finish_loading(index)
    assert other.transactions[TX].state is TxnState.PREPARE_ABORT
    [job] = other.take_marker_jobs()
    assert job.partitions == frozenset({T0, T1}) and not job.committed
    for tp in job.partitions:
        other.marker_written(job, tp)
    assert other.transactions[TX].state is TxnState.COMPLETE_ABORT
    # The old leader lets go: its ids are NOT_COORDINATOR and its jobs stale.
    h.coordinator.unload_partition(index)
    assert h.coordinator.add_partitions(TX, pid, epoch, [T0]) == ErrorCode.NOT_COORDINATOR
    assert not h.coordinator.job_current(job)
    with pytest.raises(KafkaError) as raised:
        h.coordinator.describe(TX)
    assert raised.value.code == ErrorCode.NOT_COORDINATOR


def test_describe_and_list(h: Harness) -> None:
    pid, epoch = h.init()
    h.coordinator.add_partitions(TX, pid, epoch, [T0])
    h.coordinator.init_producer_id("tx-2", 1000)
    txn = h.coordinator.describe(TX)
    assert (txn.state, txn.partitions, txn.start_ms) == (TxnState.ONGOING, frozenset({T0}), 1_000)
    with pytest.raises(KafkaError) as raised:
        h.coordinator.describe("unknown")
    assert raised.value.code == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    names = [t.transactional_id for t in h.coordinator.list_transactions()]
    assert names == [TX, "tx-2"]
    ongoing = h.coordinator.list_transactions(states=[TxnState.ONGOING])
    assert [t.transactional_id for t in ongoing] == [TX]
    by_pid = h.coordinator.list_transactions(producer_ids=[pid])
    assert [t.transactional_id for t in by_pid] == [TX]
    h.now += 500
    assert [t.transactional_id for t in h.coordinator.list_transactions(min_duration_ms=400)] == [
        TX
    ]
    assert h.coordinator.list_transactions(min_duration_ms=600) == []
    h.coordinator.mark_loading(0)
    with pytest.raises(KafkaError):
        h.coordinator.list_transactions()
