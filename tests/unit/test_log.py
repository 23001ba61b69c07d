"""PartitionLog: appends, reads, rolls, indexes, recovery, truncation."""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from moldau.log import fileops
from moldau.log.config import LogConfig
from moldau.log.errors import (
    KafkaStorageError,
    OffsetOutOfRangeError,
    RecordBatchTooLargeError,
    UnexpectedAppendOffsetError,
)
from moldau.log.partition_log import PartitionLog
from moldau.protocol import batch as b
from moldau.protocol.records import Record, build_batch, decode_batch

TOPIC_ID = uuid.UUID(int=42)


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def batch(records: int = 1, value_size: int = 10, ts: int = 1_000_000, **kw: int) -> bytes:
    return build_batch(
        [Record(i, 0, None, bytes([i % 256]) * value_size) for i in range(records)],
        base_timestamp=ts,
        **kw,
    )


def open_log(path: Path, clock: Clock | None = None, **config: object) -> PartitionLog:
    return PartitionLog.open(
        str(path / "t-0"),
        "t",
        0,
        TOPIC_ID,
        LogConfig(**config),  # type: ignore[arg-type]
        clock or Clock(),
    )


def reopen(log: PartitionLog, *, clean: bool = False, recovery_point: int = 0) -> PartitionLog:
    """A new process opening the same dir: ``clean`` after close(), otherwise
    as after kill -9 (nothing flushed or closed, stale recovery point)."""
    if clean:
        log.flush()
        recovery_point = log.recovery_point
        log.close()
    return PartitionLog.open(
        log.directory,
        log.topic,
        log.partition,
        log.topic_id,
        log.config,
        log._clock,
        recovery_point=recovery_point,
        clean_shutdown=clean,
    )


def read_all(log: PartitionLog, offset: int = 0, max_bytes: int = 1 << 30, **kw: object) -> bytes:
    result = log.read(offset, max_bytes, **kw)  # type: ignore[arg-type]
    data = b"".join(s.read() for s in result.slices)
    assert len(data) == result.size
    return data


def batches_in(data: bytes) -> list[b.BatchHeader]:
    headers = []
    for header, view in b.iter_batches(data):
        b.validate(header, view, from_client=False)
        headers.append(header)
    return headers


def segment_files(log: PartitionLog, suffix: str = ".log") -> list[str]:
    return sorted(n for n in os.listdir(log.directory) if n.endswith(suffix))


# --- append and read --------------------------------------------------------


def test_append_assigns_offsets_and_reads_back(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    raws = [batch(3), batch(1), batch(5)]
    results = [log.append(raw, leader_epoch=7) for raw in raws]
    assert [(r.base_offset, r.last_offset, r.record_count) for r in results] == [
        (0, 2, 3),
        (3, 3, 1),
        (4, 8, 5),
    ]
    assert results[0].log_append_time_ms == -1
    assert results[0].max_timestamp == 1_000_000
    assert log.log_end_offset == 9
    headers = batches_in(read_all(log))
    assert [h.base_offset for h in headers] == [0, 3, 4]
    assert {h.partition_leader_epoch for h in headers} == {7}
    # records are stored as sent: only the base offset and epoch differ
    stored = read_all(log)
    assert stored[b.CRC_OFFSET : len(raws[0])] == raws[0][b.CRC_OFFSET :]
    header, records = decode_batch(stored[len(raws[0]) + len(raws[1]) :])
    assert header.base_offset == 4 and [r.value for r in records] == [
        bytes([i]) * 10 for i in range(5)
    ]


def test_several_batches_in_one_append(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    result = log.append(batch(2) + batch(3) + batch(1))
    assert (result.base_offset, result.last_offset, result.record_count) == (0, 5, 6)
    assert [h.base_offset for h in batches_in(read_all(log))] == [0, 2, 5]


def test_empty_append_is_a_no_op(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch(2))
    result = log.append(b"")
    assert (result.base_offset, result.record_count) == (2, 0)
    assert log.log_end_offset == 2


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), b.CorruptRecordError),
        (lambda raw: raw[:-3], b.CorruptRecordError),
        (lambda raw: raw[:16] + b"\x01" + raw[17:], b.UnsupportedMagicError),
        (lambda raw: batch(1, is_control=True), b.InvalidRecordError),
    ],
)
def test_invalid_batch_writes_nothing(
    tmp_path: Path, damage: Callable[[bytes], bytes], error: type[Exception]
) -> None:
    log = open_log(tmp_path)
    log.append(batch(2))
    size = log.size_in_bytes
    with pytest.raises(error):
        log.append(batch(1) + damage(batch(3)))
    assert (log.log_end_offset, log.size_in_bytes) == (2, size)
    assert os.path.getsize(log.segments[0].path) == size


