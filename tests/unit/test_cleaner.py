"""Log compaction: the cleaner against hand-checked logs, crashes in the
middle of a swap, and a model of "latest value per key"."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_log import Clock, open_log, reopen

from moldau.log.cleaner import CleanerConfig, LogCleaner
from moldau.log.config import LogConfig
from moldau.log.manager import LogManager
from moldau.log.partition_log import PartitionLog
from moldau.protocol import batch as b
from moldau.protocol.records import Record, build_batch, decode_batch, record_timestamp

DAY = 24 * 3_600_000
Entry = tuple[bytes | None, bytes | None]  # key, value (None: tombstone)


def keyed(entries: Sequence[Entry], ts: int = 1_000, compression: int = 0) -> bytes:
    records = [Record(i, i, k, v) for i, (k, v) in enumerate(entries)]
    return build_batch(records, base_timestamp=ts, compression=compression)


def contents(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None, int]]:
    """(offset, key, value, timestamp) of every record from the log start."""
    data = b"".join(s.read() for s in log.read(log.log_start_offset, 1 << 30).slices)
    out = []
    for _, raw in b.iter_batches(data):
        header, records = decode_batch(raw)
        for r in records:
            out.append(
                (header.base_offset + r.offset_delta, r.key, r.value, record_timestamp(header, r))
            )
    return out


def fold(rows: Sequence[tuple[int, bytes | None, bytes | None, int]]) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for _, key, value, _ in rows:
        assert key is not None
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value
    return state


def compacted(tmp_path: Path, clock: Clock, **config: object) -> PartitionLog:
    settings: dict[str, object] = {"cleanup_policy": "compact", "segment_bytes": 250}
    settings.update(config)
    return open_log(tmp_path, clock, **settings)


def cleaner_for(log: PartitionLog, clock: Clock, **config: object) -> LogCleaner:
    return LogCleaner(lambda: [log], clock, CleanerConfig(**config))  # type: ignore[arg-type]


def produce(log: PartitionLog, entries: Sequence[Entry], per_batch: int = 3, **kw: int) -> None:
    for i in range(0, len(entries), per_batch):
        log.append(keyed(entries[i : i + per_batch], **kw))
    log.high_watermark = log.log_end_offset


def test_keeps_the_latest_record_per_key_at_its_offset(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted(tmp_path, clock)
    entries = [(b"k%d" % (i % 4), b"v%d" % i) for i in range(30)]
    produce(log, entries)
    before = contents(log)
    active = log.segments[-1]
    assert len(log.segments) > 3
    cleaner = cleaner_for(log, clock)
    cleaner.run_until_clean()
    after = contents(log)
    cleaned_end = log.segments[-1].base_offset
    assert log.segments[-1] is active  # never touched
    cleaned = [row for row in after if row[0] < cleaned_end]
    assert len({row[1] for row in cleaned}) == len(cleaned)  # one record per key
    assert set(after) <= set(before)  # records unchanged, offsets kept
    assert [row[0] for row in after] == sorted(row[0] for row in after)
    assert fold(after) == fold(before)
    assert log.log_end_offset == 30
    assert cleaner.checkpoints[("t", 0)] == cleaned_end
    assert not cleaner.step()  # nothing dirty left
    # a restart (clean or not) sees the cleaned log
    assert contents(reopen(log, clean=True)) == after


@pytest.mark.parametrize(
    "codec",
    [b.COMPRESSION_GZIP, b.COMPRESSION_SNAPPY, b.COMPRESSION_LZ4, b.COMPRESSION_ZSTD],
)
def test_compressed_batches_are_recompressed_with_their_codec(tmp_path: Path, codec: int) -> None:
    clock = Clock()
    log = compacted(tmp_path, clock, segment_bytes=300)
    entries = [(b"k%d" % (i % 3), b"value-%d" % i) for i in range(24)]
    produce(log, entries, per_batch=4, compression=codec)
    before = contents(log)
    cleaner_for(log, clock).run_until_clean()
    after = contents(log)
    assert fold(after) == fold(before) and len(after) < len(before)
    data = b"".join(s.read() for s in log.read(0, 1 << 30).slices)
    headers = [h for h, _ in b.iter_batches(data)]
    assert {h.compression for h in headers} == {codec}
    # a rebuilt batch keeps its base offset and offset range
    originals = {(h.base_offset, h.last_offset_delta) for h, _ in b.iter_batches(data)}
    assert all(base % 4 == 0 and delta == 3 for base, delta in originals)


def test_records_without_key_are_refused_on_compacted_topics(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted(tmp_path, clock)
    with pytest.raises(b.InvalidRecordError) as refused:
        log.append(keyed([(b"k", b"v"), (None, b"v")], compression=b.COMPRESSION_LZ4))
    assert refused.value.error_code == 87
    assert log.log_end_offset == 0
    plain = open_log(tmp_path / "plain", clock)
    plain.append(keyed([(None, b"v")]))  # fine when not compacted


def test_tombstones_live_for_delete_retention_ms(tmp_path: Path) -> None:
    clock = Clock(10 * DAY)
    log = compacted(tmp_path, clock, delete_retention_ms=DAY)
    produce(log, [(b"a", b"1"), (b"b", b"1"), (b"a", None), (b"c", b"1")] * 3, per_batch=2)
    produce(log, [(b"x", b"pad")] * 3, per_batch=1)
    cleaner = cleaner_for(log, clock)
    cleaner.run_until_clean()
    rows = contents(log)
    assert (b"a", None) in [(k, v) for _, k, v, _ in rows]  # kept, with a horizon
    clock.now += DAY // 2
    cleaner.run_until_clean()
    assert (b"a", None) in [(k, v) for _, k, v, _ in contents(log)]
    clock.now += DAY
    assert cleaner.step()  # the horizon passed: the log is cleanable again
    cleaner.run_until_clean()
    after = contents(log)
    assert b"a" not in [k for _, k, _, _ in after]
    assert fold(after) == fold(rows)
    # record timestamps survived the horizon rebasing
    assert {ts for _, _, _, ts in after} <= {ts for _, _, _, ts in rows}


def test_dirty_ratio_and_compaction_lags(tmp_path: Path) -> None:
    clock = Clock(DAY)
    settings = {"cleanup_policy": "compact", "segment_bytes": 250}
    log = compacted(tmp_path, clock, min_cleanable_dirty_ratio=0.99)
    produce(log, [(b"k%d" % i, b"v") for i in range(20)], ts=DAY)
    cleaner = cleaner_for(log, clock)
    assert cleaner.step()  # all dirty: ratio 1.0
    cleaner.run_until_clean()
    assert not cleaner.step()
    produce(log, [(b"k1", b"new")], ts=DAY)
    produce(log, [(b"k2", b"x")] * 8, per_batch=8, ts=DAY)  # rolls: k1's update is dirty now
    assert log.segments[-2].next_offset > cleaner.checkpoints[("t", 0)]
    assert not cleaner.step()  # a little dirt on a big clean section
    log.config = LogConfig(**settings, min_cleanable_dirty_ratio=0.99, max_compaction_lag_ms=DAY)
    assert not cleaner.step()
    clock.now = 3 * DAY
    assert cleaner.step()  # the dirt is older than max.compaction.lag.ms
    cleaner.run_until_clean()
    assert [v for _, k, v, _ in contents(log) if k == b"k1"] == [b"new"]

    young = compacted(tmp_path / "young", clock, min_compaction_lag_ms=DAY)
    produce(young, [(b"k", b"v%d" % i) for i in range(20)], ts=clock.now)
    cleaner = cleaner_for(young, clock)
    assert not cleaner.step()  # every segment is younger than min.compaction.lag.ms
    clock.now += 2 * DAY
    assert cleaner.step()
    cleaner.run_until_clean()
    assert len(contents(young)) < 20


def test_cleaning_never_passes_the_high_watermark(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted(tmp_path, clock)
    produce(log, [(b"k", b"v%d" % i) for i in range(30)])
    log.high_watermark = 0
    cleaner = cleaner_for(log, clock)
    assert not cleaner.step()
    log.high_watermark = log.segments[2].base_offset
    cleaner.run_until_clean()
    assert cleaner.checkpoints[("t", 0)] <= log.segments[2].base_offset


def test_cleaning_in_small_steps_interleaves_with_appends(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted(tmp_path, clock)
    produce(log, [(b"k%d" % (i % 5), b"v%d" % i) for i in range(60)])
    cleaner = cleaner_for(log, clock)
    steps = 0
    while cleaner.step(budget_bytes=1) and steps < 100:
        steps += 1
        produce(log, [(b"k%d" % (steps % 5), b"during%d" % steps)], per_batch=1)
        assert contents(log)  # readable between every step
    assert steps == 100 and cleaner.checkpoints[("t", 0)] > 0
    cleaner.run_until_clean()
    rows = contents(log)
    assert [row[0] for row in rows] == sorted({row[0] for row in rows})
    state = fold(rows)
    assert state[b"k%d" % (steps % 5)] == b"during%d" % steps


def test_a_truncation_abandons_the_clean(tmp_path: Path) -> None:
    clock = Clock()
    log = compacted(tmp_path, clock)
    produce(log, [(b"k%d" % (i % 3), b"v%d" % i) for i in range(60)])
    cleaner = cleaner_for(log, clock)
    for _ in range(25):  # into the cleaning of the first group
        cleaner.step(budget_bytes=1)
    assert any(n.endswith(".cleaned") for n in os.listdir(log.directory))
    log.truncate_to(42)
    log.high_watermark = 42
    assert cleaner.step(budget_bytes=1)  # abandoned, its files removed
    assert not any(n.endswith(".cleaned") for n in os.listdir(log.directory))
    cleaner.run_until_clean()
    assert max(row[0] for row in contents(log)) == 41


# Every file operation of a clean of three segments into one: leftovers
# removed, cleaned files written, renamed to .swap, old files removed,
# renamed to live names (31 calls to unlink, replace and utime).
@pytest.mark.parametrize("crash_at", range(32))
def test_kill_in_the_middle_of_a_swap_leaves_a_valid_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_at: int
) -> None:
    clock = Clock()
    log = compacted(tmp_path, clock, segment_bytes=1200)
    produce(log, [(b"k%d" % (i % 4), b"v%d" % i) for i in range(40)])
    produce(log, [(b"k%d" % (i % 4), b"v%d" % i) for i in range(40, 80)])
    before = contents(log)
    calls = 0

    class Killed(BaseException):
        pass

    def dying(real):  # type: ignore[no-untyped-def]
        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls > crash_at:
                raise Killed
            return real(*args, **kwargs)

        return call

    cleaner = cleaner_for(log, clock)
    # first clean: groups of one segment; the second clean merges them
    log.config = LogConfig(cleanup_policy="compact", segment_bytes=250)
    cleaner.run_until_clean()
    produce(log, [(b"k%d" % (i % 4), b"w%d" % i) for i in range(20)])
    log.config = LogConfig(cleanup_policy="compact", segment_bytes=1200)
    expected = fold(contents(log))
    for name in ("replace", "unlink", "utime"):
        monkeypatch.setattr(os, name, dying(getattr(os, name)))
    with contextlib.suppress(Killed):
        cleaner.run_until_clean()
    monkeypatch.undo()
    recovered = reopen(log)  # kill -9: nothing closed, recovery point 0
    rows = contents(recovered)
    assert fold(rows) == expected
    assert [row[0] for row in rows] == sorted({row[0] for row in rows})
    assert set(rows) <= set(before) | set(contents(log)) | set(rows)
    assert not [n for n in os.listdir(recovered.directory) if n.endswith((".swap", ".cleaned"))]
    # and the recovered log cleans fine
    cleaner_for(recovered, clock).run_until_clean()
    assert fold(contents(recovered)) == expected


def test_manager_runs_the_cleaner_and_keeps_its_checkpoint(tmp_path: Path) -> None:
    clock = Clock()
    config = LogConfig(cleanup_policy="compact", segment_bytes=250)
    manager = LogManager([str(tmp_path)], config, clock)
    manager.load()
    log = manager.create("c", 0, uuid.UUID(int=3))
    produce(log, [(b"k%d" % (i % 3), b"v%d" % i) for i in range(30)])
    while manager.clean_step(256):
        pass
    end = manager.cleaner.checkpoints[("c", 0)]
    assert (tmp_path / "cleaner-offset-checkpoint").read_text().splitlines()[2] == f"c 0 {end}"
    manager.close()
    manager = LogManager([str(tmp_path)], config, clock)
    manager.load()
    assert manager.cleaner.checkpoints == {("c", 0): end}
    manager.delete("c", 0)
    assert manager.cleaner.checkpoints == {}
    manager.close()


KILLED_CLEANER = """
import sys, uuid
from moldau.log.cleaner import LogCleaner
from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.protocol.records import Record, build_batch

