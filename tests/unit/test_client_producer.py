"""The producer against a scripted cluster: batching, ordering, retries, acks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from test_client_support import in_loop

from moldau.client.errors import topic_error
from moldau.client.metadata import BrokerInfo, ClusterMetadata, PartitionInfo, TopicInfo
from moldau.client.partitioner import murmur2, to_positive
from moldau.client.producer import Producer, parse_acks
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.records import decode_batch


async def until(condition: Callable[[], Any], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.001)


class FakeConn:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, Any], asyncio.Future[dict[str, Any]], bool]] = []

    def send(
        self,
        api_key: int,
        body: dict[str, Any],
        *,
        timeout_ms: int | None = None,
        expect_response: bool = True,
    ) -> asyncio.Future[dict[str, Any]]:
        assert api_key == ApiKey.PRODUCE
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if not expect_response:
            future.set_result({})
        self.requests.append((body, future, expect_response))
        return future

    def batches(self, index: int) -> dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]]:
        """(topic, partition) -> records of request ``index``."""
        body = self.requests[index][0]
        out = {}
        for topic in body["topic_data"]:
            for part in topic["partition_data"]:
                _, records = decode_batch(part["records"])
                out[(topic["name"], part["index"])] = [(r.key, r.value) for r in records]
        return out

    def answer(self, index: int, errors: dict[int, int] | None = None, base: int = 0) -> None:
        body, future, _ = self.requests[index]
        errors = errors or {}
        future.set_result(
            {
                "responses": [
                    {
                        "name": t["name"],
                        "partition_responses": [
                            {
                                "index": p["index"],
                                "error_code": errors.get(p["index"], 0),
                                "base_offset": base,
                                "log_append_time_ms": -1,
                                "record_errors": [],
                                "error_message": None,
                            }
                            for p in t["partition_data"]
                        ],
                    }
                    for t in body["topic_data"]
                ]
            }
        )


class FakeCluster:
    def __init__(self, partitions: int = 3) -> None:
        self.conn = FakeConn()
        parts = {i: PartitionInfo("t", i, 1, 0, (1,), (1,), ()) for i in range(partitions)}
        self.metadata = ClusterMetadata(
            {1: BrokerInfo(1, "h", 1)}, {"t": TopicInfo("t", ErrorCode.NONE, parts)}, "c", 1
        )
        self.refreshes = 0

    async def refresh(self, topics: Any = None, *, allow_auto_create: bool = False) -> Any:
        self.refreshes += 1
        return self.metadata

    async def topic(self, name: str, **kwargs: Any) -> TopicInfo:
        if name not in self.metadata.topics:
            raise topic_error(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        return self.metadata.topics[name]

    async def node(self, node_id: int) -> FakeConn:
        return self.conn


async def started(cluster: FakeCluster, **options: Any) -> Producer:
    producer = Producer(cluster=cluster, **options)  # type: ignore[arg-type]
    await producer.start()
    return producer


@in_loop
async def test_records_of_a_partition_go_in_one_batch_and_get_offsets() -> None:
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=60_000)
    futures = [await producer.send("t", b"v%d" % i, partition=1) for i in range(3)]
    flushed = asyncio.ensure_future(producer.flush())
    await until(lambda: cluster.conn.requests)
    assert cluster.conn.batches(0) == {("t", 1): [(None, b"v0"), (None, b"v1"), (None, b"v2")]}
    assert cluster.conn.requests[0][0]["acks"] == -1
    cluster.conn.answer(0, base=10)
    await flushed
    assert [f.result().offset for f in futures] == [10, 11, 12]
    assert {f.result().partition for f in futures} == {1}
    await producer.close()


@in_loop
async def test_linger_sends_without_flush() -> None:
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=1)
    future = await producer.send("t", b"x", partition=0)
    await until(lambda: cluster.conn.requests)
    cluster.conn.answer(0, base=4)
    assert (await future).offset == 4
    await producer.close()


@in_loop
async def test_one_batch_in_flight_per_partition_keeps_order() -> None:
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=0, batch_size=100)
    values = [b"%03d" % i + b"." * 40 for i in range(6)]  # one record fills a batch
    futures = [await producer.send("t", v, partition=0) for v in values]
    for i, value in enumerate(values):
        # The next batch is sent only once the one before is answered.
        await until(lambda i=i: len(cluster.conn.requests) == i + 1)
        assert cluster.conn.batches(i) == {("t", 0): [(None, value)]}
        cluster.conn.answer(i, base=i)
    await asyncio.wait(futures)
    assert [f.result().offset for f in futures] == list(range(6))
    await producer.close()


@in_loop
async def test_retriable_error_resends_the_same_batch_after_refresh() -> None:
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=0, retry_backoff_ms=1)
    future = await producer.send("t", b"x", partition=2)
    await until(lambda: cluster.conn.requests)
    refreshes = cluster.refreshes
    cluster.conn.answer(0, errors={2: ErrorCode.NOT_LEADER_OR_FOLLOWER})
    await until(lambda: len(cluster.conn.requests) == 2)
    assert cluster.refreshes > refreshes
    first = cluster.conn.requests[0][0]["topic_data"][0]["partition_data"][0]["records"]
    again = cluster.conn.requests[1][0]["topic_data"][0]["partition_data"][0]["records"]
    assert first == again
    cluster.conn.answer(1, base=7)
    assert (await future).offset == 7
    await producer.close()


@in_loop
async def test_lost_connection_is_retried() -> None:
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=0, retry_backoff_ms=1)
    future = await producer.send("t", b"x", partition=0)
    await until(lambda: cluster.conn.requests)
    cluster.conn.requests[0][1].set_exception(KafkaError(ErrorCode.NETWORK_EXCEPTION, "gone"))
    await until(lambda: len(cluster.conn.requests) == 2)
    cluster.conn.answer(1, base=1)
    assert (await future).offset == 1
    await producer.close()


@in_loop
async def test_fatal_error_fails_the_records_with_context() -> None:
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=0)
    future = await producer.send("t", b"x", partition=0)
    await until(lambda: cluster.conn.requests)
    cluster.conn.answer(0, errors={0: ErrorCode.INVALID_RECORD})
    with pytest.raises(KafkaError, match="produce to t-0") as info:
        await future
    assert info.value.code == ErrorCode.INVALID_RECORD
    await producer.close()


@in_loop
async def test_retries_stop_at_the_delivery_timeout() -> None:
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=0, retry_backoff_ms=1, delivery_timeout_ms=50)
    future = await producer.send("t", b"x", partition=0)
    answered = 0
    while not future.done():
        await until(lambda n=answered: len(cluster.conn.requests) > n or future.done())
        if len(cluster.conn.requests) > answered:
            cluster.conn.answer(answered, errors={0: ErrorCode.NOT_ENOUGH_REPLICAS})
            answered += 1
    with pytest.raises(KafkaError) as info:
        await future
    assert info.value.code == ErrorCode.NOT_ENOUGH_REPLICAS
    assert answered >= 2
    await producer.close()


@in_loop
async def test_acks_zero_expects_no_answer() -> None:
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=0, acks=0)
    meta = await producer.send_and_wait("t", b"x", partition=0)
    assert meta.offset == -1 and meta.partition == 0
    body, _, expect = cluster.conn.requests[0]
    assert body["acks"] == 0 and not expect
    await producer.close()


@in_loop
async def test_keys_go_where_the_java_client_puts_them() -> None:
    cluster = FakeCluster(partitions=3)
    producer = await started(cluster, linger_ms=0, acks=0)
    for key in (b"foobar", b"21", b"abc"):
        meta = await producer.send_and_wait("t", b"v", key=key)
        assert meta.partition == to_positive(murmur2(key)) % 3
    await producer.close()


@in_loop
async def test_bad_sends_fail_before_queueing() -> None:
    cluster = FakeCluster(partitions=2)
    producer = await started(cluster, max_request_size=1000)
    with pytest.raises(KafkaError, match="partition 5 of topic 't' does not exist"):
        await producer.send("t", b"x", partition=5)
    with pytest.raises(KafkaError) as info:
        await producer.send("t", b"x" * 2000)
    assert info.value.code == ErrorCode.MESSAGE_TOO_LARGE
    with pytest.raises(KafkaError, match="topic 'nope' does not exist"):
        await producer.send("nope", b"x")
    await producer.close()
    assert not cluster.conn.requests


@in_loop
async def test_headers_and_timestamps_reach_the_batch() -> None:
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=0, acks=0, compression="zstd")
    await producer.send_and_wait(
        "t", b"v", b"k", partition=0, timestamp_ms=1234, headers=[("h", b"1"), ("n", None)]
    )
    header, records = decode_batch(
        cluster.conn.requests[0][0]["topic_data"][0]["partition_data"][0]["records"]
    )
    assert header.compression == 4 and header.base_timestamp == 1234
    assert records[0].headers == [("h", b"1"), ("n", None)]
    await producer.close()


def test_parse_acks() -> None:
    assert parse_acks("all") == -1
    assert parse_acks("1") == 1
    assert parse_acks(0) == 0
    with pytest.raises(ValueError):
        parse_acks(2)
    with pytest.raises(ValueError, match="compression"):
        Producer(compression="brotli")


@in_loop
async def test_a_deadline_already_due_arms_the_timer_on_every_loop() -> None:
    """linger 0 puts each new batch's deadline in the past by the time the
    timer is armed: uvloop then answers ``call_at`` with a plain Handle. A
    second partition's batch re-arms the timer before the sender runs."""
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=0)
    first = await producer.send("t", b"a", partition=0)
    second = await producer.send("t", b"b", partition=1)
    await until(lambda: cluster.conn.requests)
    cluster.conn.answer(0, base=7)
    await producer.flush()
    sent = {
        tp: records
        for i in range(len(cluster.conn.requests))
        for tp, records in cluster.conn.batches(i).items()
    }
    assert sent == {("t", 0): [(None, b"a")], ("t", 1): [(None, b"b")]}
    assert (await first).partition == 0 and (await second).partition == 1
    await producer.close()


