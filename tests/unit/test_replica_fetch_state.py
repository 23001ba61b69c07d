"""The pure rules of replication: what a follower fetches, where it truncates,
how the leader tracks followers and moves the high watermark, and when an
acks=all write is done. Two real partition logs stand for leader and
follower; the "network" is a function that hands the leader's bytes over."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.protocol.errors import ErrorCode
from moldau.protocol.messages import encode_request
from moldau.protocol.records import Record, build_batch
from moldau.replication.fetch_state import (
    FOLLOWER_FETCH_VERSION,
    ErrorAction,
    FetchLimits,
    FetchTarget,
    FollowerSession,
    OutOfRange,
    PartitionFetch,
    error_action,
    fetch_request,
    next_ready_ms,
    out_of_range_action,
    truncation_offset,
)
from moldau.replication.partition import Partition, ReplicaState

TOPIC_ID = uuid.UUID(int=7)


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def make(directory: Path, broker_id: int, clock: Clock, replicas: list[int]) -> Partition:
    log = PartitionLog.open(
        str(directory / f"b{broker_id}" / "t-0"), "t", 0, TOPIC_ID, LogConfig(), clock
    )
    return Partition("t", 0, TOPIC_ID, log, broker_id, replicas=list(replicas))


def batch(*values: bytes) -> bytes:
    return build_batch([Record(i, 0, None, v) for i, v in enumerate(values)], base_timestamp=1)


def log_bytes(partition: Partition) -> bytes:
    read = partition.log.read(partition.log_start_offset, 1 << 30, min_one_batch=True)
    return b"".join(s.read() for s in read.slices)


def fetch(leader: Partition, follower: Partition, now: int) -> bool:
    """One follower fetch, as the fetcher and the leader's handler do it;
    whether it changed the follower's log (a truncation or new batches)."""
    fetch_offset = follower.log_end_offset
    last_epoch = follower.log.leader_epochs.latest_epoch
    if last_epoch >= 0:
        diverging = leader.diverging_epoch(fetch_offset, last_epoch)
        if diverging is not None:
            local = follower.log.end_offset_for_epoch(diverging[0])
            before = (fetch_offset, follower.log.leader_epochs.entries)
            follower.truncate_to(truncation_offset(diverging, local, fetch_offset))
            after = (follower.log_end_offset, follower.log.leader_epochs.entries)
            assert after != before, "a truncation that changes nothing would repeat forever"
            return True
    leader_end = leader.log_end_offset
    read = leader.read(fetch_offset, 1 << 20, committed_only=False)
    leader.update_follower_fetch(follower.broker_id, fetch_offset, leader_end, now)
    data = b"".join(s.read() for s in read.slices)
    if data:
        follower.append_as_follower(data)
    follower.follow_leader_offsets(leader.high_watermark, leader.log_start_offset)
    return bool(data)


def catch_up(leader: Partition, follower: Partition, now: int, rounds: int = 20) -> None:
    """Fetch until a fetch brings nothing (so the leader knows the follower's end)."""
    for _ in range(rounds):
        if not fetch(leader, follower, now):
            return
    raise AssertionError("the follower did not catch up")


# -- requests and decisions --------------------------------------------------------------


def test_fetch_request_is_a_follower_fetch_v12_that_encodes() -> None:
    wanted = [PartitionFetch("a", 0, 5, 100, 4, 0), PartitionFetch("a", 1, 5, 7, -1, 0)]
    wanted.append(PartitionFetch("b", 0, 2, 0, -1, 0))
    sent = FollowerSession().request({(w.topic, w.partition): w for w in wanted})
    body = fetch_request(3, sent, FetchLimits(max_wait_ms=500, partition_max_bytes=1000))
    assert body["replica_id"] == 3
    assert body["max_wait_ms"] == 500 and body["min_bytes"] == 1
    assert [t["topic"] for t in body["topics"]] == ["a", "b"]
    first = body["topics"][0]["partitions"][0]
    assert first == {
        "partition": 0,
        "current_leader_epoch": 5,
        "fetch_offset": 100,
        "last_fetched_epoch": 4,
        "log_start_offset": 0,
        "partition_max_bytes": 1000,
    }
    assert encode_request(1, FOLLOWER_FETCH_VERSION, 1, "replica", body)


