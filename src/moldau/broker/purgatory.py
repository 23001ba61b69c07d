"""Fetches waiting for data, keyed by partition (Kafka's fetch purgatory).

A fetch that finds less than ``min_bytes`` registers a future on every
partition it reads and sleeps until one of them changes or its wait ends.
The hosted partitions call ``wake`` after each append (and when a partition
goes away), which resolves every future waiting on it; the fetch then reads
again. It lives apart from the partitions so that whatever moves a partition
(an append today, a high-watermark move driven by followers in cluster mode)
wakes fetches through one call, and so that a waiter's lifetime is the
request's: the caller must ``forget_waiter`` it when done, also when
cancelled, so nothing outlives a closed connection.

The produce purgatory is the same: an acks=all write (a produce, or the
transaction markers of WriteTxnMarkers, which Kafka appends with acks=-1)
waits here for its partitions' high watermarks (:class:`ReplicatedWrite`,
:func:`when_replicated`), woken by the same calls; Kafka keeps the two apart only because its
delayed operations are objects with their own completion checks.

Where moldau departs from Kafka: no timer wheel and no delayed-operation
objects; the request's own coroutine waits with ``asyncio.wait_for``, so
expiry is the event loop's timer and completion is re-running the read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..protocol.errors import ErrorCode

TopicPartition = tuple[str, int]
Answer = TypeVar("Answer")


class ReplicaLeader(Protocol):
    """What an acks=all write asks its partition (``replication.Partition``)."""

    topic: str
    index: int

    def check_replicated(self, last_offset: int, epoch: int, min_insync: int) -> ErrorCode | None:
        """None while waiting, NONE when replicated, else the error."""
        ...


@dataclass
class ReplicatedWrite:
    """An acks=all write waiting for the ISR: its ``answer`` (an entry of the
    response) is edited in place, the success ``done`` once replicated, else
    ``failed(code)`` (REQUEST_TIMED_OUT while still waiting)."""

    partition: ReplicaLeader
    answer: dict[str, Any]
    done: dict[str, Any]
    failed: Callable[[ErrorCode], dict[str, Any]]
    last_offset: int
    epoch: int
    min_insync: int
    outcome: ErrorCode | None = None

    def settle(self) -> bool:
        """Fill in the answer as things stand now; whether it is final."""
        if self.outcome is None:
            self.outcome = self.partition.check_replicated(
                self.last_offset, self.epoch, self.min_insync
            )
        self.answer.clear()
        if self.outcome == ErrorCode.NONE:
            self.answer.update(self.done)
        else:
            code = ErrorCode.REQUEST_TIMED_OUT if self.outcome is None else self.outcome
            self.answer.update(self.failed(code))
        return self.outcome is not None


def when_replicated(
    purgatory: FetchPurgatory,
    writes: Sequence[ReplicatedWrite],
    response: Answer,
    timeout_ms: int,
) -> Answer | Awaitable[Answer]:
    """``response`` (holding the writes' answers) once every write is
    replicated or failed, or at ``timeout_ms``; at once if they all are."""

    def replicated() -> tuple[Answer, bool]:
        settled = [write.settle() for write in writes]
        return response, all(settled)

    answer, ready = replicated()
    if ready:
        return answer
    keys = [(w.partition.topic, w.partition.index) for w in writes]
    return purgatory.read_when_ready(keys, replicated, timeout_ms)


class FetchPurgatory:
    """Futures of waiting fetches, per partition."""

    def __init__(self) -> None:
        #: Insertion-ordered sets (a dict's keys), so registering, forgetting
        #: and waking are O(1) each.
        self._waiters: dict[TopicPartition, dict[asyncio.Future[None], None]] = {}

    def waiter(self, keys: list[TopicPartition]) -> asyncio.Future[None]:
        """A future resolved on the next ``wake`` of any of ``keys``.

        The caller must ``forget_waiter`` it when done, also when cancelled
        (its connection closed), so that nothing outlives the request.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._waiters.setdefault(key, {})[future] = None
        return future

    def forget_waiter(self, keys: list[TopicPartition], future: asyncio.Future[None]) -> None:
        for key in keys:
            waiting = self._waiters.get(key)
            if waiting is None:
                continue
            waiting.pop(future, None)
            if not waiting:
                del self._waiters[key]

    def wake(self, key: TopicPartition) -> None:
        """Resolve every fetch waiting on ``key``."""
        waiting = self._waiters.pop(key, None)
        if not waiting:
            return
        for future in waiting:
            if not future.done():
                future.set_result(None)

    async def read_when_ready(
        self,
        keys: list[TopicPartition],
        read: Callable[[], tuple[Answer, bool]],
        max_wait_ms: int,
    ) -> Answer:
        """Run ``read`` (which says whether its answer is ready: enough
        bytes, or an error) again after each wake of ``keys``, until it is
        ready or ``max_wait_ms`` has passed; the last answer either way.

        The waiter is registered before each read: the handler's own first
        read ran before this coroutine's first step, and an append in between
        (from another connection, in the same loop iteration) would otherwise
        wake no one and leave the fetch asleep until ``max_wait_ms``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_ms / 1000
        while True:
            waiter = self.waiter(keys)
            try:
                answer, ready = read()
                remaining = deadline - loop.time()
                if ready or remaining <= 0:
                    return answer
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, remaining)
            finally:
                self.forget_waiter(keys, waiter)
