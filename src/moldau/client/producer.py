"""The producer: records in, batches per partition out.

``send`` puts a record into the open batch of its partition and returns a
future for its (partition, offset). One background sender task closes
batches when they are full (``batch_size``) or old enough (``linger_ms``),
groups the closed ones by leader and sends one Produce request per broker.

Order within a partition survives retries because at most one batch per
partition is in flight: a batch that fails with a retriable error goes back
to the head of its partition's queue and nothing overtakes it. Retries go on
until ``delivery_timeout_ms`` after the record was sent, as in the Java client.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from moldau.protocol.api_keys import ApiKey
from moldau.protocol.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    HEADER_SIZE,
)
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.records import Record, build_batch

from .cluster import METADATA_ERRORS, Cluster
from .errors import make_error
from .lifecycle import ClusterClient
from .partitioner import Partitioner, make_partitioner
from .types import RecordMetadata, TopicPartition

__all__ = ["COMPRESSION_CODECS", "Producer", "parse_acks"]

Header = tuple[str, bytes | None]

COMPRESSION_CODECS = {
    "none": COMPRESSION_NONE,
    "gzip": COMPRESSION_GZIP,
    "snappy": COMPRESSION_SNAPPY,
    "lz4": COMPRESSION_LZ4,
    "zstd": COMPRESSION_ZSTD,
}

#: Bytes a record adds besides its key, value and headers (length, attributes
#: and the varints of a typical record): enough to keep batches near the size.
_RECORD_OVERHEAD = 20


def parse_acks(acks: int | str) -> int:
    """``0``, ``1``, ``-1`` or ``"all"`` (= -1), as Kafka's ``acks`` setting."""
    value = -1 if acks == "all" else int(acks)
    if value not in (0, 1, -1):
        raise ValueError(f"acks must be 0, 1, -1 or all, not {acks!r}")
    return value