@in_loop
async def test_a_send_that_fails_after_choosing_a_batch_leaves_no_empty_batch() -> None:
    """If arming the linger timer raises, the caller sees the error, and the
    next flush still encodes only batches that hold records."""
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=60_000)

    def broken(when: float) -> None:
        raise RuntimeError("timer")

    producer._arm_timer = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await producer.send("t", b"lost", partition=0)
    del producer._arm_timer
    kept = await producer.send("t", b"kept", partition=1)
    flushed = asyncio.ensure_future(producer.flush())
    await until(lambda: cluster.conn.requests)
    cluster.conn.answer(0, base=3)
    await flushed
    assert (await kept).offset == 3
    await producer.close()


@in_loop
async def test_records_sent_after_the_sender_died_fail_instead_of_waiting_forever() -> None:
    """A bug that kills the sender task (as uvloop's timer handle once did)
    must surface as errors: a flush waiting for batches nobody sends hung
    ``moldau produce``."""
    cluster = FakeCluster()
    producer = await started(cluster, linger_ms=0)

    async def broken(node_id: int, batches: list[Any]) -> None:
        raise RuntimeError("bug")

    producer._send_to = broken  # type: ignore[method-assign]
    first = await producer.send("t", b"a", partition=0)
    with pytest.raises(KafkaError, match="sender failed"):
        await asyncio.wait_for(first, 2)
    with pytest.raises(KafkaError, match="sender failed"):
        await producer.send("t", b"b", partition=0)
    await asyncio.wait_for(producer.flush(), 2)
    with pytest.raises(RuntimeError, match="bug"):
        await producer.close()
