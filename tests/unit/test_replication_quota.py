"""The replication throttle's pure core: the rate meter (Kafka's SimpleRate
over 11 one-second samples), the throttled-replica lists, and when a
leader or a follower holds a replica back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moldau.replication.quota import (
    ALL_PARTITIONS,
    FOLLOWER_REPLICAS,
    LEADER_REPLICAS,
    UNLIMITED,
    RateMeter,
    ReplicationQuotas,
    throttled_partitions,
    throttled_replicas_error,
)


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


# -- the meter ---------------------------------------------------------------------


def test_a_fresh_meter_reads_zero() -> None:
    assert RateMeter().rate(5_000) == 0


def test_the_window_is_at_least_one_sample_long() -> None:
    meter = RateMeter()
    meter.record(1000, 0)
    assert meter.rate(0) == 1000  # 1000 bytes over the minimum of 1 s
    assert meter.rate(500) == 1000
    assert meter.rate(2000) == 500  # over the 2 s since the oldest sample started


def test_a_steady_stream_reads_its_rate() -> None:
    meter = RateMeter()
    for t in range(0, 30_000, 100):  # 100 bytes every 100 ms: 1000 B/s
        meter.record(100, t)
    assert meter.rate(30_000) == pytest.approx(1000, rel=0.1)


def test_samples_older_than_the_whole_window_are_forgotten() -> None:
    meter = RateMeter(samples=11, window_ms=1000)
    meter.record(1_000_000, 0)
    assert meter.rate(10_999) > 0
    assert meter.rate(11_000) == 0


def test_only_samples_plus_one_slots_are_kept() -> None:
    meter = RateMeter(samples=3, window_ms=1000)
    for second in range(10):
        meter.record(10, second * 1000)
    # Four slots (seconds 6..9); at 9 s the one of second 6 has seen nothing
    # for 3 windows and is forgotten: 30 bytes over the 2 s since second 7.
    assert meter.rate(9000) == pytest.approx(15)


@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(1, 10_000)), min_size=1, max_size=60),
    st.integers(1, 5_000_000),
)
def test_waiting_the_time_it_names_brings_the_rate_within_the_bound(
    steps: list[tuple[int, int]], bound: int
) -> None:
    meter = RateMeter()
    now = 0
    for gap_ms, size in steps:
        now += gap_ms * 100
        meter.record(size, now)
    over = meter.rate(now) > bound
    wait = meter.ms_until_at_most(bound, now)
    assert (wait > 0) == over
    assert meter.rate(now + wait) <= bound


# -- replica lists ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "*", " * ", "0:1", "0:1,1:2", " 0:1 , 3:101 ", "0:1,,1:2"])
def test_kafka_accepts_these_replica_lists(value: str) -> None:
    assert throttled_replicas_error(LEADER_REPLICAS, value) is None


@pytest.mark.parametrize("value", ["x", "0", "0:", ":1", "0:1:2", "*,0:1", "-1:2", "0:99999999999"])
def test_kafka_refuses_these_replica_lists(value: str) -> None:
    error = throttled_replicas_error(FOLLOWER_REPLICAS, value)
    assert error is not None
    assert error.startswith(f"{FOLLOWER_REPLICAS} must be the literal '*' or a list of replicas")


def test_a_list_throttles_the_partitions_named_with_this_brokers_id() -> None:
    assert throttled_partitions("0:1,1:2,2:1", 1) == frozenset({0, 2})
    assert throttled_partitions("0:1,1:2,2:1", 3) == frozenset()
    assert throttled_partitions("*", 3) is ALL_PARTITIONS
    assert throttled_partitions("", 3) == frozenset()


# -- the quotas ------------------------------------------------------------------


def quotas(
    configs: dict[str, dict[str, str]], clock: Clock, broker_id: int = 1
) -> ReplicationQuotas:
    return ReplicationQuotas.create(broker_id, configs.get, clock)


def test_unlimited_quotas_hold_nothing_back_and_record_nothing() -> None:
    clock = Clock()
    q = quotas({"t": {LEADER_REPLICAS: "*", FOLLOWER_REPLICAS: "*"}}, clock)
    q.leader.record("t", 0, 10**9)
    assert q.leader.meter.rate(clock.now) == 0
    assert not q.leader.holds_back("t", 0, replica_id=2, isr=[1])
    assert q.follower.holds_back("t", 0) == 0


def test_a_leader_holds_back_out_of_sync_throttled_replicas_once_over_the_rate() -> None:
    clock = Clock()
    q = quotas({"t": {LEADER_REPLICAS: "0:1"}, "u": {}}, clock)
    q.set_rates(leader=1000, follower=UNLIMITED)
    assert not q.leader.holds_back("t", 0, replica_id=3, isr=[1, 2])  # under the rate
    q.leader.record("t", 0, 5000)
    assert q.leader.holds_back("t", 0, replica_id=3, isr=[1, 2])
    # In the ISR: never held back (Kafka avoids ISR thrashing).
    assert not q.leader.holds_back("t", 0, replica_id=2, isr=[1, 2])
    # Not in the list (partition 1, or a topic without the key): not throttled.
    assert not q.leader.holds_back("t", 1, replica_id=3, isr=[1, 2])
    assert not q.leader.holds_back("u", 0, replica_id=3, isr=[1, 2])
    q.leader.record("u", 0, 10**9)  # unthrottled traffic is not counted
    clock.now += 5000
    assert not q.leader.holds_back("t", 0, replica_id=3, isr=[1, 2])


def test_in_sync_traffic_of_throttled_partitions_counts_against_the_rate() -> None:
    clock = Clock()
    q = quotas({"t": {LEADER_REPLICAS: "*"}}, clock)
    q.set_rates(leader=1000, follower=UNLIMITED)
    q.leader.record("t", 0, 5000)  # sent to an in-sync replica
    assert q.leader.holds_back("t", 1, replica_id=3, isr=[1])


def test_a_follower_waits_out_its_rate_until_it_has_caught_up() -> None:
    clock = Clock()
    q = quotas({"t": {FOLLOWER_REPLICAS: "0:1"}}, clock)
    q.set_rates(leader=UNLIMITED, follower=1000)
    q.follower.fetched("t", 0, 3000, leader_hw=10_000, log_end=300)
    wait = q.follower.holds_back("t", 0)
    assert wait == 3000  # 3000 bytes at 1000 B/s: 3 s after the sample started
    clock.now += wait
    assert q.follower.holds_back("t", 0) == 0
    q.follower.fetched("t", 0, 5000, leader_hw=10_000, log_end=10_000)
    assert q.follower.holds_back("t", 0) == 0  # caught up: not throttled
    other = quotas({"t": {FOLLOWER_REPLICAS: "0:2"}}, clock)  # listed for broker 2 only
    other.set_rates(leader=UNLIMITED, follower=1000)
    other.follower.fetched("t", 0, 3000, leader_hw=10_000, log_end=300)
    assert other.follower.holds_back("t", 0) == 0
