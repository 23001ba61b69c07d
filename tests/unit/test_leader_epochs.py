"""The leader-epoch cache: Kafka's rules (pure), and how the log keeps it."""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldau.log import fileops
from moldau.log.checkpoint import (
    LEADER_EPOCH_CHECKPOINT,
    read_leader_epochs,
    write_leader_epochs,
)
from moldau.log.config import LogConfig
from moldau.log.errors import KafkaStorageError
from moldau.log.leader_epochs import UNDEFINED, LeaderEpochCache
from moldau.log.partition_log import PartitionLog
from moldau.protocol.records import Record, build_batch

# -- the pure cache ----------------------------------------------------------


def test_assign_keeps_the_first_offset_of_each_epoch() -> None:
    cache = LeaderEpochCache()
    assert cache.assign(0, 0)
    assert not cache.assign(0, 5)  # same epoch, later offset: nothing new
    assert cache.assign(2, 10)
    assert cache.entries == [(0, 0), (2, 10)]
    assert cache.latest_epoch == 2


def test_assign_drops_entries_that_are_not_monotonic() -> None:
    cache = LeaderEpochCache([(0, 0), (2, 10), (3, 20)])
    # A lower epoch at a later offset drops the epochs >= it.
    assert cache.assign(1, 25)
    assert cache.entries == [(0, 0), (1, 25)]
    # A later epoch at an earlier offset drops the entries starting at or past it.
    assert cache.assign(4, 0)
    assert cache.entries == [(4, 0)]
    # The latest epoch again, earlier than its start: moved back.
    cache = LeaderEpochCache([(5, 30)])
    assert cache.assign(5, 20)
    assert cache.entries == [(5, 20)]


def test_negative_epochs_and_offsets_are_ignored() -> None:
    cache = LeaderEpochCache()
    assert not cache.assign(-1, 0)
    assert not cache.assign(0, -1)
    assert cache.entries == []
    assert cache.latest_epoch == -1


def test_end_offset_for_follows_kafka() -> None:
    cache = LeaderEpochCache([(1, 5), (3, 20), (6, 40)])
    end = 55
    assert cache.end_offset_for(6, end) == (6, 55)  # latest: the log end
    assert cache.end_offset_for(3, end) == (3, 40)
    assert cache.end_offset_for(4, end) == (3, 40)  # unknown epoch: the one below it
    assert cache.end_offset_for(5, end) == (3, 40)
    assert cache.end_offset_for(1, end) == (1, 20)
    assert cache.end_offset_for(0, end) == (0, 5)  # older than all: first start
    assert cache.end_offset_for(7, end) == UNDEFINED  # newer than all
    assert cache.end_offset_for(-1, end) == UNDEFINED
    assert LeaderEpochCache().end_offset_for(0, end) == UNDEFINED


def test_truncate_from_end() -> None:
    cache = LeaderEpochCache([(1, 5), (3, 20), (6, 40)])
    assert not cache.truncate_from_end(41)
    assert cache.truncate_from_end(20)
    assert cache.entries == [(1, 5)]
    assert cache.latest_epoch == 1
    assert cache.truncate_from_end(0)
    assert cache.entries == []
    assert cache.latest_epoch == -1


def test_truncate_from_start() -> None:
    cache = LeaderEpochCache([(1, 5), (3, 20), (6, 40)])
    assert not cache.truncate_from_start(4)
    assert cache.truncate_from_start(25)
    assert cache.entries == [(3, 25), (6, 40)]
    assert cache.truncate_from_start(40)
    assert cache.entries == [(6, 40)]
    assert not cache.truncate_from_start(40)
    assert cache.truncate_from_start(90)
    assert cache.entries == [(6, 90)]
    assert cache.latest_epoch == 6


