"""Followers' incremental fetch sessions (KIP-227) in a real cluster: three
broker processes, real ZooKeeper, confluent-kafka.

Followers name only the partitions that moved, so the leader must still
record every session partition's fetch offset on every fetch: with many
idle partitions and ``replica.lag.time.max.ms`` at 1 s, an idle partition
the followers have not named for seconds stays in the ISR, and a write to
one wakes the parked fetches and is acknowledged. A lost session (evicted
from a one-slot cache on every full fetch, or a killed leader) falls back
to a full fetch and replication goes on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_replication import Cluster, records, started, wait_identical

from conftest import RawConnection, confluent_produce, confluent_read_all, wait_for
from moldau.protocol.errors import ErrorCode
from moldau.replication.fetch_state import (
    FOLLOWER_FETCH_VERSION,
    FetchLimits,
    FollowerSession,
    PartitionFetch,
    fetch_request,
)
from support.zookeeper import ZooKeeper

pytestmark = pytest.mark.cluster

IDLE = 40
#: No wait: each raw fetch answers at once.
LIMITS = FetchLimits(max_wait_ms=0, min_bytes=0)


def all_isrs_full(cluster: Cluster, topic: str, count: int) -> bool:
    meta = cluster.admin().list_topics(topic, timeout=5).topics[topic].partitions
    return len(meta) == count and all(len(p.isrs) == 3 for p in meta.values())


def test_idle_partitions_stay_in_the_isr_and_writes_to_them_are_acknowledged(
    zookeeper: ZooKeeper, tmp_path: Path
) -> None:
    """acks=all with min.insync.replicas 3 is answered only once the high
    watermark passes the write: every acknowledgement below is the high
    watermark moving. No consumer group: creating ``__consumer_offsets``
    midway would stall this loaded machine's brokers past the lag time."""
    with started(zookeeper, tmp_path, **{"replica.lag.time.max.ms": "1500"}) as cluster:
        cluster.create_topic("idle", IDLE, 3, **{"min.insync.replicas": "3"})
        cluster.create_topic("busy", 1, 3, **{"min.insync.replicas": "3"})
        wait_for(lambda: all_isrs_full(cluster, "idle", IDLE), 30, what="full ISRs")
        wait_for(lambda: all_isrs_full(cluster, "busy", 1), 30, what="full ISR")
        # Several lag times pass while only "busy" moves: the idle
        # partitions are named in no follower fetch, yet stay in sync.
        deadline = time.monotonic() + 4.5
        sent = 0
        while time.monotonic() < deadline:
            acked = confluent_produce(cluster.bootstrap, "busy", records(f"b{sent}", 50))
            assert [r.offset for r in acked] == list(range(sent, sent + 50))
            sent += 50
        assert all_isrs_full(cluster, "idle", IDLE), "an idle partition left the ISR"
        # Writes to partitions no follower has named since its session began.
        late = records("late", 3 * IDLE)
        acked = confluent_produce(
            cluster.bootstrap, "idle", late, **{"sticky.partitioning.linger.ms": 0}
        )
        written = {r.partition for r in acked}
        assert len(written) > 1
        for index in written:
            wait_identical(cluster, "idle", index, [1, 2, 3])
        assert all_isrs_full(cluster, "idle", IDLE)


def test_sessions_evicted_on_every_full_fetch_fall_back_to_full_fetches(
    zookeeper: ZooKeeper, tmp_path: Path
) -> None:
    """One session slot per leader and two followers each: every full
    fetch evicts the other follower's session, whose next fetch is told
    FETCH_SESSION_ID_NOT_FOUND and starts over; nothing is lost."""
    overrides = {"max.incremental.fetch.session.cache.slots": "1"}
    with started(zookeeper, tmp_path, **overrides) as cluster:
        cluster.create_topic("e", 3, 3, **{"min.insync.replicas": "3"})
        wait_for(lambda: all_isrs_full(cluster, "e", 3), 30, what="full ISRs")
        for round_ in range(5):
            confluent_produce(cluster.bootstrap, "e", records(f"r{round_}", 200))
        for index in range(3):
            wait_identical(cluster, "e", index, [1, 2, 3])
        assert len(confluent_read_all(cluster.bootstrap, "e")) == 1000
        logs = "".join(b.log_path.read_text(errors="replace") for b in cluster.brokers.values())
        assert "FETCH_SESSION_ID_NOT_FOUND; fetching in full" in logs


