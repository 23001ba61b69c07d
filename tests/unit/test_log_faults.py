"""Storage errors in the middle of an append, one failure point at a time.

The log's file operations go through ``moldau.log.fileops``; each test makes
one of them fail and checks the rule of issue 7: an append is all-or-nothing,
or the partition goes offline; after a kill -9 (the log dropped without
close, then reopened from disk) every acknowledged record is there once.
"""

from __future__ import annotations

import errno
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from moldau.log import fileops
from moldau.log.config import LogConfig
from moldau.log.errors import KafkaStorageError
from moldau.log.manager import CLEAN_SHUTDOWN_FILE, LogManager
from moldau.log.partition_log import PartitionLog
from moldau.protocol.errors import KafkaError
from moldau.protocol.records import Record, build_batch, decode_batch


def open_log(directory: str, config: LogConfig, recovery_point: int = 0) -> PartitionLog:
    """Partition t-0 under ``directory``, opened as after a kill -9."""
    return PartitionLog.open(
        f"{directory}/t-0",
        "t",
        0,
        uuid.UUID(int=1),
        config,
        lambda: 0,
        recovery_point=recovery_point,
    )


def batch(value: bytes, timestamp: int) -> bytes:
    return build_batch([Record(0, 0, None, value)], base_timestamp=timestamp)


def stored_values(log: PartitionLog) -> list[tuple[int, bytes]]:
    """(offset, value) of every record the log serves, in order."""
    found = []
    raw = b"".join(s.read() for s in log.read(log.log_start_offset, 1 << 30).slices)
    position = 0
    while position < len(raw):
        header, records = decode_batch(memoryview(raw)[position:])
        found += [(header.base_offset + r.offset_delta, bytes(r.value or b"")) for r in records]
        position += header.size
    return found


@pytest.fixture
def directory() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        yield tmp


def test_time_index_write_failing_after_the_data_write_loses_nothing(directory: str) -> None:
    """Issue 7's reproduction: the time index's pending entries reach the
    file during an append, after the batch was written; that write fails,
    the producer retries, and then the broker is killed. Before the fix the
    batch stayed in the file uncounted, the retry stored its offset twice and
    recovery cut the log there, losing every later acknowledged record."""
    config = LogConfig(index_interval_bytes=0)
    log = open_log(directory, config)
    acked: list[tuple[int, bytes]] = []
    plan = fileops.FaultPlan(fail_at=1, error=errno.ENOSPC, suffixes=(".timeindex",))
    with fileops.inject(plan):
        for n in range(7000):  # enough index entries to make the pending ones spill
            value = b"record-%d" % n
            for _attempt in range(2):
                try:
                    result = log.append(batch(value, 1000 + n))
                except (KafkaError, OSError):
                    continue
                acked.append((result.base_offset, value))
                break
    assert plan.failed == 1, "the time index write was never reached"
    assert stored_values(log) == acked
    del log  # kill -9: nothing flushed, nothing closed

    reopened = open_log(directory, config)
    assert stored_values(reopened) == acked
    assert reopened.log_end_offset == acked[-1][0] + 1


def test_segment_file_removed_from_under_the_log_takes_it_offline(directory: str) -> None:
    """Appends must not go on into a file nobody will find again."""
    log = open_log(directory, LogConfig())
    log.append(batch(b"kept", 1))
    os.unlink(log.segments[-1].path)
    log.check_files()
    assert log.offline is not None and "removed" in log.offline
    for operation in (lambda: log.append(batch(b"lost", 2)), lambda: log.read(0, 100)):
        with pytest.raises(KafkaStorageError):
            operation()


def test_flush_notices_a_removed_segment_file(directory: str) -> None:
    log = open_log(directory, LogConfig())
    log.append(batch(b"kept", 1))
    os.unlink(log.segments[-1].path)
    with pytest.raises(KafkaStorageError):
        log.flush()
    assert log.offline is not None


def test_fsync_failure_takes_the_partition_offline_and_restart_keeps_the_records(
    directory: str,
) -> None:
    """After a failed fsync the kernel may have dropped the pages it could not
    write; a later fsync would succeed without them. So the partition stops."""
    config = LogConfig(flush_interval_messages=2)
    log = open_log(directory, config)
    log.append(batch(b"first", 1))
    plan = fileops.FaultPlan(fail_at=1, error=errno.EIO, kinds=frozenset({"fsync"}))
    with fileops.inject(plan), pytest.raises(KafkaStorageError):
        log.append(batch(b"second", 2))
    assert log.offline is not None
    with pytest.raises(KafkaStorageError):
        log.append(batch(b"third", 3))
    log.close()
    reopened = open_log(directory, config)
    assert [v for _, v in stored_values(reopened)] == [b"first", b"second"]


def test_manager_stops_on_a_full_disk_without_raising_or_marking_clean(tmp_path: Path) -> None:
    manager = LogManager([str(tmp_path)], LogConfig(), clock=lambda: 1_000)
    manager.load()
    partition_log = manager.create("t", 0, uuid.UUID(int=1))
    partition_log.append(batch(b"acked", 1))
    plan = fileops.FaultPlan(fail_at=1, repeat=1 << 30, kinds=frozenset({"write", "open"}))
    with fileops.inject(plan):
        problems = manager.close()
    assert problems and not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    manager = LogManager([str(tmp_path)], LogConfig(), clock=lambda: 1_000)
    manager.load()
    reopened = manager.get("t", 0)
    assert reopened is not None and stored_values(reopened) == [(0, b"acked")]
    manager.close()


def test_delete_records_that_cannot_be_checkpointed_changes_nothing(tmp_path: Path) -> None:
    """Before, the running broker moved the log start offset, the checkpoint
    write failed, and the deleted records came back after a restart."""
    manager = LogManager([str(tmp_path)], LogConfig(), clock=lambda: 1_000)
    manager.load()
    partition_log = manager.create("t", 0, uuid.UUID(int=1))
    for n in range(10):
        partition_log.append(batch(b"r%d" % n, n))
    plan = fileops.FaultPlan(fail_at=1, suffixes=(".tmp",), kinds=frozenset({"write"}))
    with fileops.inject(plan), pytest.raises(KafkaStorageError):
        manager.delete_records("t", 0, 5)
    assert plan.failed == 1
    assert partition_log.log_start_offset == 0 and len(stored_values(partition_log)) == 10
    assert manager.delete_records("t", 0, 5) == 5
    manager.close()
    manager = LogManager([str(tmp_path)], LogConfig(), clock=lambda: 1_000)
    manager.load()
    reopened = manager.get("t", 0)
    assert reopened is not None and reopened.log_start_offset == 5
    manager.close()
