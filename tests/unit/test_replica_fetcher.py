"""The replica fetcher shell against a real broker: an in-process moldau
broker leads, a partition log of the test follows it through
``ReplicaFetcherManager`` over a real connection (no ZooKeeper needed: a
single node leads its partitions, and a fetch with a replica id is a
follower's fetch to it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from moldau import Broker
from moldau.broker.core import BrokerCore
from moldau.broker.replica_fetcher import LeaderEndpoint, ReplicaFetcherManager
from moldau.client.connection import connect
from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.records import Record, build_batch
from moldau.replication.fetch_state import FetchLimits
from moldau.replication.partition import Partition

TOPIC = "f"
FOLLOWER_ID = 9


def batch(*values: bytes) -> bytes:
    return build_batch([Record(i, 0, None, v) for i, v in enumerate(values)], base_timestamp=1)


def log_bytes(partition: Partition) -> bytes:
    read = partition.log.read(partition.log_start_offset, 1 << 30)
    return b"".join(s.read() for s in read.slices)


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@asynccontextmanager
async def leader_and_follower(
    tmp_path: Path,
) -> AsyncIterator[tuple[BrokerCore, Partition, Partition, LeaderEndpoint]]:
    """(leader core, the leader's partition, a follower partition, the endpoint)."""
    async with Broker(log_dir=str(tmp_path / "leader")) as broker:
        host, port = broker.bootstrap_servers.rsplit(":", 1)
        conn = await connect(host, int(port))
        try:
            body = {
                "topics": [
                    {
                        "name": TOPIC,
                        "num_partitions": 2,
                        "replication_factor": 1,
                        "assignments": [],
                        "configs": [],
                    }
                ],
                "timeout_ms": 5000,
                "validate_only": False,
            }
            await conn.request(ApiKey.CREATE_TOPICS, body)
        finally:
            conn.close()
        core = broker.server.core
        assert core is not None
        leader = core.replicas.get(TOPIC, 0)
        assert leader is not None
        follower = follower_partition(tmp_path, core, 0)
        try:
            yield core, leader, follower, LeaderEndpoint(core.broker_id, host, int(port))
        finally:
            follower.log.close()


def follower_partition(tmp_path: Path, core: BrokerCore, index: int) -> Partition:
    """A follower's replica, on its own log, of the leader's partition ``index``."""
    leader = core.replicas.get(TOPIC, index)
    assert leader is not None
    log = PartitionLog.open(
        str(tmp_path / "follower" / f"{TOPIC}-{index}"),
        TOPIC,
        index,
        leader.topic_id or uuid.UUID(int=0),
        LogConfig(),
        lambda: int(time.time() * 1000),
    )
    return Partition(
        TOPIC, index, leader.topic_id, log, FOLLOWER_ID, replicas=[core.broker_id, FOLLOWER_ID]
    )


def fetcher_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("replica-fetcher")]


def manager_for(*followers: Partition, max_wait_ms: int = 100) -> ReplicaFetcherManager:
    hosted = {(f.topic, f.index): f for f in followers}
    return ReplicaFetcherManager(
        FOLLOWER_ID, hosted.get, FetchLimits(max_wait_ms=max_wait_ms), backoff_ms=50
    )


