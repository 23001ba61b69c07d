"""Retention (time, size, log start offset) and DeleteRecords."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from test_log import Clock, batch, batches_in, open_log, read_all, reopen

from moldau.log import checkpoint
from moldau.log.config import LogConfig
from moldau.log.errors import OffsetOutOfRangeError
from moldau.log.manager import LogManager
from moldau.log.partition_log import PartitionLog

HOUR = 3_600_000


def filled(tmp_path: Path, clock: Clock, count: int = 6, **config: object) -> PartitionLog:
    """A log with ``count`` one-batch segments of 2 records, timestamps 1h apart."""
    log = open_log(tmp_path, clock, segment_bytes=200, **config)
    for i in range(count):
        log.append(batch(2, value_size=40, ts=i * HOUR))
    assert len(log.segments) == count
    log.high_watermark = log.log_end_offset
    return log


def test_time_retention_removes_expired_segments(tmp_path: Path) -> None:
    clock = Clock(0)
    log = filled(tmp_path, clock, retention_ms=2 * HOUR)
    clock.now = 4 * HOUR  # segments with timestamps 0h and 1h are older than 2h
    assert log.delete_old_segments() == 2
    assert log.log_start_offset == 4 and log.segments[0].base_offset == 4
    assert len([n for n in os.listdir(log.directory) if "index" in n or ".log" in n]) == 4 * 3
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 100)
    assert batches_in(read_all(log, 4))[0].base_offset == 4
    assert log.delete_old_segments() == 0


def test_retention_never_passes_the_high_watermark(tmp_path: Path) -> None:
    clock = Clock(0)
    log = filled(tmp_path, clock, retention_ms=HOUR)
    log.high_watermark = 3  # inside the second segment
    clock.now = 100 * HOUR
    assert log.delete_old_segments() == 1
    assert log.log_start_offset == 2


def test_an_expired_active_segment_is_rolled_and_removed(tmp_path: Path) -> None:
    clock = Clock(0)
    log = filled(tmp_path, clock, retention_ms=HOUR)
    clock.now = 100 * HOUR
    assert log.delete_old_segments() == 6
    assert (log.log_start_offset, log.log_end_offset) == (12, 12)
    (segment,) = log.segments
    assert (segment.base_offset, segment.size) == (12, 0)
    assert log.read(12, 100).size == 0
    assert log.append(batch(1, ts=clock.now)).base_offset == 12
    log = reopen(log)
    assert (log.log_start_offset, log.log_end_offset) == (12, 13)


def test_size_retention(tmp_path: Path) -> None:
    clock = Clock(0)
    log = filled(tmp_path, clock, retention_bytes=-1)
    segment_size = log.segments[0].size
    log.config = LogConfig(segment_bytes=200, retention_bytes=3 * segment_size + 10)
    assert log.delete_old_segments() == 2
    log.config = LogConfig(segment_bytes=200, retention_bytes=3 * segment_size)
    assert log.delete_old_segments() == 1
    assert log.size_in_bytes == 3 * segment_size and log.log_start_offset == 6


def test_compacted_topics_are_not_retained_by_time_or_size(tmp_path: Path) -> None:
    clock = Clock(0)
    log = filled(tmp_path, clock)
    log.config = LogConfig(retention_ms=1, retention_bytes=0, cleanup_policy="compact")
    clock.now = 100 * HOUR
    assert log.delete_old_segments() == 0
    log.config = LogConfig(retention_ms=1, cleanup_policy="compact,delete")
    assert log.delete_old_segments() == 6


def test_unlimited_retention(tmp_path: Path) -> None:
    clock = Clock(0)
    log = filled(tmp_path, clock, retention_ms=-1)
    clock.now = 1 << 50
    assert log.delete_old_segments() == 0


def test_segments_without_timestamps_are_judged_by_file_time(tmp_path: Path) -> None:
    clock = Clock(0)
    log = open_log(tmp_path, clock, segment_bytes=200, retention_ms=HOUR)
    for _ in range(3):
        log.append(batch(2, value_size=40, ts=-1))
    log.high_watermark = log.log_end_offset
    first = log.segments[0].path
    os.utime(first, ns=(0, 0))
    clock.now = os.stat(log.segments[1].path).st_mtime_ns // 1_000_000
    assert log.delete_old_segments() == 1


def test_delete_records_moves_the_log_start_offset(tmp_path: Path) -> None:
    clock = Clock(0)
    log = filled(tmp_path, clock)
    assert log.delete_records_before(5) == 5  # inside the third segment
    assert log.segments[0].base_offset == 4
    with pytest.raises(OffsetOutOfRangeError):
        log.read(4, 100)
    # the batch holding offset 5 is served whole; clients skip what is below
    assert batches_in(read_all(log, 5))[0].base_offset == 4
    assert log.offset_for_timestamp(0) == (5, 2 * HOUR)
    assert log.delete_records_before(3) == 5  # never moves back
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(13)
    assert log.delete_records_before(12) == 12
    assert len(log.segments) == 1 and log.read(12, 100).size == 0


def test_manager_checkpoints_moved_start_offsets(tmp_path: Path) -> None:
    clock = Clock(0)
    config = LogConfig(segment_bytes=200, retention_ms=HOUR)
    manager = LogManager([str(tmp_path)], config, clock)
    manager.load()
    log = manager.create("t", 0, uuid.UUID(int=1))
    other = manager.create("u", 0, uuid.UUID(int=2))
    for i in range(4):
        log.append(batch(2, value_size=40, ts=i * HOUR))
        other.append(batch(2, value_size=40, ts=10 * HOUR))
    log.high_watermark = other.high_watermark = 8
    assert manager.delete_records("u", 0, 3) == 3
    clock.now = 3 * HOUR
    assert manager.enforce_retention() == 2
    offsets = checkpoint.read_offsets(str(tmp_path / checkpoint.LOG_START_OFFSET_CHECKPOINT))
    assert offsets == {("t", 0): 4, ("u", 0): 3}
    # killed: nothing closed, the checkpoint written by retention survives
    for partition_log in manager.partitions():
        partition_log.close()
    os.close(manager._locks.pop())
    manager = LogManager([str(tmp_path)], config, clock)
    manager.load()
    again = manager.get("u", 0)
    assert again is not None and again.log_start_offset == 3
    with pytest.raises(OffsetOutOfRangeError):
        again.read(2, 100)
    manager.close()
