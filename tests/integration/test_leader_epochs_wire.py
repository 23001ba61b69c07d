"""Leader epochs on the wire: KIP-320 checks, KIP-951 leaders, OffsetForLeaderEpoch.

Raw requests through moldau's own ``BrokerConnection`` against the
in-process broker, served from the test's event loop so that a test can move
a partition's leader epoch the way the controller's LeaderAndIsr will
(``Partition.become_leader`` / ``become_follower``); then confluent-kafka,
whose consumers validate their positions with OffsetForLeaderEpoch.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from moldau import Broker
from moldau.broker.core import BrokerCore
from moldau.client.connection import BrokerConnection, connect
from moldau.log.checkpoint import LEADER_EPOCH_CHECKPOINT
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode
from moldau.protocol.records import Record, build_batch, decode_batch
from moldau.replication.partition import Partition

TOPIC = "epochs"
FENCED = ErrorCode.FENCED_LEADER_EPOCH
UNKNOWN = ErrorCode.UNKNOWN_LEADER_EPOCH


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


@asynccontextmanager
async def serving(log_dir: Path) -> AsyncIterator[tuple[BrokerCore, BrokerConnection]]:
    async with Broker(log_dir=str(log_dir)) as broker:
        host, port = broker.bootstrap_servers.rsplit(":", 1)
        conn = await connect(host, int(port))
        try:
            core = broker.server.core
            assert core is not None
            yield core, conn
        finally:
            conn.close()


async def create(conn: BrokerConnection, partitions: int = 1) -> None:
    body = {
        "topics": [
            {
                "name": TOPIC,
                "num_partitions": partitions,
                "replication_factor": 1,
                "assignments": [],
                "configs": [],
            }
        ],
        "timeout_ms": 5000,
        "validate_only": False,
    }
    answer = await conn.request(ApiKey.CREATE_TOPICS, body)
    assert answer["topics"][0]["error_code"] == 0


async def produce(conn: BrokerConnection, count: int, version: int = 12) -> dict[str, Any]:
    records = build_batch([Record(i, 0, None, b"v%d" % i) for i in range(count)], base_timestamp=1)
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 5000,
        "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": records}]}],
    }
    return await conn.request(ApiKey.PRODUCE, body, version=version)


async def fetch(
    conn: BrokerConnection,
    core: BrokerCore,
    epoch: int,
    version: int = 12,
    offset: int = 0,
    last_fetched_epoch: int = -1,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(response, its one partition) of a Fetch from ``offset``."""
    info = core.metadata.topic(TOPIC)
    assert info is not None
    partition = {
        "partition": 0,
        "current_leader_epoch": epoch,
        "fetch_offset": offset,
        "last_fetched_epoch": last_fetched_epoch,
        "log_start_offset": -1,
        "partition_max_bytes": 1 << 20,
    }
    body = {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [{"topic": TOPIC, "topic_id": info.topic_id, "partitions": [partition]}],
        "forgotten_topics_data": [],
        "rack_id": "",
    }
    response = await conn.request(ApiKey.FETCH, body, version=version)
    return response, response["responses"][0]["partitions"][0]


async def list_offset(
    conn: BrokerConnection, epoch: int, timestamp: int, version: int = 7
) -> dict[str, Any]:
    wanted = {"partition_index": 0, "current_leader_epoch": epoch, "timestamp": timestamp}
    body = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [{"name": TOPIC, "partitions": [wanted]}],
    }
    answer = await conn.request(ApiKey.LIST_OFFSETS, body, version=version)
    return dict(answer["topics"][0]["partitions"][0])


async def end_offsets(
    conn: BrokerConnection,
    epochs: list[int],
    current: int = -1,
    version: int = 4,
    topic: str = TOPIC,
    partition: int = 0,
) -> list[tuple[int, int, int]]:
    """(error, epoch, end offset) per epoch asked, from one OffsetForLeaderEpoch."""
    wanted = [
        {"partition": partition, "current_leader_epoch": current, "leader_epoch": e} for e in epochs
    ]
    body = {"replica_id": -1, "topics": [{"topic": topic, "partitions": wanted}]}
    answer = await conn.request(ApiKey.OFFSET_FOR_LEADER_EPOCH, body, version=version)
    return [
        (p["error_code"], p.get("leader_epoch", -1), p["end_offset"])
        for p in answer["topics"][0]["partitions"]
    ]


def hosted(core: BrokerCore) -> Partition:
    partition = core.replicas.get(TOPIC, 0)
    assert partition is not None
    return partition


