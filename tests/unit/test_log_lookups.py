"""Timestamps: the record with the largest timestamp (ListOffsets -3) and
Kafka's limits on timestamps far in the past or future."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from test_log import Clock, open_log, reopen

from moldau.log.config import LogConfig
from moldau.log.errors import InvalidTimestampError
from moldau.log.manager import LogManager
from moldau.protocol import batch as b
from moldau.protocol.records import Record, build_batch


def stamped(*deltas: int, base: int = 1_000, compression: int = 0) -> bytes:
    records = [Record(i, d, b"k", b"v") for i, d in enumerate(deltas)]
    return build_batch(records, base_timestamp=base, compression=compression)


def test_empty_log_has_no_max_timestamp(tmp_path: Path) -> None:
    assert open_log(tmp_path).max_timestamp_offset() is None


def test_max_timestamp_is_the_first_record_carrying_it(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=120)
    log.append(stamped(0, 5, 2))  # offsets 0..2, max at 1 (1005)
    log.append(stamped(0, 50, 50, 1, compression=b.COMPRESSION_GZIP))  # 3..6, max at 4 (1050)
    log.append(stamped(0, 10))  # 7..8
    assert len(log.segments) > 1
    assert log.max_timestamp_offset() == (1_050, 4)
    log = reopen(log, clean=True)
    assert log.max_timestamp_offset() == (1_050, 4)
    log = reopen(log)  # recovered from a kill: segments rescanned
    assert log.max_timestamp_offset() == (1_050, 4)


def test_max_timestamp_with_log_append_time(tmp_path: Path) -> None:
    clock = Clock(7_000)
    log = open_log(tmp_path, clock, message_timestamp_type="LogAppendTime")
    log.append(stamped(0, 1))
    clock.now = 9_000
    log.append(stamped(0, 1, 2))
    clock.now = 8_000
    log.append(stamped(0))
    assert log.max_timestamp_offset() == (9_000, 2)


def test_timestamp_limits(tmp_path: Path) -> None:
    clock = Clock(1_000_000)
    log = open_log(
        tmp_path,
        clock,
        message_timestamp_before_max_ms=1_000,
        message_timestamp_after_max_ms=500,
    )
    log.append(stamped(0, base=999_000))  # exactly at the limits
    log.append(stamped(0, 500, base=1_000_000))
    log.append(stamped(0, base=-1))  # no timestamp
    for raw in (stamped(0, base=998_999), stamped(0, 501, base=1_000_000)):
        with pytest.raises(InvalidTimestampError) as refused:
            log.append(raw)
        assert refused.value.error_code == 32
    assert log.log_end_offset == 4
    # LogAppendTime topics overwrite client timestamps: nothing to check
    log.config = replace(log.config, message_timestamp_type="LogAppendTime")
    log.append(stamped(0, base=1))


def test_manager_expires_producers(tmp_path: Path) -> None:
    clock = Clock(10_000)
    manager = LogManager([str(tmp_path)], LogConfig(), clock)
    manager.load()
    log = manager.create("t", 0, uuid.UUID(int=5))
    log.append(
        build_batch([Record(0, 0, b"k", b"v")], producer_id=3, producer_epoch=0, base_sequence=0)
    )
    assert manager.expire_producers(60_000) == 0
    clock.now += 60_000
    assert manager.expire_producers(60_000) == 1
    manager.close()