@pytest.mark.parametrize(
    ("diverging", "local", "log_end", "expected"),
    [
        ((3, 50), (3, 80), 90, 50),  # same epoch: the smaller end
        ((3, 80), (3, 50), 90, 50),
        ((3, 50), (2, 40), 90, 40),  # the follower never had epoch 3: its epoch 2 end
        ((3, 50), (-1, -1), 90, 50),  # no epoch that old here: the leader's end
        ((3, 50), (-1, -1), 20, 20),  # never past the follower's own end
        ((3, 95), (3, 120), 90, 90),
    ],
)
def test_truncation_offset(
    diverging: tuple[int, int], local: tuple[int, int], log_end: int, expected: int
) -> None:
    assert truncation_offset(diverging, local, log_end) == expected


def test_out_of_range_actions() -> None:
    assert out_of_range_action(100, 0, 80) == (OutOfRange.TRUNCATE, 80)
    assert out_of_range_action(100, 150, 200) == (OutOfRange.RESTART_AT_LEADER_START, 150)
    assert out_of_range_action(100, 50, 200) == (OutOfRange.RETRY, 100)


def test_error_actions() -> None:
    assert error_action(ErrorCode.FENCED_LEADER_EPOCH) is ErrorAction.HOLD
    assert error_action(ErrorCode.OFFSET_OUT_OF_RANGE) is ErrorAction.OUT_OF_RANGE
    for code in (
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.KAFKA_STORAGE_ERROR,
    ):
        assert error_action(code) is ErrorAction.RETRY_LATER


def test_fetch_targets_back_off_and_hold_with_a_fake_clock() -> None:
    clock = Clock(1000)
    a, b, held = FetchTarget(1), FetchTarget(1), FetchTarget(1, held=True)
    assert next_ready_ms([a, b, held]) == 0
    a.delay(clock(), 200)
    b.delay(clock(), 500)
    assert not a.ready(clock()) and not held.ready(clock())
    assert next_ready_ms([a, b, held]) == 1200
    clock.now = 1200
    assert a.ready(clock()) and not b.ready(clock())
    assert next_ready_ms([held]) is None


# -- the leader's view of its followers ------------------------------------------------------


def test_caught_up_time_follows_kafkas_rule() -> None:
    state = ReplicaState()
    state.record_fetch(10, 10, now_ms=100)  # asked for the leader's end
    assert state.last_caught_up_ms == 100
    state.record_fetch(10, 20, now_ms=200)  # behind: 10 more came meanwhile
    assert state.last_caught_up_ms == 100
    state.record_fetch(20, 25, now_ms=300)  # has what the leader had at 200
    assert state.last_caught_up_ms == 200
    state.record_fetch(22, 30, now_ms=400)  # still short of 25
    assert state.last_caught_up_ms == 200
    assert state.log_end_offset == 22


def test_high_watermark_is_the_smallest_log_end_in_the_isr(tmp_path: Path) -> None:
    clock = Clock()
    leader = make(tmp_path, 1, clock, [1, 2, 3])
    leader.become_leader(epoch=1, isr=[1, 2, 3], now_ms=clock())
    leader.append_as_leader(batch(b"a", b"b", b"c"))
    assert leader.high_watermark == 0
    assert not leader.update_follower_fetch(2, 3, 3, clock())  # 3 still at -1
    assert leader.update_follower_fetch(3, 2, 3, clock())
    assert leader.high_watermark == 2
    assert leader.update_follower_fetch(3, 3, 3, clock())
    assert leader.high_watermark == 3
    assert not leader.update_follower_fetch(9, 3, 3, clock())  # not a replica


def test_a_follower_outside_the_isr_does_not_hold_the_high_watermark(tmp_path: Path) -> None:
    clock = Clock()
    leader = make(tmp_path, 1, clock, [1, 2, 3])
    leader.become_leader(epoch=1, isr=[1, 2], now_ms=clock())
    leader.append_as_leader(batch(b"a", b"b"))
    leader.update_follower_fetch(2, 2, 2, clock())
    assert leader.high_watermark == 2


def test_a_leader_that_stays_keeps_its_followers_a_new_one_does_not(tmp_path: Path) -> None:
    clock = Clock()
    leader = make(tmp_path, 1, clock, [1, 2])
    leader.become_leader(epoch=1, isr=[1, 2], now_ms=clock())
    leader.append_as_leader(batch(b"a"))
    leader.update_follower_fetch(2, 1, 1, clock())
    leader.become_leader(epoch=2, isr=[1, 2], now_ms=clock())  # an ISR change bumps the epoch
    assert leader.followers[2].log_end_offset == 1
    leader.become_follower(2, 3)
    leader.become_leader(epoch=4, isr=[1, 2], now_ms=clock() + 5)
    assert leader.followers[2].log_end_offset == -1
    assert leader.followers[2].last_caught_up_ms == clock() + 5