def test_a_follower_copies_the_leader_and_learns_its_high_watermark(tmp_path: Path) -> None:
    async def body() -> None:
        async with leader_and_follower(tmp_path) as (_, leader, follower, endpoint):
            for i in range(3):
                leader.append_as_leader(batch(f"early-{i}".encode()))
            follower.become_follower(endpoint.broker_id, leader.leader_epoch)
            manager = manager_for(follower)
            try:
                manager.follow((TOPIC, 0), endpoint, leader.leader_epoch)
                assert manager.leader_of((TOPIC, 0)) == endpoint.broker_id
                await until(lambda: follower.log_end_offset == 3, "the first batches")
                # A batch appended now reaches the waiting fetch at once.
                leader.append_as_leader(batch(b"late"))
                await until(lambda: follower.log_end_offset == 4, "the late batch")
                assert log_bytes(follower) == log_bytes(leader)
                await until(lambda: follower.high_watermark == 4, "the high watermark")
                manager.unfollow((TOPIC, 0))
                assert manager.leader_of((TOPIC, 0)) is None
                await until(lambda: not fetcher_tasks(), "the idle fetcher to stop")
                leader.append_as_leader(batch(b"unfollowed"))
            finally:
                await manager.close()
            assert not fetcher_tasks()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_a_follower_truncates_what_the_leader_never_had(tmp_path: Path) -> None:
    """The follower led epoch 1 and wrote there; the leader, at epoch 2, has
    epoch 0 batches only: the follower drops its own and copies the leader."""

    async def body() -> None:
        async with leader_and_follower(tmp_path) as (core, leader, follower, endpoint):
            leader.append_as_leader(batch(b"zero-a", b"zero-b"))
            follower.become_leader(epoch=1, isr=[FOLLOWER_ID])
            follower.append_as_leader(batch(b"mine-1", b"mine-2", b"mine-3"))
            leader.become_leader(epoch=2, isr=[core.broker_id])
            leader.append_as_leader(batch(b"two"))
            follower.become_follower(endpoint.broker_id, 2)
            manager = manager_for(follower)
            try:
                manager.follow((TOPIC, 0), endpoint, 2)
                await until(lambda: log_bytes(follower) == log_bytes(leader), "identical logs")
                assert [e for e, _ in follower.log.leader_epochs.entries] == [0, 2]
            finally:
                await manager.close()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_a_fenced_follower_waits_for_a_newer_epoch(tmp_path: Path) -> None:
    async def body() -> None:
        async with leader_and_follower(tmp_path) as (core, leader, follower, endpoint):
            leader.become_leader(epoch=5, isr=[core.broker_id])
            leader.append_as_leader(batch(b"five"))
            follower.become_follower(endpoint.broker_id, 4)
            manager = manager_for(follower)
            try:
                manager.follow((TOPIC, 0), endpoint, 4)
                target = manager.target((TOPIC, 0))
                assert target is not None
                await until(lambda: target.held, "the fenced partition held")
                assert follower.log_end_offset == 0
                follower.become_follower(endpoint.broker_id, 5)
                manager.follow((TOPIC, 0), endpoint, 5)
                await until(lambda: follower.log_end_offset == 1, "fetching at epoch 5")
            finally:
                await manager.close()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_a_partition_added_while_the_leader_holds_a_fetch_is_fetched_at_once(
    tmp_path: Path,
) -> None:
    """The fetcher's fetch of an idle partition waits at the leader (for up to
    30 s here); a partition added meanwhile (a failover's LeaderAndIsr) is
    fetched without waiting for it to end."""

    async def body() -> None:
        async with leader_and_follower(tmp_path) as (core, leader, idle, endpoint):
            busy_leader = core.replicas.get(TOPIC, 1)
            assert busy_leader is not None
            busy_leader.append_as_leader(batch(b"waiting"))
            busy = follower_partition(tmp_path, core, 1)
            manager = manager_for(idle, busy, max_wait_ms=30_000)
            try:
                for follower in (idle, busy):
                    follower.become_follower(endpoint.broker_id, leader.leader_epoch)
                manager.follow((TOPIC, 0), endpoint, leader.leader_epoch)
                await until(lambda: (TOPIC, 0) in core.purgatory._waiters, "a parked fetch")
                manager.follow((TOPIC, 1), endpoint, leader.leader_epoch)
                await until(lambda: busy.log_end_offset == 1, "the added partition", timeout=5)
                assert log_bytes(busy) == log_bytes(busy_leader)
                leader.append_as_leader(batch(b"later"))  # the idle one is still followed
                await until(lambda: idle.log_end_offset == 1, "the idle partition", timeout=5)
            finally:
                await manager.close()
                busy.log.close()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_closing_waits_for_a_fetcher_still_stopping(tmp_path: Path) -> None:
    """A fetcher stopped just before the manager closes (a StopReplica in a
    controlled shutdown) ends while close waits for it, and takes itself out
    of the set being waited on: close must not fail on that."""

    async def body() -> None:
        async with leader_and_follower(tmp_path) as (_, leader, follower, endpoint):
            follower.become_follower(endpoint.broker_id, leader.leader_epoch)
            manager = manager_for(follower)
            manager.follow((TOPIC, 0), endpoint, leader.leader_epoch)
            await until(lambda: bool(fetcher_tasks()), "a running fetcher")
            manager.unfollow((TOPIC, 0))
            await manager.close()
            assert not fetcher_tasks()

    asyncio.run(asyncio.wait_for(body(), 60))