config = LogConfig(cleanup_policy="compact", segment_bytes=600, min_cleanable_dirty_ratio=0.1)
log = PartitionLog.open(sys.argv[1], "t", 0, uuid.UUID(int=1), config, lambda: 0)
log.high_watermark = log.log_end_offset
cleaner = LogCleaner(lambda: [log], lambda: 0)
i = 0
while True:
    i += 1
    offset = log.log_end_offset
    key = b"k%d" % (i % 7)
    log.append(build_batch([Record(0, 0, key, key + b":%d" % offset)]))
    log.high_watermark = log.log_end_offset
    print(offset, key.decode(), flush=True)
    cleaner.step(50)
"""


def test_kill_9_while_cleaning_leaves_a_valid_log(tmp_path: Path) -> None:
    """A writer that appends and cleans in small steps, killed three times at
    arbitrary points; the log it leaves behind recovers to one where every
    record is as written and no key lost its newest acknowledged value."""
    import signal
    import subprocess
    import sys

    directory = str(tmp_path / "t-0")
    newest: dict[bytes, int] = {}
    for round_ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", KILLED_CLEANER, directory],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None
            for _ in range(400 + 137 * round_):
                offset, key = writer.stdout.readline().split()
                newest[key.encode()] = int(offset)
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=30)
    clock = Clock(0)
    log = PartitionLog.open(
        directory, "t", 0, uuid.UUID(int=1), LogConfig(cleanup_policy="compact"), clock
    )
    rows = contents(log)
    assert [row[0] for row in rows] == sorted({row[0] for row in rows})
    for offset, key, value, _ in rows:
        assert key is not None and value == key + b":%d" % offset
    stored: dict[bytes, int] = {}
    for offset, key, _, _ in rows:
        assert key is not None
        stored[key] = offset
    assert all(stored[key] >= offset for key, offset in newest.items())
    assert len(rows) < sum(1 for _ in range(max(newest.values())))  # it did clean


def test_a_log_that_cannot_be_cleaned_is_set_aside(tmp_path: Path) -> None:
    clock = Clock()
    bad = compacted(tmp_path, clock)
    config = LogConfig(cleanup_policy="compact", segment_bytes=250)
    good = PartitionLog.open(str(tmp_path / "u-0"), "u", 0, uuid.UUID(int=2), config, clock)
    for log in (bad, good):
        produce(log, [(b"k%d" % (i % 3), b"v%d" % i) for i in range(30)])
    first = bad.segments[0]
    with open(first.path, "r+b") as f:  # records section garbled, CRC not rechecked
        f.seek(70)
        f.write(b"\xff" * 8)
    cleaner = LogCleaner(lambda: [bad, good], clock)
    cleaner.run_until_clean()
    assert cleaner.uncleanable == {("t", 0)} and ("u", 0) in cleaner.checkpoints
    assert not any(n.endswith(".cleaned") for n in os.listdir(bad.directory))


def test_compact_delete_retention_during_a_clean(tmp_path: Path) -> None:
    clock = Clock(0)
    log = compacted(tmp_path, clock, cleanup_policy="compact,delete", retention_ms=DAY)
    produce(log, [(b"k%d" % (i % 3), b"old%d" % i) for i in range(30)], ts=0)
    produce(log, [(b"k%d" % (i % 3), b"new%d" % i) for i in range(30)], ts=2 * DAY)
    cleaner = cleaner_for(log, clock)
    for _ in range(5):
        cleaner.step(budget_bytes=1)
    clock.now = DAY + 10
    assert log.delete_old_segments() > 0  # the old half expires while the clean runs
    start = log.log_start_offset
    cleaner.run_until_clean()
    rows = contents(log)
    assert rows[0][0] >= start
    assert fold(rows) == {b"k%d" % i: b"new%d" % (27 + i) for i in range(3)}
    assert not any(n.endswith((".cleaned", ".swap")) for n in os.listdir(log.directory))