def test_check_replicated_outcomes(tmp_path: Path) -> None:
    clock = Clock()
    leader = make(tmp_path, 1, clock, [1, 2, 3])
    leader.become_leader(epoch=1, isr=[1, 2, 3], now_ms=clock())
    result = leader.append_as_leader(batch(b"a", b"b"))
    assert leader.check_replicated(result.last_offset, 1, 2) is None
    leader.update_follower_fetch(2, 2, 2, clock())
    leader.update_follower_fetch(3, 2, 2, clock())
    assert leader.check_replicated(result.last_offset, 1, 2) == ErrorCode.NONE
    assert leader.check_replicated(result.last_offset, 0, 2) == ErrorCode.NOT_LEADER_OR_FOLLOWER
    # The ISR shrank below the minimum while the write waited.
    leader.become_leader(epoch=2, isr=[1], now_ms=clock())
    assert leader.check_replicated(result.last_offset, 1, 2) == (
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND
    )
    leader.become_follower(2, 3)
    assert leader.check_replicated(result.last_offset, 1, 2) == ErrorCode.NOT_LEADER_OR_FOLLOWER


# -- followers: byte for byte, and truncation after leader changes ----------------------------


def test_a_follower_copies_the_leader_byte_for_byte(tmp_path: Path) -> None:
    clock = Clock()
    leader = make(tmp_path, 1, clock, [1, 2])
    follower = make(tmp_path, 2, clock, [1, 2])
    leader.become_leader(epoch=3, isr=[1, 2], now_ms=clock())
    follower.become_follower(1, 3)
    for i in range(5):
        leader.append_as_leader(batch(f"v{i}".encode(), b"x" * i))
    catch_up(leader, follower, clock())
    assert log_bytes(follower) == log_bytes(leader)
    assert leader.high_watermark == 10 and follower.high_watermark == 10
    assert follower.log.leader_epochs.entries == leader.log.leader_epochs.entries


def test_a_replica_that_led_without_writing_drops_its_empty_epoch(tmp_path: Path) -> None:
    """It led epoch 2 and wrote nothing, then follows a leader of epoch 3 that
    never had epoch 2: the entry at its log end must go, or every fetch
    would name epoch 2 and be told to truncate again."""
    clock = Clock()
    one = make(tmp_path, 1, clock, [1, 2])
    two = make(tmp_path, 2, clock, [1, 2])
    one.become_leader(epoch=1, isr=[1, 2], now_ms=clock())
    two.become_follower(1, 1)
    one.append_as_leader(batch(b"a"))
    catch_up(one, two, clock())
    one.become_leader(epoch=2, isr=[1, 2], now_ms=clock())  # writes nothing at 2
    one.become_follower(2, 3)
    two.become_leader(epoch=3, isr=[1, 2], now_ms=clock())
    two.append_as_leader(batch(b"b"))
    catch_up(two, one, clock())
    assert log_bytes(one) == log_bytes(two)
    assert [e for e, _ in one.log.leader_epochs.entries] == [1, 3]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=12
    )
)
def test_after_any_leader_changes_followers_end_identical_to_the_leader(
    tmp_path_factory: pytest.TempPathFactory, history: list[tuple[int, int, int]]
) -> None:
    """Each step elects one of three replicas (any, not only in-sync ones: an
    unclean history is the hard case), lets it append some batches, and lets
    some followers fetch; at the end all follow the last leader and must hold
    exactly its log, whatever they had written or copied before."""
    directory = tmp_path_factory.mktemp("replicas")
    clock = Clock()
    replicas = [make(directory, b, clock, [0, 1, 2]) for b in range(3)]
    leader = replicas[0]
    for epoch, (chosen, appends, fetchers) in enumerate(history, start=1):
        leader = replicas[chosen]
        for r in replicas:
            if r is leader:
                r.become_leader(epoch=epoch, isr=[0, 1, 2], now_ms=clock())
            else:
                r.become_follower(chosen, epoch)
        for i in range(appends):
            leader.append_as_leader(batch(f"{epoch}-{i}".encode()))
        for r in [r for r in replicas if r is not leader][:fetchers]:
            catch_up(leader, r, clock())
    for r in replicas:
        if r is not leader:
            catch_up(leader, r, clock())
            assert log_bytes(r) == log_bytes(leader)
            assert written_epochs(r) == written_epochs(leader)