def values(records: bytes) -> list[bytes]:
    out: list[bytes] = []
    while records:
        header, decoded = decode_batch(records)
        out += [r.value for r in decoded if r.value is not None]
        records = records[header.size :]
    return out


def test_fetch_and_list_offsets_check_the_current_leader_epoch(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (core, conn):
            await create(conn)
            await produce(conn, 3)
            hosted(core).become_leader(epoch=3, isr=[core.broker_id])

            for version in (12, 16):
                response, answer = await fetch(conn, core, 2, version)
                assert answer["error_code"] == FENCED
                leader = {"leader_id": core.broker_id, "leader_epoch": 3}
                assert answer["current_leader"] == leader
                _, answer = await fetch(conn, core, 4, version)
                assert answer["error_code"] == UNKNOWN
                _, answer = await fetch(conn, core, 3, version)
                assert answer["error_code"] == 0
                assert values(bytes(answer["records"])) == [b"v0", b"v1", b"v2"]
            # v16 names the leader's endpoint too.
            response, _ = await fetch(conn, core, 2, 16)
            [endpoint] = response["node_endpoints"]
            assert (endpoint["node_id"], endpoint["port"]) == (core.broker_id, conn.port)
            # -1 and versions before 9 ask for no check.
            for epoch, version in ((-1, 12), (7, 8)):
                _, answer = await fetch(conn, core, epoch, version)
                assert answer["error_code"] == 0

            assert (await list_offset(conn, 2, -1))["error_code"] == FENCED
            assert (await list_offset(conn, 4, -1))["error_code"] == UNKNOWN
            latest = await list_offset(conn, 3, -1)
            assert (latest["error_code"], latest["offset"], latest["leader_epoch"]) == (0, 3, 3)
            # The earliest offset comes with the epoch that wrote it.
            earliest = await list_offset(conn, -1, -2)
            assert (earliest["offset"], earliest["leader_epoch"]) == (0, 0)
            assert (await list_offset(conn, 2, -1, version=3))["error_code"] == 0

    run(body)


def test_offset_for_leader_epoch_answers_from_the_epoch_cache(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (core, conn):
            await create(conn)
            await produce(conn, 3)
            hosted(core).become_leader(epoch=3, isr=[core.broker_id])
            await produce(conn, 2)

            got = await end_offsets(conn, [0, 1, 2, 3, 4, -1])
            assert got == [(0, 0, 3), (0, 0, 3), (0, 0, 3), (0, 3, 5), (0, -1, -1), (0, -1, -1)]
            assert await end_offsets(conn, [0], current=2) == [(FENCED, -1, -1)]
            assert await end_offsets(conn, [0], current=4) == [(UNKNOWN, -1, -1)]
            assert await end_offsets(conn, [3], current=3) == [(0, 3, 5)]
            for version in (0, 1, 2, 3):
                [(error, _, end)] = await end_offsets(conn, [0], version=version)
                assert (error, end) == (0, 3)
            unknown = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            assert await end_offsets(conn, [0], topic="nope") == [(unknown, -1, -1)]
            assert await end_offsets(conn, [0], partition=5) == [(unknown, -1, -1)]

    run(body)


def test_a_fetcher_whose_log_diverged_learns_where(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (core, conn):
            await create(conn)
            await produce(conn, 3)
            hosted(core).become_leader(epoch=3, isr=[core.broker_id])
            await produce(conn, 2)
            # A fetcher that wrote offsets 3 and 4 in epoch 0 (a deposed leader's).
            _, answer = await fetch(conn, core, 3, offset=5, last_fetched_epoch=0)
            assert answer["error_code"] == 0
            assert answer["diverging_epoch"] == {"epoch": 0, "end_offset": 3}
            assert answer["records"] in (None, b"")
            _, answer = await fetch(conn, core, 3, offset=3, last_fetched_epoch=0)
            assert answer["error_code"] == 0
            assert answer.get("diverging_epoch", {}).get("epoch", -1) == -1
            assert values(bytes(answer["records"])) == [b"v0", b"v1"]
            _, answer = await fetch(conn, core, 3, offset=5, last_fetched_epoch=4)
            assert answer["error_code"] == ErrorCode.OFFSET_OUT_OF_RANGE

    run(body)


def test_a_partition_led_elsewhere_names_its_leader(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (core, conn):
            await create(conn)
            await produce(conn, 1)
            hosted(core).become_follower(leader_id=99, epoch=4)
            not_leader = ErrorCode.NOT_LEADER_OR_FOLLOWER
            elsewhere = {"leader_id": 99, "leader_epoch": 4}

            answer = await produce(conn, 1, version=10)
            [partition] = answer["responses"][0]["partition_responses"]
            assert partition["error_code"] == not_leader
            assert partition["current_leader"] == elsewhere
            assert answer["node_endpoints"] == []  # broker 99 is not known here

            response, partition = await fetch(conn, core, -1, 16)
            assert partition["error_code"] == not_leader
            assert partition["current_leader"] == elsewhere
            assert response["node_endpoints"] == []
            # The epoch is checked before the leadership, as in Kafka.
            _, partition = await fetch(conn, core, 3, 16)
            assert partition["error_code"] == FENCED
            assert await end_offsets(conn, [0]) == [(not_leader, -1, -1)]
            assert await end_offsets(conn, [0], current=5) == [(UNKNOWN, -1, -1)]
            assert (await list_offset(conn, 4, -1))["error_code"] == not_leader

    run(body)


def test_the_epoch_checkpoint_survives_restarts_and_is_rebuilt(tmp_path: Path) -> None:
    checkpoint = tmp_path / f"{TOPIC}-0" / LEADER_EPOCH_CHECKPOINT

    async def first() -> None:
        async with serving(tmp_path) as (core, conn):
            await create(conn)
            await produce(conn, 3)
            hosted(core).become_leader(epoch=3, isr=[core.broker_id])
            await produce(conn, 2)

    async def again() -> None:
        async with serving(tmp_path) as (_, conn):
            assert await end_offsets(conn, [0, 2, 3]) == [(0, 0, 3), (0, 0, 3), (0, 3, 5)]

    run(first)
    assert checkpoint.read_text() == "0\n2\n0 0\n3 3\n"
    run(again)
    os.remove(checkpoint)
    run(again)
    assert checkpoint.read_text() == "0\n2\n0 0\n3 3\n"
    checkpoint.write_text("0\n9\nnot a checkpoint\n")
    run(again)
    assert checkpoint.read_text() == "0\n2\n0 0\n3 3\n"


def test_confluent_consumers_validate_positions_with_the_broker(tmp_path: Path) -> None:
    """librdkafka checks a position that carries a leader epoch with
    OffsetForLeaderEpoch (KIP-320) before fetching from it: a position the
    log confirms is kept; one past the end of its epoch (a truncated log)
    moves back to where that epoch ended."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    def produce_values(bootstrap: str, values: range) -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in values:
            producer.produce(TOPIC, value=b"%d" % i, partition=0)
        assert producer.flush(15) == 0

    def consume(bootstrap: str, offset: int, epoch: int, count: int) -> tuple[list[int], str]:
        """(offsets read, debug lines) from a consumer assigned at offset/epoch."""
        lines: list[str] = []
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "validators",
                "enable.auto.commit": False,
                "debug": "protocol,fetch",
            },
            logger=_Collect(lines),
        )
        got: list[int] = []
        try:
            consumer.assign([TopicPartition(TOPIC, 0, offset, leader_epoch=epoch)])
            deadline = time.monotonic() + 30
            while len(got) < count:
                assert time.monotonic() < deadline, f"consumed {got}"
                for message in consumer.consume(100, timeout=0.2):
                    assert message.error() is None, message.error()
                    got.append(message.offset())
        finally:
            consumer.close()
        return got, "\n".join(lines)

    async def body() -> None:
        async with Broker(log_dir=str(tmp_path)) as broker:
            bootstrap = broker.bootstrap_servers
            core = broker.server.core
            assert core is not None
            await asyncio.to_thread(produce_values, bootstrap, range(5))
            hosted(core).become_leader(epoch=3, isr=[core.broker_id])
            await asyncio.to_thread(produce_values, bootstrap, range(5, 10))

            got, debug = await asyncio.to_thread(consume, bootstrap, 7, 3, 3)
            assert got == [7, 8, 9]
            assert "Sent OffsetForLeaderEpochRequest" in debug
            assert "validation succeeded: broker end offset 10" in debug
            # Epoch 0 ended at offset 5: a position at 7 "written in epoch 0"
            # is not in this log, and the consumer goes back to 5.
            got, debug = await asyncio.to_thread(consume, bootstrap, 7, 0, 5)
            assert got == [5, 6, 7, 8, 9]
            assert "Sent OffsetForLeaderEpochRequest" in debug

    run(body)


class _Collect:
    """A logging.Logger stand-in for librdkafka's debug lines."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def log(self, level: int, fmt: str, *args: Any) -> None:
        self.lines.append(fmt % args if args else fmt)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