def test_a_killed_leaders_followers_start_over_and_the_restarted_broker_catches_up(
    zookeeper: ZooKeeper, tmp_path: Path
) -> None:
    with started(zookeeper, tmp_path) as cluster:
        cluster.create_topic("k", 3, 3, **{"min.insync.replicas": "2"})
        wait_for(lambda: all_isrs_full(cluster, "k", 3), 30, what="full ISRs")
        confluent_produce(cluster.bootstrap, "k", records("a", 300))
        victim = cluster.partition("k", 0).leader
        cluster.brokers[victim].kill()
        wait_for(lambda: cluster.partition("k", 0).leader not in (-1, victim), 15, what="failover")
        confluent_produce(cluster.live_bootstrap(), "k", records("b", 300))
        cluster.brokers[victim].start()
        wait_for(lambda: all_isrs_full(cluster, "k", 3), 30, what="the ISRs whole again")
        for index in range(3):
            wait_identical(cluster, "k", index, [1, 2, 3])
        confluent_produce(cluster.bootstrap, "k", records("c", 300))
        assert len(confluent_read_all(cluster.bootstrap, "k")) == 900


def produce_to(bootstrap: str, topic: str, partition: int) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce(topic, value=b"x", partition=partition)
    assert producer.flush(15) == 0


def fetch(conn: RawConnection, session: FollowerSession, wanted: dict[Any, PartitionFetch]) -> Any:
    sent = session.request(wanted)
    response = conn.request(1, FOLLOWER_FETCH_VERSION, fetch_request(77, sent, LIMITS))
    if response["error_code"] == 0:
        session.answered(sent, response["session_id"])
    return response


def answered(response: Any) -> dict[int, int]:
    """partition -> bytes of records, of the partitions in ``response``."""
    return {
        p["partition_index"]: len(p["records"] or b"")
        for t in response["responses"]
        for p in t["partitions"]
    }


def test_the_wire_a_follower_session_with_a_leader(zookeeper: ZooKeeper, tmp_path: Path) -> None:
    """As replica 77 (no replica of the topic, so nothing it fetches counts)."""
    with started(zookeeper, tmp_path) as cluster:
        wire_session(cluster)


def wire_session(cluster: Cluster) -> None:
    cluster.create_topic("w", 4, 3)
    wait_for(lambda: all_isrs_full(cluster, "w", 4), 30, what="full ISRs")
    leader = cluster.partition("w", 0).leader
    on_leader = [i for i in range(4) if cluster.partition("w", i).leader == leader]
    port = cluster.brokers[leader].port
    session = FollowerSession()
    wanted = {("w", i): PartitionFetch("w", i, -1, 0, -1, 0) for i in on_leader}
    with RawConnection(port) as conn:
        full = fetch(conn, session, wanted)
        assert full["session_id"] != 0 and set(answered(full)) == set(on_leader)
        assert answered(fetch(conn, session, wanted)) == {}  # nothing new: nothing answered
        produce_to(cluster.bootstrap, "w", on_leader[0])
        got = answered(fetch(conn, session, wanted))
        assert list(got) == [on_leader[0]] and got[on_leader[0]] > 0
        stale = {**fetch_request(77, session.request(wanted), LIMITS), "session_epoch": 99}
        response = conn.request(1, FOLLOWER_FETCH_VERSION, stale)
        assert response["error_code"] == ErrorCode.INVALID_FETCH_SESSION_EPOCH
        consumer = {**fetch_request(77, session.request(wanted), LIMITS), "replica_id": -1}
        response = conn.request(1, FOLLOWER_FETCH_VERSION, consumer)
        assert response["error_code"] == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
        session.reset()
        consumer = {**fetch_request(77, session.request(wanted), LIMITS), "replica_id": -1}
        response = conn.request(1, FOLLOWER_FETCH_VERSION, consumer)
        assert response["session_id"] == 0 and set(answered(response)) == set(on_leader)