@dataclass(eq=False)
class _Batch:
    """Records of one partition sent together, and their waiting futures."""

    tp: TopicPartition
    created: float
    #: Resolved when the batch is acknowledged or failed (what flush waits on).
    done: asyncio.Future[None]
    records: list[Record] = field(default_factory=list)
    futures: list[asyncio.Future[RecordMetadata]] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    size: int = HEADER_SIZE
    attempts: int = 0
    retry_at: float = 0.0
    wire: bytes | None = None
    last_error: KafkaError | None = None

    def add(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: list[Header],
        timestamp: int,
        size: int,
        future: asyncio.Future[RecordMetadata],
    ) -> None:
        base = self.timestamps[0] if self.timestamps else timestamp
        self.records.append(Record(len(self.records), timestamp - base, key, value, headers))
        self.timestamps.append(timestamp)
        self.futures.append(future)
        self.size += size

    def encode(self, compression: int) -> bytes:
        """The wire batch, built once and kept for retries."""
        if self.wire is None:
            self.wire = build_batch(
                self.records, base_timestamp=self.timestamps[0], compression=compression
            )
        return self.wire

    def complete(self, base_offset: int, log_append_time: int) -> None:
        topic, partition = self.tp
        for i, future in enumerate(self.futures):
            if future.done():
                continue
            offset = base_offset + i if base_offset >= 0 else -1
            ts = log_append_time if log_append_time >= 0 else self.timestamps[i]
            future.set_result(RecordMetadata(topic, partition, offset, ts))
        self._finish()

    def fail(self, error: KafkaError) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(error)
        self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class Producer(ClusterClient):
    """An asyncio Kafka producer.

    >>> async with Producer("127.0.0.1:9092") as producer:
    ...     meta = await producer.send_and_wait("events", b"hello", key=b"k")

    ``cluster`` lets several clients share connections and metadata; the
    producer then leaves it open on ``close``.
    """

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:9092",
        *,
        cluster: Cluster | None = None,
        client_id: str = "moldau-producer",
        acks: int | str = -1,
        linger_ms: float = 5,
        batch_size: int = 16_384,
        max_request_size: int = 1_048_576,
        compression: str = "none",
        partitioner: str | Partitioner | Callable[[bytes | None, int], int] = "murmur2",
        request_timeout_ms: int = 30_000,
        delivery_timeout_ms: int = 120_000,
        max_block_ms: int = 60_000,
        retry_backoff_ms: int = 100,
        buffer_memory: int = 32 * 1024 * 1024,
        metadata_max_age_ms: int = 300_000,
        allow_auto_create_topics: bool = True,
    ) -> None:
        if compression not in COMPRESSION_CODECS:
            raise ValueError(
                f"unknown compression {compression!r} (choose from {', '.join(COMPRESSION_CODECS)})"
            )
        super().__init__(
            bootstrap_servers,
            cluster,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
        )
        self.acks = parse_acks(acks)
        self.linger = linger_ms / 1000
        self.batch_size = batch_size
        self.max_request_size = max_request_size
        self.compression = COMPRESSION_CODECS[compression]
        self.partitioner = make_partitioner(partitioner)
        self.request_timeout_ms = request_timeout_ms
        self.delivery_timeout = delivery_timeout_ms / 1000
        self.max_block_ms = max_block_ms
        self.retry_backoff = retry_backoff_ms / 1000
        self.buffer_memory = buffer_memory
        self.metadata_max_age = metadata_max_age_ms / 1000
        self.allow_auto_create_topics = allow_auto_create_topics

        self._open: dict[TopicPartition, _Batch] = {}
        self._queues: dict[TopicPartition, deque[_Batch]] = {}
        self._in_flight: dict[TopicPartition, _Batch] = {}
        #: topic -> (partition count, time to look again)
        self._partition_counts: dict[str, tuple[int, float]] = {}
        self._stale: set[str] = set()
        self._buffered = 0
        self._space = asyncio.Event()
        self._space.set()
        self._wakeup = asyncio.Event()
        #: The sender's wake-up call and when it is due (see _arm_timer).
        self._timer: asyncio.Handle | None = None
        self._timer_when = 0.0
        self._sender: asyncio.Task[None] | None = None
        #: Set when the sender task died: nothing queued would ever be sent.
        self._sender_error: KafkaError | None = None
        self._closing = False
        self._last_refresh = 0.0
        self._loop: asyncio.AbstractEventLoop  # set by start()

    async def start(self) -> None:
        """Reach the cluster (so a wrong address fails here) and start sending."""
        self._loop = asyncio.get_running_loop()
        await super().start()
        if self._sender is None:
            self._sender = asyncio.create_task(self._run_sender(), name="moldau-producer-sender")

    # --- public API ------------------------------------------------------------

    async def partitions_for(self, topic: str) -> int:
        """The partition count of ``topic``, waiting up to ``max_block_ms`` for
        it to exist (and creating it if the broker auto-creates topics).

        Cached for ``metadata_max_age_ms``: this is on every ``send``.
        """
        known = self._partition_counts.get(topic)
        if known is not None and known[1] > self._loop.time():
            return known[0]
        info = await self.cluster.topic(
            topic, timeout_ms=self.max_block_ms, allow_auto_create=self.allow_auto_create_topics
        )
        count = len(info.partitions)
        self._partition_counts[topic] = (count, self._loop.time() + self.metadata_max_age)
        return count

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Iterable[Header] = (),
    ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; await the returned future for where it was stored.

        Awaiting ``send`` itself only waits for the topic's metadata (the first
        time) and for buffer space.
        """
        if self._sender is None:
            raise RuntimeError("Producer.start() was not called")
        if self._closing:
            raise RuntimeError("producer is closed")
        header_list = list(headers) if headers else []
        size = _RECORD_OVERHEAD
        if key is not None:
            size += len(key)
        if value is not None:
            size += len(value)
        for name, data in header_list:
            size += len(name) + (len(data) if data is not None else 0) + 2
        if size + HEADER_SIZE > self.max_request_size:
            raise KafkaError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"record of {size} bytes exceeds max_request_size {self.max_request_size}",
            )
        num_partitions = await self.partitions_for(topic)
        if partition is not None and not 0 <= partition < num_partitions:
            raise KafkaError(
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                f"partition {partition} of topic '{topic}' does not exist "
                f"({num_partitions} partitions)",
            )
        while self._buffered >= self.buffer_memory:
            self._space.clear()
            await self._space.wait()
        if self._sender_error is not None:
            raise self._sender_error
        loop = self._loop
        chosen = partition
        if chosen is None:
            chosen = self.partitioner.partition(topic, key, num_partitions)
        tp = TopicPartition(topic, chosen)
        batch = self._open.get(tp)
        if batch is not None and batch.size + size > self.batch_size:
            self._close_batch(tp, num_partitions)
            if partition is None and key is None:
                chosen = self.partitioner.partition(topic, key, num_partitions)
                tp = TopicPartition(topic, chosen)
        future: asyncio.Future[RecordMetadata] = loop.create_future()
        if timestamp_ms is None:
            timestamp_ms = int(time.time() * 1000)
        batch = self._open.get(tp)
        if batch is None:
            # The record goes in before the batch is published in _open: an
            # open batch is never empty (an empty one cannot be encoded).
            batch = _Batch(tp, loop.time(), loop.create_future())
            batch.add(key, value, header_list, timestamp_ms, size, future)
            self._open[tp] = batch
            self._arm_timer(batch.created + self.linger)
        else:
            batch.add(key, value, header_list, timestamp_ms, size, future)
        self._buffered += size
        if batch.size >= self.batch_size:
            self._close_batch(tp, num_partitions)
        return future

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Iterable[Header] = (),
    ) -> RecordMetadata:
        """``send`` and wait for the broker's acknowledgement."""
        future = await self.send(
            topic, value, key, partition=partition, timestamp_ms=timestamp_ms, headers=headers
        )
        return await future

    async def flush(self) -> None:
        """Send everything queued so far now and wait until each batch is
        acknowledged or failed (failures stay in the records' futures)."""
        for tp in list(self._open):
            self._close_batch(tp, None)
        waiting = [b.done for q in self._queues.values() for b in q]
        waiting += [b.done for b in self._in_flight.values()]
        if waiting:
            self._wakeup.set()
            await asyncio.wait(waiting)

    async def close(self) -> None:
        """Flush, stop the sender and (if it is ours) close the cluster."""
        if self._sender is not None and not self._closing:
            try:
                await self.flush()
            finally:
                self._closing = True
                self._wakeup.set()
                await self._sender
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        await super().close()

    # --- accumulating -----------------------------------------------------------

    def _close_batch(self, tp: TopicPartition, num_partitions: int | None) -> None:
        batch = self._open.pop(tp)
        self._queues.setdefault(tp, deque()).append(batch)
        if num_partitions is None:
            num_partitions = self.cluster.metadata.partition_count(tp.topic) or 1
        self.partitioner.on_new_batch(tp.topic, tp.partition, num_partitions)
        self._wakeup.set()

    def _arm_timer(self, when: float) -> None:
        """Wake the sender at ``when`` unless it is already due to wake earlier.

        The deadline is kept here, not read back with ``TimerHandle.when()``:
        uvloop's ``call_at`` with a deadline less than a millisecond ahead (or
        already past) returns a plain ``Handle``, which has no ``when()``.
        """
        if self._timer is not None and self._timer_when <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._wakeup.set()

    def _release(self, batch: _Batch) -> None:
        self._buffered -= batch.size - HEADER_SIZE
        if self._buffered < self.buffer_memory:
            self._space.set()

    # --- sending ------------------------------------------------------------------

    async def _run_sender(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                await self._send_ready()
                if self._closing and not self._has_work():
                    return
                await self._wakeup.wait()
        except BaseException as exc:
            # A bug or a cancellation: nobody must wait forever on these.
            # Records sent after this fail at once (see send), instead of
            # waiting in batches that no task will send.
            error = KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"producer sender failed: {exc!r}")
            self._sender_error = error
            for batch in self._all_batches():
                batch.fail(error)
            raise

    def _has_work(self) -> bool:
        return bool(self._open or self._in_flight or any(self._queues.values()))

    def _all_batches(self) -> list[_Batch]:
        batches = list(self._open.values()) + list(self._in_flight.values())
        return batches + [b for q in self._queues.values() for b in q]

    async def _send_ready(self) -> None:
        """Close lingered batches, then send every partition's head batch whose
        leader is known, one request per broker."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for tp, batch in list(self._open.items()):
            if batch.created + self.linger <= now or self._closing:
                self._close_batch(tp, None)
        if self._open:
            self._arm_timer(min(b.created for b in self._open.values()) + self.linger)

        self._expire(now)
        await self._maybe_refresh(now)
        meta = self.cluster.metadata
        by_node: dict[int, list[_Batch]] = {}
        for tp, queue in self._queues.items():
            if not queue or tp in self._in_flight:
                continue
            head = queue[0]
            if head.retry_at > now:
                self._arm_timer(head.retry_at)
                continue
            leader = meta.leader(tp.topic, tp.partition)
            if leader is None:
                self._stale.add(tp.topic)
                self._arm_timer(now + self.retry_backoff)
                continue
            by_node.setdefault(leader, []).append(head)
        for node_id, batches in by_node.items():
            await self._send_to(node_id, batches)

    async def _maybe_refresh(self, now: float) -> None:
        if not self._stale or now - self._last_refresh < self.retry_backoff:
            return
        topics, self._stale = self._stale, set()
        self._last_refresh = now
        try:
            await self.cluster.refresh(topics)
        except KafkaError:
            self._stale |= topics
            self._arm_timer(now + self.retry_backoff)

    def _expire(self, now: float) -> None:
        for tp, queue in self._queues.items():
            while queue and queue[0].created + self.delivery_timeout <= now:
                batch = queue.popleft()
                error = batch.last_error or KafkaError(
                    ErrorCode.REQUEST_TIMED_OUT,
                    f"no leader for {tp.topic}-{tp.partition} within the delivery timeout",
                )
                self._release(batch)
                batch.fail(error)

    async def _send_to(self, node_id: int, batches: list[_Batch]) -> None:
        chosen: list[_Batch] = []
        total = 0
        for batch in batches:
            wire = batch.encode(self.compression)
            if chosen and total + len(wire) > self.max_request_size:
                break
            chosen.append(batch)
            total += len(wire)
        for batch in chosen:
            self._queues[batch.tp].popleft()
            self._in_flight[batch.tp] = batch
            batch.attempts += 1
        topic_data: dict[str, list[dict[str, Any]]] = {}
        for batch in chosen:
            topic_data.setdefault(batch.tp.topic, []).append(
                {"index": batch.tp.partition, "records": batch.wire}
            )
        body = {
            "transactional_id": None,
            "acks": self.acks,
            "timeout_ms": self.request_timeout_ms,
            "topic_data": [
                {"name": name, "partition_data": parts} for name, parts in topic_data.items()
            ],
        }
        try:
            conn = await self.cluster.node(node_id)
            future = conn.send(
                ApiKey.PRODUCE,
                body,
                timeout_ms=self.request_timeout_ms + 5_000,
                expect_response=self.acks != 0,
            )
        except KafkaError as exc:
            self._on_failure(chosen, exc)
            return
        future.add_done_callback(lambda f: self._on_response(chosen, f))

    def _on_response(self, batches: list[_Batch], future: asyncio.Future[dict[str, Any]]) -> None:
        self._wakeup.set()
        exc = future.exception()
        if exc is not None:
            error = (
                exc if isinstance(exc, KafkaError) else KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR)
            )
            self._on_failure(batches, error)
            return
        body = future.result()
        answers = {
            (topic["name"], part["index"]): part
            for topic in body.get("responses", ())
            for part in topic["partition_responses"]
        }
        for batch in batches:
            del self._in_flight[batch.tp]
            if self.acks == 0:
                self._release(batch)
                batch.complete(-1, -1)
                continue
            answer = answers.get(batch.tp)
            if answer is None:
                self._retry_or_fail(
                    batch,
                    KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, "broker did not answer for it"),
                )
            elif answer["error_code"]:
                self._retry_or_fail(batch, self._partition_error(batch.tp, answer))
            else:
                self._release(batch)
                batch.complete(answer["base_offset"], answer.get("log_append_time_ms", -1))

    def _partition_error(self, tp: TopicPartition, answer: dict[str, Any]) -> KafkaError:
        message = answer.get("error_message")
        for record_error in answer.get("record_errors") or ():
            message = message or record_error.get("batch_index_error_message")
        return make_error(
            answer["error_code"], message, context=f"produce to {tp.topic}-{tp.partition}"
        )

    def _on_failure(self, batches: list[_Batch], error: KafkaError) -> None:
        for batch in batches:
            self._in_flight.pop(batch.tp, None)
            self._retry_or_fail(batch, error)
        self._wakeup.set()

    def _retry_or_fail(self, batch: _Batch, error: KafkaError) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        batch.last_error = error
        expires = batch.created + self.delivery_timeout
        if error.code.retriable and now + self.retry_backoff < expires:
            if error.code in METADATA_ERRORS:
                self._stale.add(batch.tp.topic)
            batch.retry_at = now + self.retry_backoff
            self._queues.setdefault(batch.tp, deque()).appendleft(batch)
            self._arm_timer(batch.retry_at)
            return
        self._release(batch)
        batch.fail(error)
