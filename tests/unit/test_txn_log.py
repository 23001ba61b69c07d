"""Transactions in the partition log: open transactions, markers, the last
stable offset, the aborted-transaction index, snapshots, recovery after
kill -9, truncation, retention and compaction swaps."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from test_log import Clock, open_log, reopen

from moldau.log import fileops
from moldau.log.control import read_marker
from moldau.log.errors import KafkaStorageError
from moldau.log.partition_log import PartitionLog
from moldau.log.producer_state import (
    InvalidProducerEpochError,
    InvalidTxnStateError,
    TransactionCoordinatorFencedError,
)
from moldau.log.txn_index import AbortedTxn, TransactionIndex
from moldau.protocol.batch import iter_batches
from moldau.protocol.records import Record, build_batch


def txn(pid: int, seq: int, records: int = 2, epoch: int = 0, transactional: bool = True) -> bytes:
    return build_batch(
        [Record(i, 0, b"k", b"v%d" % (seq + i)) for i in range(records)],
        base_timestamp=1_000_000,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        is_transactional=transactional,
    )


def markers(log: PartitionLog) -> list[tuple[int, int, bool]]:
    """(offset, producer id, committed) of every marker in the log."""
    found = []
    for segment in log.segments:
        for _, header, raw in segment.iter_batches():
            marker = read_marker(header, raw)
            if marker is not None:
                found.append((header.base_offset, header.producer_id, marker.committed))
    return found


def txn_files(log: PartitionLog) -> list[str]:
    return sorted(n for n in os.listdir(log.directory) if n.endswith(".txnindex"))


def test_a_transaction_holds_the_stable_offset_until_its_marker(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(txn(1, 0))  # 0-1, opens pid 1's transaction
    log.append(txn(2, 0, transactional=False))  # 2-3, plain idempotent
    log.append(txn(3, 0))  # 4-5, opens pid 3's
    log.append(txn(1, 2))  # 6-7, still pid 1's
    log.high_watermark = log.log_end_offset
    assert log.producer_state.ongoing == {1: 0, 3: 4}
    assert log.first_unstable_offset == 0
    assert log.last_stable_offset(log.high_watermark) == 0
    result = log.append_control(1, 0, True, 5, leader_epoch=0)  # commit at 8
    assert (result.base_offset, result.last_offset) == (8, 8)
    # the marker is not below the high watermark yet: still unstable at 0
    assert log.last_stable_offset(8) == 0
    assert log.last_stable_offset(9) == 4  # pid 3 is open
    log.high_watermark = 9
    assert log.first_unstable_offset == 4
    log.append_control(3, 0, False, 5, leader_epoch=0)  # abort at 9
    assert log.last_stable_offset(10) == 10
    assert log.last_stable_offset(7) == 7  # never past the high watermark
    assert markers(log) == [(8, 1, True), (9, 3, False)]
    assert log.aborted_transactions(0, 10) == [(3, 4)]
    assert log.producer_state.producers[3].coordinator_epoch == 5


def test_marker_checks_as_kafka(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(txn(1, 0, epoch=3))
    with pytest.raises(InvalidProducerEpochError) as old_epoch:
        log.append_control(1, 2, True, 0, leader_epoch=0)
    assert old_epoch.value.error_code == 47
    log.append_control(1, 3, False, 7, leader_epoch=0)
    with pytest.raises(TransactionCoordinatorFencedError) as fenced:
        log.append_control(1, 3, False, 6, leader_epoch=0)
    assert fenced.value.error_code == 52
    # a marker with nothing open is written (a retry) but indexes nothing
    log.append_control(1, 3, False, 7, leader_epoch=0)
    assert [m[0] for m in markers(log)] == [2, 3]
    assert log.aborted_transactions(0, 100) == [(1, 0)]
    # a marker with a new epoch (the coordinator's bump) resets the sequences
    log.append_control(1, 4, True, 7, leader_epoch=0)
    assert log.append(txn(1, 0, epoch=4)).base_offset == 5


def test_non_transactional_write_inside_a_transaction_is_refused(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(txn(1, 0))
    with pytest.raises(InvalidTxnStateError) as refused:
        log.append(txn(1, 2, transactional=False))
    assert refused.value.error_code == 48
    two = txn(2, 0) + txn(2, 2, transactional=False)  # one request, two batches
    with pytest.raises(InvalidTxnStateError):
        log.append(two)
    assert log.log_end_offset == 2


def test_aborted_transactions_of_a_fetch_range(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=250)
    log.append(txn(1, 0))  # 0-1
    log.append(txn(2, 0))  # 2-3
    log.append_control(1, 0, False, 0, leader_epoch=0)  # 4: abort 1 (lso 2: pid 2 open)
    log.append(txn(1, 2))  # 5-6
    log.append_control(2, 0, False, 0, leader_epoch=0)  # 7: abort 2
    log.append_control(1, 0, True, 0, leader_epoch=0)  # 8: commit 1
    log.append(txn(3, 0))  # 9-10
    log.append_control(3, 0, False, 0, leader_epoch=0)  # 11
    assert len(log.segments) > 2
    assert log.aborted_transactions(0, 12) == [(1, 0), (2, 2), (3, 9)]
    assert log.aborted_transactions(0, 2) == [(1, 0)]
    assert log.aborted_transactions(5, 9) == [(2, 2)]
    assert log.aborted_transactions(8, 12) == [(3, 9)]
    assert log.aborted_transactions(12, 20) == []
    entries = [e for s in log.segments for e in s.txn_index.entries]
    assert entries == [
        AbortedTxn(1, 0, 4, 2),
        AbortedTxn(2, 2, 7, 5),
        AbortedTxn(3, 9, 11, 12),
    ]
    # Kafka's on-disk format: 34 bytes an entry, version 0 first
    index_file = os.path.join(log.directory, txn_files(log)[0])
    assert TransactionIndex(index_file).entries[0] == AbortedTxn(1, 0, 4, 2)
    assert os.path.getsize(index_file) % 34 == 0


def test_state_and_index_survive_restarts_and_kill_9(tmp_path: Path) -> None:
    clock = Clock()
    log = open_log(tmp_path, clock, segment_bytes=300)
    log.append(txn(1, 0))  # 0-1
    log.append(txn(2, 0))  # 2-3
    log.append_control(2, 0, False, 1, leader_epoch=0)  # 4
    for seq in range(2, 12, 2):  # pid 1 stays open across rolls (snapshots)
        log.append(txn(1, seq))
    log.append(txn(3, 0))
    log.append_control(3, 0, False, 1, leader_epoch=0)
    assert len(log.segments) > 2
    expected = log.aborted_transactions(0, log.log_end_offset)
    end = log.log_end_offset
    for clean in (True, False):
        log = reopen(log, clean=clean)
        log.high_watermark = end
        assert log.producer_state.ongoing == {1: 0}
        assert log.last_stable_offset(end) == 0
        assert log.aborted_transactions(0, end) == expected
        assert log.producer_state.producers[2].coordinator_epoch == 1
    # kill -9 after the index files vanished (lost with the page cache):
    # replay from the snapshot before them rebuilds the entries
    for name in txn_files(log):
        os.unlink(os.path.join(log.directory, name))
    for name in os.listdir(log.directory):
        if name.endswith(".snapshot"):
            os.unlink(os.path.join(log.directory, name))
    log = reopen(log)
    assert log.aborted_transactions(0, end) == expected
    log.append_control(1, 0, False, 1, leader_epoch=0)
    assert log.producer_state.ongoing == {}
    assert log.last_stable_offset(log.log_end_offset) == log.log_end_offset


def test_recovery_drops_index_entries_of_markers_cut_off(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(txn(1, 0))
    log.append_control(1, 0, False, 0, leader_epoch=0)  # 2
    size = log.segments[-1].size
    log.append(txn(1, 2))
    log.append_control(1, 0, False, 0, leader_epoch=0)  # 5
    log.flush()
    with open(log.segments[-1].path, "r+b") as f:
        f.truncate(size + 10)  # a torn batch after the first marker
    log = reopen(log)
    assert log.log_end_offset == 3
    assert log.aborted_transactions(0, 10) == [(1, 0)]
    assert os.path.getsize(os.path.join(log.directory, txn_files(log)[0])) == 34


def test_truncation_and_retention_carry_the_index(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=300)
    log.append(txn(1, 0))  # 0-1
    log.append_control(1, 0, False, 0, leader_epoch=0)  # 2
    log.append(txn(1, 2))  # 3-4
    log.append(txn(2, 0))
    log.append_control(1, 0, False, 0, leader_epoch=0)
    log.append_control(2, 0, False, 0, leader_epoch=0)
    assert log.aborted_transactions(0, 100) == [(1, 0), (1, 3), (2, 5)]
    # follower truncation below the last marker reopens pid 2's transaction
    last = markers(log)[-1][0]
    log.truncate_to(last)
    assert log.aborted_transactions(0, 100) == [(1, 0), (1, 3)]
    assert log.producer_state.ongoing == {2: 5}
    # retention of the first segment removes its index file
    first_files = len(txn_files(log))
    log.high_watermark = log.log_end_offset
    log.delete_records_before(log.segments[1].base_offset)
    assert len(txn_files(log)) == first_files - 1


def test_follower_tracks_markers_like_the_leader(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    leader.append(txn(1, 0))
    leader.append(txn(2, 0))
    leader.append_control(1, 0, False, 3, leader_epoch=0)
    leader.append(txn(4, 0))
    raw = b"".join(bytes(s.read()) for s in leader.read(0, 1 << 20).slices)
    follower = open_log(tmp_path / "follower")
    follower.append_as_follower(raw)
    for log in (leader, follower):
        log.high_watermark = log.log_end_offset
    assert follower.producer_state.ongoing == leader.producer_state.ongoing == {2: 2, 4: 5}
    assert follower.aborted_transactions(0, 10) == leader.aborted_transactions(0, 10)
    assert follower.last_stable_offset(7) == leader.last_stable_offset(7) == 2
    assert len(list(iter_batches(raw))) == 4


def test_read_end_offset(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=300)
    for seq in range(0, 12, 2):
        log.append(txn(1, seq, transactional=False))
    one = log.read(0, 1)  # the first batch only
    assert log.read_end_offset(one) == 2
    everything = log.read(0, 1 << 20)
    assert log.read_end_offset(everything) == log.log_end_offset


def test_a_failed_index_write_takes_the_partition_offline_and_loses_nothing(
    tmp_path: Path,
) -> None:
    log = open_log(tmp_path)
    log.append(txn(1, 0))
    plan = fileops.FaultPlan(fail_at=1, error=errno.ENOSPC, suffixes=(".txnindex",))
    with fileops.inject(plan), pytest.raises(KafkaStorageError):
        log.append_control(1, 0, False, 0, leader_epoch=0)  # the marker is written, not indexed
    assert plan.failed == 1 and log.offline is not None
    with pytest.raises(KafkaStorageError):
        log.append(txn(2, 0))
    log.close()
    log = reopen(log)  # the next start replays the marker into the index
    assert log.aborted_transactions(0, 10) == [(1, 0)]
    assert log.producer_state.ongoing == {}