def _model_end_offset(entries: list[tuple[int, int]], epoch: int, end: int) -> tuple[int, int]:
    """endOffsetFor spelt out from its definition, as a reference."""
    if epoch < 0 or not entries:
        return UNDEFINED
    if epoch == entries[-1][0]:
        return epoch, end
    later = [e for e in entries if e[0] > epoch]
    earlier = [e for e in entries if e[0] <= epoch]
    if not later:
        return UNDEFINED
    return (earlier[-1][0] if earlier else epoch), later[0][1]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("assign"), st.integers(-1, 12), st.integers(-1, 200)),
        st.tuples(st.just("end"), st.integers(-1, 200), st.just(0)),
        st.tuples(st.just("start"), st.integers(0, 200), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(operations, st.integers(-1, 14), st.integers(0, 300))
def test_entries_stay_monotonic_and_lookups_match_the_definition(
    ops: list[tuple[str, int, int]], epoch: int, end: int
) -> None:
    cache = LeaderEpochCache()
    for op, a, b in ops:
        if op == "assign":
            cache.assign(a, b)
            if a >= 0 and b >= 0:
                assert cache.entries[-1][0] == a
        elif op == "end":
            cache.truncate_from_end(a)
            assert all(start < a for _, start in cache.entries) or a < 0
        else:
            cache.truncate_from_start(a)
            assert all(start >= a for _, start in cache.entries)
        entries = cache.entries
        assert entries == sorted(set(entries))
        assert all(x[0] < y[0] and x[1] < y[1] for x, y in itertools.pairwise(entries))
        assert cache.latest_epoch == (entries[-1][0] if entries else -1)
        assert LeaderEpochCache(entries) == cache
    log_end = max([end, *(start for _, start in cache.entries)])
    expected = _model_end_offset(cache.entries, epoch, log_end)
    assert cache.end_offset_for(epoch, log_end) == expected


# -- kept by the log ---------------------------------------------------------


class Clock:
    def __call__(self) -> int:
        return 1_000_000


def batch(records: int = 1) -> bytes:
    return build_batch([Record(i, 0, None, b"v") for i in range(records)], base_timestamp=1)


def open_log(directory: str, *, recovery_point: int = 0, **config: object) -> PartitionLog:
    return PartitionLog.open(
        directory,
        "t",
        0,
        uuid.UUID(int=7),
        LogConfig(**config),  # type: ignore[arg-type]
        Clock(),
        recovery_point=recovery_point,
    )


def epochs_log(tmp_path: Path, **config: object) -> PartitionLog:
    """Epoch 0 at 0, 2 at 3, 5 at 6; nine records in batches of three."""
    log = open_log(str(tmp_path / "t-0"), **config)
    for epoch in (0, 2, 5):
        log.append(batch(3), leader_epoch=epoch)
    return log


def test_appends_record_new_epochs_and_persist_them(tmp_path: Path) -> None:
    log = epochs_log(tmp_path)
    log.append(batch(2), leader_epoch=5)
    assert log.leader_epochs.entries == [(0, 0), (2, 3), (5, 6)]
    assert read_leader_epochs(log.directory) == [(0, 0), (2, 3), (5, 6)]
    assert log.end_offset_for_epoch(2) == (2, 6)
    assert log.end_offset_for_epoch(5) == (5, 11)
    with open(os.path.join(log.directory, LEADER_EPOCH_CHECKPOINT)) as f:
        assert f.read() == "0\n3\n0 0\n2 3\n5 6\n"


def test_the_checkpoint_survives_a_restart_and_is_rebuilt_when_lost(tmp_path: Path) -> None:
    log = epochs_log(tmp_path)
    log.flush()
    log.close()
    path = os.path.join(log.directory, LEADER_EPOCH_CHECKPOINT)
    assert open_log(log.directory).leader_epochs.entries == [(0, 0), (2, 3), (5, 6)]
    for damage in ("remove", "garbage", "short"):
        if damage == "remove":
            os.remove(path)
        else:
            with open(path, "w") as f:
                f.write("0\n7\n0 0\n" if damage == "short" else "x y\n")
        reopened = open_log(log.directory)
        assert reopened.leader_epochs.entries == [(0, 0), (2, 3), (5, 6)]
        assert read_leader_epochs(log.directory) == [(0, 0), (2, 3), (5, 6)]
        reopened.close()


def test_entries_past_the_log_end_are_dropped_at_start(tmp_path: Path) -> None:
    """A crash after the checkpoint was written but before the batch was."""
    log = epochs_log(tmp_path)
    write_leader_epochs(log.directory, [(0, 0), (2, 3), (5, 6), (9, 9)])
    reopened = open_log(log.directory)
    assert reopened.leader_epochs.entries == [(0, 0), (2, 3), (5, 6)]
    assert read_leader_epochs(log.directory) == [(0, 0), (2, 3), (5, 6)]


def test_a_new_leaders_entry_is_written_with_its_first_batch(tmp_path: Path) -> None:
    log = epochs_log(tmp_path)
    log.assign_leader_epoch(9, log.log_end_offset)
    assert log.end_offset_for_epoch(5) == (5, 9)
    assert read_leader_epochs(log.directory) == [(0, 0), (2, 3), (5, 6)]  # no fsync yet
    assert open_log(log.directory).leader_epochs.entries == [(0, 0), (2, 3), (5, 6)]
    log.assign_leader_epoch(9, log.log_end_offset)
    log.append(batch(), leader_epoch=9)
    assert read_leader_epochs(log.directory) == [(0, 0), (2, 3), (5, 6), (9, 9)]
    # A follower's batches of that epoch write it too.
    follower = open_log(str(tmp_path / "follower" / "t-0"))
    follower.assign_leader_epoch(0, 0)
    follower.append_as_follower(b"".join(s.read() for s in log.read(0, 1 << 20).slices))
    assert read_leader_epochs(follower.directory) == [(0, 0), (2, 3), (5, 6), (9, 9)]


def test_truncation_and_start_moves_prune_the_cache(tmp_path: Path) -> None:
    log = epochs_log(tmp_path)
    log.truncate_to(5)  # the batch holding 3..5 goes whole
    assert log.leader_epochs.entries == [(0, 0)]
    assert read_leader_epochs(log.directory) == [(0, 0)]
    log.append(batch(3), leader_epoch=7)
    assert log.leader_epochs.entries == [(0, 0), (7, 3)]
    log.delete_records_before(4)
    assert log.leader_epochs.entries == [(7, 4)]
    assert read_leader_epochs(log.directory) == [(7, 4)]
    log.truncate_to(0)
    assert log.leader_epochs.entries == []
    assert read_leader_epochs(log.directory) == []


def test_retention_moves_the_first_entry(tmp_path: Path) -> None:
    log = epochs_log(tmp_path, segment_bytes=100, retention_bytes=0)
    log.high_watermark = log.log_end_offset
    assert log.delete_old_segments() > 0
    assert log.leader_epochs.entries[0][1] == log.log_start_offset
    assert read_leader_epochs(log.directory) == log.leader_epochs.entries


def test_follower_appends_record_the_epochs_of_their_batches(tmp_path: Path) -> None:
    leader = epochs_log(tmp_path / "leader")
    follower = open_log(str(tmp_path / "follower" / "t-0"))
    data = b"".join(s.read() for s in leader.read(0, 1 << 20).slices)
    follower.append_as_follower(data)
    assert follower.leader_epochs.entries == leader.leader_epochs.entries
    assert read_leader_epochs(follower.directory) == leader.leader_epochs.entries


def test_an_epoch_that_cannot_be_persisted_refuses_the_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = epochs_log(tmp_path)
    real_fsync = fileops.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileops, "fsync", failing_fsync)
    end = log.log_end_offset
    with pytest.raises(KafkaStorageError):
        log.append(batch(), leader_epoch=6)
    assert log.log_end_offset == end
    assert log.leader_epochs.entries == [(0, 0), (2, 3), (5, 6)]
    # The file may hold either version now: the next append rewrites it
    # first, whatever its epoch, and is refused while that fails.
    with pytest.raises(KafkaStorageError):
        log.append(batch(), leader_epoch=5)
    monkeypatch.setattr(fileops, "fsync", real_fsync)
    log.append(batch(), leader_epoch=5)
    log.append(batch(), leader_epoch=6)
    assert log.leader_epochs.entries == [(0, 0), (2, 3), (5, 6), (6, 10)]
    assert read_leader_epochs(log.directory) == log.leader_epochs.entries
    assert log.offline is None