def test_size_limits(tmp_path: Path) -> None:
    log = open_log(tmp_path, max_message_bytes=500, segment_bytes=1500)
    with pytest.raises(b.MessageTooLargeError) as too_large:
        log.append(batch(1, value_size=600))
    assert too_large.value.error_code == 10
    with pytest.raises(RecordBatchTooLargeError) as too_many:
        log.append(b"".join(batch(1, value_size=300) for _ in range(5)))
    assert too_many.value.error_code == 18
    assert log.log_end_offset == 0


def test_log_append_time_stamps_batches(tmp_path: Path) -> None:
    clock = Clock(5_000)
    log = open_log(tmp_path, clock, message_timestamp_type="LogAppendTime")
    result = log.append(batch(2, ts=1))
    assert result.log_append_time_ms == 5_000 and result.max_timestamp == 5_000
    (header,) = batches_in(read_all(log))
    assert header.timestamp_type == b.TIMESTAMP_LOG_APPEND_TIME and header.max_timestamp == 5_000


# --- reads ------------------------------------------------------------------


def test_read_limits(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for _ in range(4):
        log.append(batch(2, value_size=50))
    size = len(batch(2, value_size=50))
    # starts at the batch holding the offset
    assert [h.base_offset for h in batches_in(read_all(log, 3))] == [2, 4, 6]
    # max_bytes: whole batches only
    assert log.read(0, 2 * size + 10).size == 2 * size
    assert log.read(0, 2 * size).size == 2 * size
    # the first batch is whole even if larger than max_bytes ...
    assert log.read(2, 10).size == size
    # ... unless asked not to
    assert log.read(2, 10, min_one_batch=False).size == 0
    # max_offset (high watermark): no batch holding offsets >= it
    assert [h.base_offset for h in batches_in(read_all(log, max_offset=5))] == [0, 2]
    assert [h.base_offset for h in batches_in(read_all(log, max_offset=6))] == [0, 2, 4]
    assert log.read(4, 100, max_offset=4).size == 0
    assert log.read(0, 10, max_offset=1).size == 0


def test_read_out_of_range(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch(3))
    assert log.read(3, 1000) == ([], 0)
    for offset in (-1, 4):
        with pytest.raises(OffsetOutOfRangeError) as e:
            log.read(offset, 1000)
        assert e.value.error_code == 1


def test_read_slices_share_the_segment_file(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append(batch(1))
    log.append(batch(1))
    (piece,) = log.read(0, 1 << 20).slices
    assert piece.file is log.segments[0].file and piece.position == 0


# --- segments and indexes ---------------------------------------------------


def test_roll_by_size(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=1000)
    size = len(batch(2, value_size=100))
    for _ in range(10):
        log.append(batch(2, value_size=100))
    per_segment = 1000 // size
    assert [s.base_offset for s in log.segments] == list(range(0, 20, 2 * per_segment))
    assert segment_files(log)[1] == f"{2 * per_segment:020d}.log"
    assert all(s.size <= 1000 for s in log.segments)
    # a read spans segments
    assert [h.base_offset for h in batches_in(read_all(log, 5))] == list(range(4, 20, 2))
    # rolled segments are flushed: the recovery point moved with them
    assert log.recovery_point == log.segments[-1].base_offset


def test_roll_by_time_uses_record_timestamps(tmp_path: Path) -> None:
    clock = Clock(0)
    log = open_log(tmp_path, clock, segment_ms=100)
    log.append(batch(ts=1_000))
    log.append(batch(ts=1_100))  # exactly segment.ms: no roll yet
    assert len(log.segments) == 1
    log.append(batch(ts=1_101))
    assert [s.base_offset for s in log.segments] == [0, 2]


def test_roll_by_time_without_timestamps_uses_the_clock(tmp_path: Path) -> None:
    clock = Clock(0)
    log = open_log(tmp_path, clock, segment_ms=100)
    log.append(batch(ts=-1))
    clock.now = 101
    log.append(batch(ts=-1))
    assert len(log.segments) == 2


def test_offset_index_is_sparse(tmp_path: Path) -> None:
    log = open_log(tmp_path, index_interval_bytes=1000)
    size = len(batch(1, value_size=200))
    for _ in range(50):
        log.append(batch(1, value_size=200))
    log.flush()
    raw = Path(log.segments[0].offset_index.path).read_bytes()
    entries = list(struct.iter_unpack(">ii", raw))
    per_entry = 1000 // size + 1
    assert len(entries) == 50 // per_entry - (50 % per_entry == 0)
    assert entries[0] == (per_entry, per_entry * size)  # (relative last offset, position)
    times = list(struct.iter_unpack(">qi", Path(log.segments[0].time_index.path).read_bytes()))
    assert times == [(1_000_000, 0)]  # one timestamp throughout: only the first entry is new
    for offset in range(50):
        (header,) = batches_in(read_all(log, offset, max_bytes=1))
        assert header.base_offset == offset


def test_time_index_and_offset_for_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path, index_interval_bytes=100, segment_bytes=2000)
    for i in range(40):
        # each batch: 2 records at ts 1000*i and 1000*i + 500
        log.append(
            build_batch(
                [Record(0, 0, None, b"x" * 40), Record(1, 500, None, b"y" * 40)],
                base_timestamp=1000 * i,
            )
        )
    assert len(log.segments) > 2
    assert log.offset_for_timestamp(0) == (0, 0)
    assert log.offset_for_timestamp(1) == (1, 500)
    assert log.offset_for_timestamp(7_000) == (14, 7_000)
    assert log.offset_for_timestamp(7_499) == (15, 7_500)
    assert log.offset_for_timestamp(39_500) == (79, 39_500)
    assert log.offset_for_timestamp(39_501) is None
    # survives a restart (time indexes loaded, not rebuilt)
    log = reopen(log, clean=True)
    assert log.offset_for_timestamp(7_499) == (15, 7_500)


# --- restart and recovery ---------------------------------------------------


def fill(log: PartitionLog, batches: int = 30) -> bytes:
    for i in range(batches):
        log.append(batch(1 + i % 3, value_size=40 + i))
    return read_all(log)


@pytest.mark.parametrize("clean", [True, False])
def test_restart_keeps_everything(tmp_path: Path, clean: bool) -> None:
    log = open_log(tmp_path, segment_bytes=800, index_interval_bytes=100)
    data = fill(log)
    end = log.log_end_offset
    log = reopen(log, clean=clean)
    assert log.log_end_offset == end
    assert read_all(log) == data
    assert log.append(batch(1)).base_offset == end


def test_kill_without_flush_keeps_acknowledged_offsets(tmp_path: Path) -> None:
    """kill -9: index entries still in memory are lost, log writes are not."""
    log = open_log(tmp_path, index_interval_bytes=50)
    data = fill(log)
    end = log.log_end_offset
    # a stale recovery point from an old checkpoint is the worst case too
    again = reopen(log, recovery_point=3)
    assert again.log_end_offset == end and read_all(again) == data
    assert again.append(batch(1)).base_offset == end


@pytest.mark.parametrize("garbage", [b"\x00" * 7, b"\xff" * 100, "partial"])
def test_torn_tail_is_cut(tmp_path: Path, garbage: bytes | str) -> None:
    log = open_log(tmp_path, segment_bytes=800)
    data = fill(log)
    end = log.log_end_offset
    tail = log.segments[-1].path
    with open(tail, "ab") as f:
        f.write(batch(3)[:50] if garbage == "partial" else garbage)  # type: ignore[arg-type]
    log = reopen(log, recovery_point=end)  # even with an up-to-date recovery point
    assert log.log_end_offset == end and read_all(log) == data
    assert os.path.getsize(tail) == log.segments[-1].size
    assert log.append(batch(1)).base_offset == end


def test_corrupt_batch_in_last_segment(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=800)
    fill(log)
    log.append(batch(1))
    log.append(batch(1))
    last = log.segments[-1]
    first_in_last = last.base_offset
    position = last.batch_at(0)[1]  # the second batch of the segment
    assert position < last.size
    base = last.batch_at(position)[0]
    expected = read_all(log)[: sum(s.size for s in log.segments[:-1]) + position]
    with open(last.path, "r+b") as f:
        f.seek(position + 70)
        f.write(b"\x00\x01\x02")
    log = reopen(log, recovery_point=first_in_last)
    assert log.log_end_offset == base
    assert read_all(log) == expected


def test_corruption_in_a_middle_segment_drops_later_ones(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=800)
    fill(log)
    assert len(log.segments) > 3
    victim = log.segments[1]
    with open(victim.path, "r+b") as f:
        f.seek(victim.size - 5)
        f.write(b"\xde\xad")
    log = reopen(log, recovery_point=victim.base_offset)
    assert len(log.segments) == 2
    assert log.log_end_offset < log.segments[1].base_offset + 20
    assert segment_files(log) == [f"{s.base_offset:020d}.log" for s in log.segments]
    assert segment_files(log, ".index") == [f"{s.base_offset:020d}.index" for s in log.segments]
    batches_in(read_all(log))  # all that is left is valid


@pytest.mark.parametrize("damage", ["missing", "torn", "points_past_end"])
def test_bad_index_of_flushed_segment_is_rebuilt(tmp_path: Path, damage: str) -> None:
    log = open_log(tmp_path, segment_bytes=2000, index_interval_bytes=100)
    data = fill(log)
    end = log.log_end_offset
    log.flush()
    index = Path(log.segments[0].offset_index.path)
    good = index.read_bytes()
    assert len(good) >= 16
    log.close()
    if damage == "missing":
        index.unlink()
    elif damage == "torn":
        index.write_bytes(good[:-3])
    else:
        index.write_bytes(good + struct.pack(">ii", 1000, 1 << 30))
    log = reopen(log, recovery_point=end)
    assert read_all(log) == data and log.log_end_offset == end
    log.flush()
    assert index.read_bytes() == good


def test_leftover_files_are_removed(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    fill(log, 3)
    names = ["00000000000000000099.index", "00000000000000000000.log.deleted", "x.tmp"]
    for name in names:
        Path(log.directory, name).write_bytes(b"junk")
    log = reopen(log, clean=True)
    assert not set(names) & set(os.listdir(log.directory))


# --- truncation and followers -----------------------------------------------


def test_truncate_to(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=800, index_interval_bytes=100)
    data = fill(log)
    log.flush()
    log.high_watermark = log.log_end_offset
    cut = log.segments[2].base_offset + 1  # a batch boundary inside the third segment
    position = log.segments[2].translate_offset(cut)
    assert position is not None and log.segments[2].batch_at(position)[0] == cut
    log.truncate_to(cut)
    assert log.log_end_offset == cut and len(log.segments) == 3
    assert log.recovery_point == cut and log.high_watermark == cut
    assert data.startswith(read_all(log))
    assert batches_in(read_all(log))[-1].next_offset == cut
    assert log.append(batch(1)).base_offset == cut
    log = reopen(log, clean=True)
    assert log.log_end_offset == cut + 1


def test_truncate_to_a_segment_start_and_fully(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_bytes=800)
    fill(log)
    start = log.segments[1].base_offset
    log.truncate_to(start)
    assert log.log_end_offset == start and len(log.segments) == 1
    log.truncate_to(0)
    assert log.log_end_offset == 0 and log.read(0, 100).size == 0
    assert segment_files(log) == ["00000000000000000000.log"]


def test_append_as_follower_keeps_offsets(tmp_path: Path) -> None:
    leader = open_log(tmp_path / "leader", segment_bytes=800)
    data = fill(leader)
    follower = open_log(tmp_path / "follower", segment_bytes=800)
    half = len(data) // 2
    first = follower.append_as_follower(data[:half])  # ends in a partial batch
    assert first.base_offset == 0 and follower.log_end_offset == first.last_offset + 1
    stored = follower.size_in_bytes
    follower.append_as_follower(data[stored:])
    assert read_all(follower) == data
    assert follower.log_end_offset == leader.log_end_offset
    with pytest.raises(UnexpectedAppendOffsetError):
        follower.append_as_follower(data[:stored])


def test_flush_policy(tmp_path: Path) -> None:
    clock = Clock(0)
    log = open_log(tmp_path, clock, flush_interval_messages=5)
    log.append(batch(3))
    assert log.recovery_point == 0
    log.append(batch(2))
    assert log.recovery_point == 5
    timed = open_log(tmp_path / "timed", clock, flush_interval_ms=100)
    timed.append(batch(1))
    timed.flush_if_due()
    assert timed.recovery_point == 0
    clock.now = 100
    timed.flush_if_due()
    assert timed.recovery_point == 1


def test_short_writes_are_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(tmp_path)
    real_pwritev = os.pwritev

    def dribble(fd: int, buffers: list[bytes], position: int) -> int:
        return real_pwritev(fd, [memoryview(b"".join(buffers))[:7]], position)

    monkeypatch.setattr(fileops, "pwritev", dribble)
    log.append(batch(2) + batch(3))
    monkeypatch.undo()
    assert [h.base_offset for h in batches_in(read_all(log))] == [0, 2]


def test_failed_write_leaves_no_partial_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = open_log(tmp_path)
    log.append(batch(2))
    size = log.size_in_bytes
    real_pwritev = os.pwritev

    def disk_full(fd: int, buffers: list[bytes], position: int) -> int:
        real_pwritev(fd, [memoryview(b"".join(buffers))[:30]], position)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileops, "pwritev", disk_full)
    with pytest.raises(KafkaStorageError):
        log.append(batch(3))
    monkeypatch.undo()
    assert os.path.getsize(log.segments[0].path) == size and log.log_end_offset == 2
    assert log.append(batch(1)).base_offset == 2
    assert [h.base_offset for h in batches_in(read_all(log))] == [0, 2]


def test_zero_padded_index_is_trimmed(tmp_path: Path) -> None:
    """Kafka preallocates the active segment's index with zeros."""
    log = open_log(tmp_path, index_interval_bytes=100)
    data = fill(log)
    log.flush()
    index = Path(log.segments[0].offset_index.path)
    good = index.read_bytes()
    log.close()
    index.write_bytes(good + bytes(8 * 100))
    log = PartitionLog.open(
        log.directory, "t", 0, TOPIC_ID, log.config, Clock(), recovery_point=40, clean_shutdown=True
    )
    assert len(log.segments[0].offset_index) == len(good) // 8
    for offset in range(log.log_end_offset):
        (header,) = batches_in(read_all(log, offset, max_bytes=1))
        assert header.base_offset <= offset <= header.last_offset
    assert read_all(log) == data
    assert index.read_bytes() == good


KILLED_WRITER = """
import sys, uuid
from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.protocol.records import Record, build_batch

log = PartitionLog.open(sys.argv[1], "t", 0, uuid.UUID(int=1), LogConfig(segment_bytes=20_000),
                        lambda: 0, recovery_point=int(sys.argv[2]))
i = 0
while True:
    i += 1
    raw = build_batch([Record(j, 0, None, b"%d" % i * (i % 50)) for j in range(1 + i % 4)])
    result = log.append(raw)
    print(result.base_offset, result.last_offset, flush=True)
"""


def test_kill_9_never_reuses_an_acknowledged_offset(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    directory = str(tmp_path / "t-0")
    acknowledged: list[tuple[int, int]] = []
    start = 0
    for _ in range(3):  # kill, restart and carry on, three times
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, directory, "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None
            for n in range(300):
                first, last = map(int, writer.stdout.readline().split())
                # after a restart, never below what was acknowledged (appends
                # not yet read here may come in between)
                assert first >= start if n == 0 else first == start
                acknowledged.append((first, last))
                start = last + 1
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=30)
    log = PartitionLog.open(directory, "t", 0, TOPIC_ID, LogConfig(), Clock())
    assert log.log_end_offset >= acknowledged[-1][1] + 1
    stored = {(h.base_offset, h.last_offset) for h in batches_in(read_all(log))}
    assert stored.issuperset(acknowledged)
