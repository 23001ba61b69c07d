"""A simple consumer: assigned partitions, fetched from their leaders.

At most one Fetch per broker is in flight, covering every assigned partition
that broker leads and that has nothing buffered. A fetch that outlives a
``getmany`` call is kept and read by the next one, so a short poll timeout
loses nothing. Positions move when records are handed out, not when they
arrive; a ``seek`` drops what was buffered for that partition.

A consumer group member (``group_member.GroupConsumer``) assigns through the
same ``assign`` and ``seek``; the fetching here does not care who decided the
assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from moldau.protocol.api_keys import ApiKey
from moldau.protocol.batch import iter_batches
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.records import decode_batch, record_timestamp

from .cluster import METADATA_ERRORS, Cluster
from .errors import make_error
from .lifecycle import ClusterClient
from .offsets import list_offsets
from .subscription import SubscriptionState
from .types import ConsumerRecord, TopicPartition

__all__ = ["Consumer", "FetchedPartition", "parse_fetched"]

Buffer = bytes | bytearray | memoryview


@dataclass(slots=True)
class FetchedPartition:
    """Records of one fetch answer for one partition, handed out in order."""

    records: deque[ConsumerRecord]
    #: Where to fetch next once all records are handed out: past the last
    #: complete batch (control batches and compaction gaps included).
    next_offset: int
    #: The answer held only part of a batch: the partition fetch size is too
    #: small for the batch at this position.
    truncated: bool = False


def parse_fetched(
    topic: str, partition: int, data: Buffer | None, position: int, *, check_crcs: bool = True
) -> FetchedPartition:
    """The records at or after ``position`` in a fetch answer's record bytes.

    Batches may start before ``position`` (the broker returns whole batches)
    and the last one may be cut off at the size limit; both are normal.
    """
    records: deque[ConsumerRecord] = deque()
    next_offset = position
    if not data:
        return FetchedPartition(records, next_offset)
    complete = False
    for header, batch in iter_batches(data, allow_partial_tail=True):
        complete = True
        if header.next_offset <= position:
            continue
        if not header.is_control:
            _, batch_records = decode_batch(batch, verify_crc=check_crcs)
            for record in batch_records:
                offset = header.base_offset + record.offset_delta
                if offset < position:
                    continue
                records.append(
                    ConsumerRecord(
                        topic,
                        partition,
                        offset,
                        record_timestamp(header, record),
                        header.timestamp_type,
                        record.key,
                        record.value,
                        record.headers,
                    )
                )
        next_offset = max(next_offset, header.next_offset)
    return FetchedPartition(records, next_offset, truncated=not complete)


@dataclass(eq=False)
class _Fetch:
    node_id: int
    future: asyncio.Future[dict[str, Any]]
    #: The position each partition was fetched from.
    offsets: dict[TopicPartition, int] = field(default_factory=dict)


class Consumer(ClusterClient):
    """An asyncio consumer of explicitly assigned partitions.

    >>> async with Consumer("127.0.0.1:9092", auto_offset_reset="earliest") as c:
    ...     c.assign([TopicPartition("events", 0)])
    ...     batches = await c.getmany(timeout_ms=1000)
    """

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:9092",
        *,
        cluster: Cluster | None = None,
        client_id: str = "moldau-consumer",
        auto_offset_reset: str = "latest",
        fetch_max_wait_ms: int = 500,
        fetch_min_bytes: int = 1,
        fetch_max_bytes: int = 52_428_800,
        max_partition_fetch_bytes: int = 1_048_576,
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        check_crcs: bool = True,
    ) -> None:
        super().__init__(
            bootstrap_servers,
            cluster,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
        )
        self.subscription = SubscriptionState(auto_offset_reset)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_bytes = fetch_max_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.request_timeout_ms = request_timeout_ms
        self.retry_backoff = retry_backoff_ms / 1000
        self.check_crcs = check_crcs
        self._buffers: dict[TopicPartition, FetchedPartition] = {}
        self._fetches: dict[int, _Fetch] = {}
        self._fetch_sizes: dict[TopicPartition, int] = {}
        self._stale_until = 0.0
        self._stale = False
        self._ready: deque[ConsumerRecord] = deque()

    async def close(self) -> None:
        """Abandon the fetches in flight, then close the cluster if it is ours."""
        for fetch in self._fetches.values():
            fetch.future.cancel()
        self._fetches.clear()
        await super().close()

    # --- assignment and positions --------------------------------------------

    async def partitions_for(self, topic: str, *, timeout_ms: int | None = None) -> list[int]:
        """The partitions of ``topic``, waiting up to ``timeout_ms`` (default: the
        request timeout) for a topic just created; UNKNOWN_TOPIC_OR_PARTITION
        if it does not exist by then."""
        wait = self.request_timeout_ms if timeout_ms is None else timeout_ms
        info = await self.cluster.topic(topic, timeout_ms=wait)
        return sorted(info.partitions)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self.subscription.assign(partitions)
        assigned = self.subscription.assignment()
        for tp in list(self._buffers):
            if tp not in assigned:
                del self._buffers[tp]

    def assignment(self) -> set[TopicPartition]:
        return self.subscription.assignment()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.subscription.seek(tp, offset)
        self._buffers.pop(tp, None)

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self._request_reset(tps or tuple(self.assignment()), "earliest")

    def seek_to_end(self, *tps: TopicPartition) -> None:
        self._request_reset(tps or tuple(self.assignment()), "latest")

    def _request_reset(self, tps: Iterable[TopicPartition], strategy: str) -> None:
        for tp in tps:
            self.subscription.request_reset(tp, strategy)
            self._buffers.pop(tp, None)

    async def position(self, tp: TopicPartition) -> int:
        """Offset of the next record ``getmany`` will return for ``tp``."""
        await self._resolve_positions()
        position = self.subscription.position(tp)
        assert position is not None
        return position

    def pause(self, *tps: TopicPartition) -> None:
        self.subscription.pause(*tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.subscription.resume(*tps)

    # --- reading -------------------------------------------------------------

    async def getmany(
        self, *, timeout_ms: float = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records of the assigned partitions, waiting up to ``timeout_ms`` for
        the first; empty when none arrived in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        while True:
            await self._resolve_positions()
            taken = self._take(max_records)
            if taken:
                return taken
            remaining = deadline - loop.time()
            if remaining <= 0:
                return {}
            await self._send_fetches()
            waiting = [f.future for f in self._fetches.values()]
            if not waiting:
                # Nothing could be fetched (no leader yet): wait a backoff.
                await asyncio.sleep(min(self.retry_backoff, remaining))
                continue
            done, _ = await asyncio.wait(
                waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for fetch in [f for f in self._fetches.values() if f.future in done]:
                del self._fetches[fetch.node_id]
                self._handle(fetch)

    async def getone(self) -> ConsumerRecord:
        """The next record, however long it takes."""
        while not self._ready:
            for records in (await self.getmany(timeout_ms=self.request_timeout_ms)).values():
                self._ready.extend(records)
        return self._ready.popleft()

    def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        return self

    async def __anext__(self) -> ConsumerRecord:
        return await self.getone()

    # --- internals -------------------------------------------------------------

    def _take(self, max_records: int | None) -> dict[TopicPartition, list[ConsumerRecord]]:
        taken: dict[TopicPartition, list[ConsumerRecord]] = {}
        budget = max_records if max_records is not None else -1
        for tp, fetched in list(self._buffers.items()):
            if budget == 0:
                break
            if not self.subscription.is_assigned(tp) or self.subscription.state(tp).paused:
                continue
            out = taken.setdefault(tp, [])
            while fetched.records and budget != 0:
                out.append(fetched.records.popleft())
                budget -= 1
            if fetched.records:
                self.subscription.seek(tp, out[-1].offset + 1)
            else:
                del self._buffers[tp]
                self.subscription.seek(tp, fetched.next_offset)
            if not out:
                del taken[tp]
        return taken

    async def _resolve_positions(self) -> None:
        missing = self.subscription.missing_position()
        if missing:
            tp = missing[0]
            raise KafkaError(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"no position for {tp.topic}-{tp.partition} and auto_offset_reset is none",
            )
        resets = self.subscription.needs_reset()
        if not resets:
            return
        found = await list_offsets(self.cluster, resets, timeout_ms=self.request_timeout_ms)
        for tp, answer in found.items():
            if self.subscription.is_assigned(tp) and self.subscription.state(tp).reset:
                self.subscription.seek(tp, answer.offset)

    async def _send_fetches(self) -> None:
        loop = asyncio.get_running_loop()
        if self._stale and loop.time() >= self._stale_until:
            self._stale = False
            topics = {tp.topic for tp in self.subscription.assignment()}
            try:
                await self.cluster.refresh(topics)
            except KafkaError:
                self._mark_stale()
        busy = {tp for fetch in self._fetches.values() for tp in fetch.offsets}
        meta = self.cluster.metadata
        by_node: dict[int, dict[TopicPartition, int]] = {}
        for tp in self.subscription.fetchable():
            if tp in busy or tp in self._buffers:
                continue
            leader = meta.leader(tp.topic, tp.partition)
            if leader is None:
                self._mark_stale()
                continue
            if leader in self._fetches:
                continue
            position = self.subscription.position(tp)
            assert position is not None
            by_node.setdefault(leader, {})[tp] = position
        for node_id, offsets in by_node.items():
            try:
                conn = await self.cluster.node(node_id)
                future = conn.send(
                    ApiKey.FETCH,
                    self._fetch_body(offsets),
                    timeout_ms=self.request_timeout_ms + self.fetch_max_wait_ms,
                )
            except KafkaError:
                self._mark_stale()
                continue
            future.add_done_callback(_retrieve)
            self._fetches[node_id] = _Fetch(node_id, future, offsets)

    def _fetch_body(self, offsets: dict[TopicPartition, int]) -> dict[str, Any]:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for tp, offset in offsets.items():
            by_topic.setdefault(tp.topic, []).append(
                {
                    "partition": tp.partition,
                    "current_leader_epoch": -1,
                    "fetch_offset": offset,
                    "last_fetched_epoch": -1,
                    "log_start_offset": -1,
                    "partition_max_bytes": self._fetch_sizes.get(
                        tp, self.max_partition_fetch_bytes
                    ),
                }
            )
        return {
            "replica_id": -1,
            "max_wait_ms": self.fetch_max_wait_ms,
            "min_bytes": self.fetch_min_bytes,
            "max_bytes": self.fetch_max_bytes,
            "isolation_level": 0,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": t, "partitions": parts} for t, parts in by_topic.items()],
            "forgotten_topics_data": [],
            "rack_id": "",
        }

    def _mark_stale(self) -> None:
        if not self._stale:
            self._stale = True
            self._stale_until = asyncio.get_running_loop().time() + self.retry_backoff

    def _handle(self, fetch: _Fetch) -> None:
        exc = fetch.future.exception() if not fetch.future.cancelled() else None
        if fetch.future.cancelled() or exc is not None:
            if isinstance(exc, KafkaError) and not exc.code.retriable:
                raise exc
            self._mark_stale()
            return
        body = fetch.future.result()
        check_top = body.get("error_code", 0)
        if check_top:
            error = make_error(check_top, context="fetch")
            if not error.code.retriable:
                raise error
            self._mark_stale()
            return
        for topic in body["responses"]:
            for part in topic["partitions"]:
                tp = TopicPartition(topic["topic"], part["partition_index"])
                fetched_from = fetch.offsets.get(tp)
                if fetched_from is None or not self.subscription.is_assigned(tp):
                    continue
                if self.subscription.position(tp) != fetched_from:
                    continue  # seeked meanwhile: this answer is for an old position
                self._handle_partition(tp, fetched_from, part)

    def _handle_partition(self, tp: TopicPartition, position: int, part: dict[str, Any]) -> None:
        code = part["error_code"]
        if code == ErrorCode.NONE:
            fetched = parse_fetched(
                tp.topic, tp.partition, part["records"], position, check_crcs=self.check_crcs
            )
            if fetched.truncated:
                # A batch bigger than the partition fetch size: ask for more
                # (brokers before KIP-74 would return nothing else).
                size = self._fetch_sizes.get(tp, self.max_partition_fetch_bytes)
                self._fetch_sizes[tp] = min(size * 2, self.fetch_max_bytes)
            elif fetched.records or fetched.next_offset != position:
                self._buffers[tp] = fetched
            return
        if code == ErrorCode.OFFSET_OUT_OF_RANGE:
            strategy = self.subscription.default_reset
            if strategy == "none":
                raise KafkaError(
                    ErrorCode.OFFSET_OUT_OF_RANGE,
                    f"offset {position} is out of range for {tp.topic}-{tp.partition}",
                )
            self._request_reset([tp], strategy)
            return
        if code in METADATA_ERRORS:
            # Leader moved, or the topic is not everywhere yet: ask again.
            self._mark_stale()
            return
        error = make_error(code, context=f"fetch from {tp.topic}-{tp.partition}")
        if not error.code.retriable:
            raise error
        self._mark_stale()


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a fetch's failure as seen, so an abandoned one does not warn."""
    with contextlib.suppress(asyncio.CancelledError):
        future.exception()