def written_epochs(partition: Partition) -> list[tuple[int, int]]:
    """The epoch entries with batches (a leader's entry at its log end has none yet)."""
    end = partition.log_end_offset
    return [(e, start) for e, start in partition.log.leader_epochs.entries if start < end]


# -- the ISR: shrink, expand, and the high watermark while a change is pending -------------


def leading(tmp_path: Path, clock: Clock, isr: list[int]) -> Partition:
    leader = make(tmp_path, 1, clock, [1, 2, 3])
    leader.become_leader(epoch=1, isr=isr, now_ms=clock())
    return leader


def test_a_follower_that_has_not_caught_up_for_the_lag_leaves(tmp_path: Path) -> None:
    clock = Clock(10_000)
    leader = leading(tmp_path, clock, [1, 2, 3])
    leader.append_as_leader(batch(b"a"))
    leader.update_follower_fetch(2, 1, 1, clock())
    leader.update_follower_fetch(3, 0, 1, clock())  # behind
    clock.now += 1000
    assert leader.isr_shrink(clock(), max_lag_ms=1000) is None  # not longer than the lag
    clock.now += 1
    assert leader.isr_shrink(clock(), max_lag_ms=1000) == [1, 2]
    # One at the log end is in sync however long ago it fetched.
    clock.now += 60_000
    assert leader.lagging_followers(clock(), 1000) == [3]


def test_nothing_is_proposed_while_a_change_is_pending(tmp_path: Path) -> None:
    clock = Clock(10_000)
    leader = leading(tmp_path, clock, [1, 2, 3])
    leader.append_as_leader(batch(b"a"))
    clock.now += 5000
    leader.pending_isr = [1, 2]
    assert leader.isr_shrink(clock(), 1000) is None
    assert leader.isr_expand(2) is None


def test_a_caught_up_follower_rejoins(tmp_path: Path) -> None:
    clock = Clock()
    leader = leading(tmp_path, clock, [1, 2])
    leader.append_as_leader(batch(b"a", b"b"))
    leader.update_follower_fetch(2, 2, 2, clock())
    assert leader.high_watermark == 2
    leader.update_follower_fetch(3, 1, 2, clock())
    assert leader.isr_expand(3) is None  # below the high watermark
    leader.update_follower_fetch(3, 2, 2, clock())
    assert leader.isr_expand(3) == [1, 2, 3]
    assert leader.isr_expand(2) is None  # a member already


def test_a_rejoining_follower_needs_the_start_of_the_leaders_epoch(tmp_path: Path) -> None:
    """The high watermark may lag the new leader's epoch start; a follower
    must also have everything up to where this leader's epoch began."""
    clock = Clock()
    leader = make(tmp_path, 1, clock, [1, 2, 3])
    leader.become_follower(2, 1)
    leader.log.append_as_follower(batch(b"a", b"b", b"c"))
    leader.become_leader(epoch=2, isr=[1, 2], now_ms=clock())  # 2 has not fetched yet
    assert leader.leader_epoch_start_offset == 3 and leader.high_watermark == 0
    leader.update_follower_fetch(3, 2, 3, clock())
    assert leader.isr_expand(3) is None
    leader.update_follower_fetch(3, 3, 3, clock())
    assert leader.isr_expand(3) == [1, 2, 3]


def test_the_high_watermark_waits_for_the_larger_isr_until_the_controller_answers(
    tmp_path: Path,
) -> None:
    clock = Clock()
    leader = leading(tmp_path, clock, [1, 2, 3])
    leader.append_as_leader(batch(b"a", b"b"))
    leader.update_follower_fetch(2, 2, 2, clock())
    assert leader.high_watermark == 0  # 3 has nothing
    leader.pending_isr = [1, 2]  # asked to drop 3: not written yet
    leader.update_follower_fetch(2, 2, 2, clock())
    assert leader.high_watermark == 0
    woken: list[Partition] = []
    leader.on_append = woken.append
    leader.isr_changed([1, 2], partition_epoch=7)
    assert leader.high_watermark == 2 and leader.isr == [1, 2]
    assert leader.partition_epoch == 7 and leader.pending_isr is None
    assert woken == [leader]
