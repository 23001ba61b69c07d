"""Compaction of transactional data, as Kafka's cleaner does it: aborted
records go at the first clean, a marker once its transaction has no batch
left and its delete horizon passed; nothing at or past the last stable
offset is touched; the aborted-transaction index follows the markers."""

from __future__ import annotations

from pathlib import Path

from test_cleaner import DAY, cleaner_for, compacted, contents
from test_log import Clock, reopen
from test_txn_log import markers

from moldau.log.partition_log import PartitionLog
from moldau.protocol.records import Record, build_batch


def write(
    log: PartitionLog,
    key: bytes,
    value: bytes,
    pid: int = -1,
    seq: int = -1,
    transactional: bool = False,
) -> None:
    log.append(
        build_batch(
            [Record(0, 0, key, value)],
            base_timestamp=1_000,
            producer_id=pid,
            producer_epoch=0 if pid >= 0 else -1,
            base_sequence=seq,
            is_transactional=transactional,
        )
    )


def values(log: PartitionLog) -> list[bytes | None]:
    return [value for _, _, value, _ in contents(log) if len(value or b"") != 6]


def test_aborted_records_then_markers_are_removed(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted(tmp_path, clock, delete_retention_ms=DAY)
    write(log, b"k1", b"aborted-1", pid=1, seq=0, transactional=True)  # 0
    write(log, b"k2", b"aborted-2", pid=1, seq=1, transactional=True)  # 1
    log.append_control(1, 0, False, 0, leader_epoch=0)  # 2
    write(log, b"k3", b"committed", pid=2, seq=0, transactional=True)  # 3
    log.append_control(2, 0, True, 0, leader_epoch=0)  # 4
    write(log, b"k3", b"newer")  # 5: replaces the committed record
    write(log, b"k1", b"plain")  # 6
    write(log, b"k9", b"open", pid=3, seq=0, transactional=True)  # 7: never ended
    write(log, b"k9", b"after-open")  # 8
    for i in range(12):  # roll a few segments past the open transaction
        write(log, b"f%d" % i, b"filler")
    log.high_watermark = log.log_end_offset
    assert log.last_stable_offset(log.high_watermark) == 7
    assert log.aborted_transactions(0, 7) == [(1, 0)]

    # first clean: the aborted records go; both markers stay (their
    # transactions had batches in this clean), A's index entry too
    cleaner_for(log, clock).run_until_clean()
    kept = values(log)
    assert b"aborted-1" not in kept and b"aborted-2" not in kept
    assert b"committed" not in kept and b"newer" in kept and b"plain" in kept
    assert b"open" in kept and b"after-open" in kept  # past the LSO: untouched
    assert [m[0] for m in markers(log)] == [2, 4]
    assert log.aborted_transactions(0, 7) == [(1, 0)]
    log = reopen(log, clean=True)  # the cleaned segment's .txnindex was swapped in
    log.high_watermark = log.log_end_offset
    assert log.aborted_transactions(0, 7) == [(1, 0)]

    # second clean: no batch of either transaction is left: horizons stamped
    cleaner_for(log, clock).run_until_clean()
    assert [m[0] for m in markers(log)] == [2, 4]
    assert log.aborted_transactions(0, 7) == []
    clock.now += DAY // 2
    cleaner_for(log, clock).run_until_clean()  # before the horizon: kept
    assert [m[0] for m in markers(log)] == [2, 4]

    clock.now += DAY
    cleaner_for(log, clock).run_until_clean()
    assert markers(log) == []
    assert log.last_stable_offset(log.high_watermark) == 7
    # a restart replays the cleaned log: only the open transaction is open
    log = reopen(log)
    log.high_watermark = log.log_end_offset
    assert log.producer_state.ongoing == {3: 7}
    assert log.last_stable_offset(log.high_watermark) == 7
    log.append_control(3, 0, True, 0, leader_epoch=0)
    log.high_watermark = log.log_end_offset
    assert log.last_stable_offset(log.high_watermark) == log.log_end_offset


def test_aborted_keys_do_not_shadow_earlier_values(tmp_path: Path) -> None:
    """An aborted write of a key must not make the cleaner drop the key's
    earlier committed value (its offset never enters the map)."""
    clock = Clock()
    log = compacted(tmp_path, clock)
    write(log, b"k", b"committed")
    write(log, b"k", b"aborted", pid=1, seq=0, transactional=True)
    log.append_control(1, 0, False, 0, leader_epoch=0)
    for i in range(12):
        write(log, b"f%d" % i, b"filler")
    log.high_watermark = log.log_end_offset
    cleaner_for(log, clock).run_until_clean()
    kept = values(log)
    assert b"committed" in kept and b"aborted" not in kept
