"""Replica placement as Kafka's AdminUtils: its documented examples, and properties."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldau.cluster.placement import (
    INVALID_PARTITIONS,
    INVALID_REPLICA_ASSIGNMENT,
    INVALID_REPLICATION_FACTOR,
    BrokerSlot,
    PlacementError,
    assign_replicas,
    rack_alternated,
    validate_assignment,
)

# The rack map of Kafka's AdminUtils documentation.
KAFKA_RACKS = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}


def slots(n: int, racks: dict[int, str] | None = None) -> list[BrokerSlot]:
    return [BrokerSlot(i, (racks or {}).get(i)) for i in range(n)]


def test_rack_alternated_list_from_kafkas_docs() -> None:
    assert rack_alternated(KAFKA_RACKS) == [0, 3, 1, 5, 4, 2]
    racks = {b: f"rack{b // 3 + 1}" for b in range(9)}
    assert rack_alternated(racks) == [0, 3, 6, 1, 4, 7, 2, 5, 8]
    assert rack_alternated({5: "a", 1: "a", 9: "b"}) == [1, 9, 5]


def test_rack_unaware_example_from_kafkas_docs() -> None:
    got = assign_replicas(slots(5), 10, 3, start_index=0)
    # Kafka's table: row "p0 p1 p2 p3 p4" is replica 1 of brokers 0..4, etc.
    assert got[0] == (0, 1, 2)
    assert got[4] == (4, 0, 1)
    assert got[5] == (0, 2, 3)
    assert got[9] == (4, 1, 2)


def test_rack_aware_example_from_kafkas_docs() -> None:
    got = assign_replicas(slots(6, KAFKA_RACKS), 7, 3, start_index=0)
    assert got == {
        0: (0, 3, 1),
        1: (3, 1, 5),
        2: (1, 5, 4),
        3: (5, 4, 2),
        4: (4, 2, 0),
        5: (2, 0, 3),
        6: (0, 4, 2),
    }


def test_added_partitions_continue_the_round_robin() -> None:
    whole = assign_replicas(slots(4), 8, 2, start_index=1)
    tail = assign_replicas(slots(4), 3, 2, start_index=1, start_partition=5)
    # Leaders go on where the round robin stopped; Kafka restarts the follower
    # shift at the start index, so followers may differ from an up-front placement.
    assert {p: r[0] for p, r in tail.items()} == {p: whole[p][0] for p in (5, 6, 7)}


def test_random_start_comes_from_the_rng() -> None:
    a = assign_replicas(slots(5), 5, 2, rng=random.Random(7))
    b = assign_replicas(slots(5), 5, 2, rng=random.Random(7))
    assert a == b


@pytest.mark.parametrize(
    ("partitions", "rf", "code"),
    [
        (0, 1, INVALID_PARTITIONS),
        (1, 0, INVALID_REPLICATION_FACTOR),
        (1, 4, INVALID_REPLICATION_FACTOR),
    ],
)
def test_refusals(partitions: int, rf: int, code: int) -> None:
    with pytest.raises(PlacementError) as err:
        assign_replicas(slots(3), partitions, rf)
    assert err.value.error_code == code


def test_some_racks_missing_is_refused() -> None:
    with pytest.raises(PlacementError) as err:
        assign_replicas([BrokerSlot(0, "a"), BrokerSlot(1)], 1, 1)
    assert err.value.error_code == INVALID_REPLICA_ASSIGNMENT


@given(
    n=st.integers(1, 12),
    rf=st.integers(1, 12),
    rounds=st.integers(1, 4),
    extra=st.integers(0, 11),
    start=st.integers(0, 50),
    start_partition=st.integers(0, 30),
)
@settings(max_examples=300, deadline=None)
def test_rack_unaware_properties(
    n: int, rf: int, rounds: int, extra: int, start: int, start_partition: int
) -> None:
    rf = min(rf, n)
    partitions = rounds * n + extra % n
    got = assign_replicas(slots(n), partitions, rf, start_index=start % n)
    assert all(len(set(r)) == rf for r in got.values())
    leaders = Counter(r[0] for r in got.values())
    assert max(leaders.values()) - min(leaders.get(b, 0) for b in range(n)) <= 1
    # Each full round of n partitions puts every broker once in every position.
    full = assign_replicas(slots(n), rounds * n, rf, start_index=start % n)
    counts = Counter(b for r in full.values() for b in r)
    assert set(counts.values()) == {rounds * rf}
    # Added partitions are numbered on from the existing ones, leaders in turn.
    more = assign_replicas(slots(n), 3, rf, start_index=start % n, start_partition=start_partition)
    assert sorted(more) == [start_partition, start_partition + 1, start_partition + 2]
    assert [more[p][0] for p in sorted(more)] == [(p + start) % n for p in sorted(more)]


@st.composite
def racked(draw: st.DrawFn) -> dict[int, str]:
    n = draw(st.integers(1, 12))
    rack_count = draw(st.integers(1, n))
    ids = draw(st.lists(st.integers(0, 100), min_size=n, max_size=n, unique=True))
    return {b: f"r{draw(st.integers(0, rack_count - 1))}" for b in ids}


@given(racks=racked(), rf=st.integers(1, 12), partitions=st.integers(1, 40), seed=st.integers())
@settings(max_examples=300, deadline=None)
def test_rack_aware_properties(racks: dict[int, str], rf: int, partitions: int, seed: int) -> None:
    n, rack_count = len(racks), len(set(racks.values()))
    rf = min(rf, n)
    brokers = [BrokerSlot(b, r) for b, r in racks.items()]
    got = assign_replicas(brokers, partitions, rf, rng=random.Random(seed))
    assert sorted(got) == list(range(partitions))
    for replicas in got.values():
        assert len(set(replicas)) == rf
        used = [racks[b] for b in replicas]
        if rf <= rack_count:
            assert len(set(used)) == rf, (replicas, racks)
        else:
            assert len(set(used)) == rack_count
    leaders = Counter(r[0] for r in got.values())
    assert max(leaders.values()) - min(leaders.get(b, 0) for b in racks) <= 1


@given(per_rack=st.integers(1, 4), rack_count=st.integers(1, 4), rounds=st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_rack_aware_even_in_the_perfect_case(per_rack: int, rack_count: int, rounds: int) -> None:
    """Kafka's promise: as many replicas as racks, equal racks: even over brokers."""
    racks = {b: f"r{b % rack_count}" for b in range(per_rack * rack_count)}
    n = len(racks)
    got = assign_replicas(
        [BrokerSlot(b, r) for b, r in racks.items()], rounds * n, rack_count, start_index=0
    )
    counts = Counter(b for r in got.values() for b in r)
    assert set(counts.values()) == {rounds * rack_count}


def test_validate_accepts_a_good_assignment() -> None:
    validate_assignment({0: [1, 2], 1: [2, 3]}, live_brokers={1, 2, 3})
    validate_assignment({3: [1], 4: [2]}, first_partition=3, replication_factor=1)


@pytest.mark.parametrize(
    ("assignment", "kwargs"),
    [
        ({}, {}),
        ({0: [1], 2: [2]}, {}),
        ({1: [1]}, {}),
        ({0: [1, 2], 1: [2]}, {}),
        ({0: [1, 1]}, {}),
        ({0: []}, {}),
        ({0: [1, 9]}, {"live_brokers": {1, 2}}),
        ({0: [1]}, {"replication_factor": 2}),
        ({0: [1]}, {"first_partition": 1}),
    ],
)
def test_validate_refuses(assignment: dict[int, list[int]], kwargs: dict[str, object]) -> None:
    with pytest.raises(PlacementError) as err:
        validate_assignment(assignment, **kwargs)  # type: ignore[arg-type]
    assert err.value.error_code == INVALID_REPLICA_ASSIGNMENT