def below_end(log: PartitionLog, entries: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(epoch, start) for epoch, start in entries if start < log.log_end_offset]


def rebuilt(log: PartitionLog) -> list[tuple[int, int]]:
    """The entries a log's batches imply below its end, as a start without a
    checkpoint builds them."""
    cache = LeaderEpochCache()
    for segment in log.segments:
        for _, header, _ in segment.iter_batches():
            cache.assign(header.partition_leader_epoch, header.base_offset)
    cache.truncate_from_start(log.log_start_offset)
    return below_end(log, cache.entries)


log_operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 2), st.integers(1, 3)),
        st.tuples(st.just("truncate"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("delete_records"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("restart"), st.booleans(), st.just(0)),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(log_operations)
def test_the_cache_always_matches_the_batches(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    """Whatever appends (epochs growing), truncations, start moves and
    restarts (clean or not) did, the cache, in memory and on disk, is what
    the log's batches say. (Past them, at the log end, the latest epoch may
    stay after DeleteRecords emptied the log; a restart drops it, as Kafka's
    does.)"""
    directory = str(tmp_path_factory.mktemp("log") / "t-0")
    log = open_log(directory, segment_bytes=200)
    epoch = 0
    for op, a, b in ops:
        if op == "append":
            epoch += a
            log.append(batch(b), leader_epoch=epoch)
        elif op == "truncate":
            log.truncate_to(min(a, log.log_end_offset))
        elif op == "delete_records":
            log.delete_records_before(min(a, log.log_end_offset))
        else:
            start, recovery_point = log.log_start_offset, log.recovery_point
            if a:
                log.flush()
                recovery_point = log.log_end_offset
                log.close()
            log = PartitionLog.open(
                directory,
                "t",
                0,
                log.topic_id,
                log.config,
                Clock(),
                log_start_offset=start,
                recovery_point=recovery_point,
                clean_shutdown=bool(a),
            )
        entries = log.leader_epochs.entries
        assert below_end(log, entries) == rebuilt(log)
        assert len(entries) - len(rebuilt(log)) <= 1
        assert all(start <= log.log_end_offset for _, start in entries)
        assert read_leader_epochs(directory) in (None, entries)
    log.close()
