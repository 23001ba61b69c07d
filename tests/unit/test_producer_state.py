"""Idempotent producers: duplicates, sequence and epoch checks, snapshots,
recovery after kill -9, truncation and expiry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_log import Clock, open_log, reopen

from moldau.log.partition_log import PartitionLog
from moldau.log.producer_state import (
    INT32_MAX,
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
    ProducerStateManager,
    last_sequence,
)
from moldau.protocol.batch import read_header
from moldau.protocol.records import Record, build_batch

PID = 1000


def idem(seq: int, records: int = 2, epoch: int = 0, pid: int = PID) -> bytes:
    return build_batch(
        [Record(i, 0, b"k", b"v%d" % (seq + i)) for i in range(records)],
        base_timestamp=1,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


def snapshots(log: PartitionLog) -> list[str]:
    return sorted(n for n in os.listdir(log.directory) if n.endswith(".snapshot"))


def test_retries_are_answered_with_the_original_offsets(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(idem(0, records=3, pid=7))  # another producer, offsets 0..2
    results = [log.append(idem(seq)) for seq in range(0, 12, 2)]  # 3..14
    assert [r.base_offset for r in results] == [3, 5, 7, 9, 11, 13]
    end, size = log.log_end_offset, log.size_in_bytes
    retry = log.append(idem(4))  # one of the last five
    assert retry.duplicate and (retry.base_offset, retry.last_offset) == (7, 8)
    assert retry.record_count == 2
    assert (log.log_end_offset, log.size_in_bytes) == (end, size)
    assert not results[0].duplicate
    with pytest.raises(OutOfOrderSequenceError) as too_old:  # sixth from the end: forgotten
        log.append(idem(0))
    assert too_old.value.error_code == 45


def test_sequence_and_epoch_rules(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert log.append(idem(17)).base_offset == 0  # unknown producer: any sequence (KIP-360)
    with pytest.raises(OutOfOrderSequenceError):
        log.append(idem(20))  # gap after 18
    log.append(idem(19))
    with pytest.raises(OutOfOrderSequenceError):
        log.append(idem(5, epoch=1))  # a new epoch starts at 0
    log.append(idem(0, epoch=1))
    with pytest.raises(InvalidProducerEpochError) as fenced:
        log.append(idem(21, epoch=0))
    assert fenced.value.error_code == 47
    # several batches of one producer in one request follow each other
    result = log.append(idem(2, epoch=1) + idem(4, epoch=1, records=1))
    assert (result.base_offset, result.last_offset) == (6, 8)
    with pytest.raises(OutOfOrderSequenceError):
        log.append(idem(5, epoch=1) + idem(9, epoch=1))
    assert log.log_end_offset == 9
    # batches without a producer id are not checked
    log.append(build_batch([Record(0, 0, None, b"x")]))


def test_sequences_wrap_after_int32_max(tmp_path: Path) -> None:
    header = read_header(idem(INT32_MAX - 1, records=3))
    assert last_sequence(header) == 0
    log = open_log(tmp_path)
    log.append(idem(INT32_MAX - 1, records=2))
    log.append(idem(0))


def test_state_survives_clean_restarts_and_kill_9(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=300)
    for seq in range(0, 20, 2):
        log.append(idem(seq))
    assert len(log.segments) > 2 and snapshots(log)  # one per roll, the last two kept
    assert len(snapshots(log)) == 2
    log = reopen(log)  # kill -9: snapshot at the last roll plus the tail replayed
    assert log.append(idem(18)).duplicate
    with pytest.raises(OutOfOrderSequenceError):
        log.append(idem(22))
    log.append(idem(20))
    log = reopen(log, clean=True)  # snapshot at the log end, nothing to replay
    assert f"{log.log_end_offset:020d}.snapshot" in snapshots(log)
    for seq, offset in ((20, 20), (14, 14)):  # any of the last five
        retry = log.append(idem(seq))
        assert retry.duplicate and retry.base_offset == offset
    log.append(idem(22))


def test_stale_and_corrupt_snapshots_are_ignored(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=300)
    for seq in range(0, 12, 2):
        log.append(idem(seq))
    newest = os.path.join(log.directory, snapshots(log)[-1])
    with open(newest, "r+b") as f:
        f.seek(10)
        f.write(b"\xff")
    ahead = os.path.join(log.directory, f"{10**6:020d}.snapshot")
    with open(ahead, "wb") as f:
        f.write(b"\x00\x01")
    log = reopen(log)
    assert not os.path.exists(ahead) and not os.path.exists(newest)
    assert log.append(idem(10)).duplicate


def test_truncation_rebuilds_the_state(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=300)
    for seq in range(0, 12, 2):
        log.append(idem(seq))
    log.truncate_to(8)  # the batches with sequences 8 and 10 are gone
    again = log.append(idem(8))
    assert not again.duplicate and again.base_offset == 8
    log.truncate_to(0)
    assert log.append(idem(4)).base_offset == 0  # unknown again: any sequence


def test_follower_appends_update_the_state(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader")
    follower = open_log(tmp_path / "follower")
    for seq in (0, 2):
        leader.append(idem(seq))
    data = b"".join(s.read() for s in leader.read(0, 1 << 20).slices)
    follower.append_as_follower(data)
    assert follower.append(idem(2)).duplicate


def test_expiry(tmp_path: Path) -> None:
    clock = Clock(1_000)
    log = open_log(tmp_path, clock)
    log.append(idem(0, pid=1))
    clock.now = 5_000
    log.append(idem(0, pid=2))
    assert log.expire_producers(clock.now, 3_000) == 1
    assert set(log.producer_state.producers) == {2}
    assert log.append(idem(9, pid=1)).base_offset == 4  # forgotten: any sequence again


def test_snapshot_round_trip(tmp_path: Path) -> None:
    manager = ProducerStateManager(str(tmp_path))
    for pid, seq in ((1, 0), (2, 40), (1, 2)):
        manager.record(read_header(idem(seq, pid=pid, epoch=3)), seq * 10, 77)
    manager.take_snapshot(123)
    assert os.listdir(tmp_path) == [f"{123:020d}.snapshot"]
    loaded = ProducerStateManager(str(tmp_path))
    assert loaded.load(500) == 123
    assert {pid: (e.epoch, list(e.batches)) for pid, e in loaded.producers.items()} == {
        pid: (e.epoch, list(e.batches)) for pid, e in manager.producers.items()
    }
    assert loaded.load(100) == 0 and not os.listdir(tmp_path)
