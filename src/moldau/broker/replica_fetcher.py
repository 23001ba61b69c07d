"""Replica fetchers: followers copying their leaders' logs (Kafka's
ReplicaFetcherManager and ReplicaFetcherThread, as asyncio tasks).

One ``ReplicaFetcher`` per leader broker (its id and inter-broker
endpoint) fetches every partition this broker follows from that leader in
one Fetch request (v12, ``replica_id`` = this broker's id), appends what
comes back byte for byte (``Partition.append_as_follower``), and takes the
leader's high watermark and log start offset (``follow_leader_offsets``).
The leader answers a follower at once when it has data and otherwise
parks the fetch up to ``max_wait_ms``, so a new batch reaches the
followers within a round trip, and their next fetch (from their new log
end) is what moves the leader's high watermark. A partition added while a
fetch is parked gives that fetch up (with its connection) so that the next
one names it at once (``ReplicaFetcher._answer``).

The rules (what to ask, where to truncate, how to treat an error) are the
pure ``fetch_state``; this module only does the I/O:

- a diverging epoch in the answer (KIP-320): truncate to where the logs
  part (``truncation_offset``) and fetch again;
- OFFSET_OUT_OF_RANGE: ask the leader where its log starts (ListOffsets)
  and ends (OffsetForLeaderEpoch), then truncate or restart the log at the
  leader's start (``out_of_range_action``);
- FENCED_LEADER_EPOCH: hold the partition until the controller's next
  LeaderAndIsr re-adds it (``follow``) with a newer epoch; other errors
  (NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH: the leader has not heard
  yet) and a failed connection: retry after ``backoff_ms``.

``ReplicaFetcherManager`` owns the fetchers: ``follow`` adds a partition to
its leader's fetcher (moving it from another's), ``unfollow`` removes it; a
fetcher left with nothing to fetch stops, and ``close`` stops them all and
waits for them. An answer is applied only if the partition is still
followed at the epoch it was asked at: anything may change while a fetch is
out.

A throttled replica (``follower.replication.throttled.*``, KIP-73) is left
out of the requests while the follower quota (``replication/quota.py``)
is over its rate, as Kafka's ReplicaFetcherThread does.

Each fetcher keeps an incremental fetch session (KIP-227) on its
connection (``fetch_state.FollowerSession``): the first request names every
partition, later ones only those whose fetch offset (or epoch, or log
start) moved or that were added, plus the ones to forget, and the leader
answers only partitions with something new; a partition absent from an
answer keeps its state. FETCH_SESSION_ID_NOT_FOUND or
INVALID_FETCH_SESSION_EPOCH (an eviction, a restarted leader) and a lost
connection start over with a full request; an answer not applied (the
partition changed meanwhile) has its partition named again.

Where moldau departs from Kafka: one fetcher per leader rather than
``num.replica.fetchers``, and no closing request (epoch -1) for a session
whose fetcher stops: the leader replaces it on this broker's next full
fetch, or evicts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..client.connection import BrokerConnection, connect
from ..protocol.api_keys import ApiKey
from ..protocol.errors import ErrorCode, KafkaError
from ..replication.fetch_state import (
    FOLLOWER_FETCH_VERSION,
    SESSION_ERRORS,
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
from ..replication.partition import Partition
from ..replication.quota import FollowerQuota

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
#: ListOffsets' timestamp asking for the log start offset.
_EARLIEST = -2


@dataclass(frozen=True)
class LeaderEndpoint:
    """A leader broker as its followers reach it (its inter-broker listener)."""

    broker_id: int
    host: str
    port: int


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class ReplicaFetcherManager:
    """This broker's fetchers, one per leader (see the module doc)."""

    def __init__(
        self,
        broker_id: int,
        partitions: Callable[[TopicPartition], Partition | None],
        limits: FetchLimits | None = None,
        *,
        backoff_ms: int = 1000,
        request_timeout_ms: int = 30_000,
        clock: Callable[[], int] = _monotonic_ms,
        quota: FollowerQuota | None = None,
    ) -> None:
        self.broker_id = broker_id
        #: follower.replication.throttled.* (unlimited unless given).
        self.quota = quota or FollowerQuota(broker_id, lambda topic: None, clock)
        self.partition = partitions
        self.limits = limits or FetchLimits()
        self.backoff_ms = backoff_ms
        self.request_timeout_ms = request_timeout_ms
        self.clock = clock
        self._fetchers: dict[LeaderEndpoint, ReplicaFetcher] = {}
        self._leaders: dict[TopicPartition, LeaderEndpoint] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    def follow(self, tp: TopicPartition, leader: LeaderEndpoint, leader_epoch: int) -> None:
        """Fetch ``tp`` from ``leader`` at ``leader_epoch`` (from another
        leader's fetcher if it was there; a held partition is released).
        Nothing once closed: the broker is stopping."""
        if self._closed:
            return
        old = self._leaders.get(tp)
        if old is not None and old != leader:
            self.unfollow(tp)
        fetcher = self._fetchers.get(leader)
        if fetcher is None:
            fetcher = self._fetchers[leader] = ReplicaFetcher(self, leader)
        fetcher.add(tp, leader_epoch)
        self._leaders[tp] = leader

    def unfollow(self, tp: TopicPartition) -> None:
        """Stop fetching ``tp`` (it leads here now, or is no longer hosted)."""
        leader = self._leaders.pop(tp, None)
        if leader is None:
            return
        fetcher = self._fetchers[leader]
        fetcher.remove(tp)
        if not fetcher.targets:
            del self._fetchers[leader]
            task = fetcher.stop()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def target(self, tp: TopicPartition) -> FetchTarget | None:
        """How ``tp`` is fetched now (its epoch, backoff, whether held), or None."""
        leader = self._leaders.get(tp)
        return None if leader is None else self._fetchers[leader].targets.get(tp)

    def leader_of(self, tp: TopicPartition) -> int | None:
        """The broker ``tp`` is fetched from, or None."""
        leader = self._leaders.get(tp)
        return None if leader is None else leader.broker_id

    async def close(self) -> None:
        """Stop every fetcher and wait until each has."""
        self._closed = True
        for fetcher in self._fetchers.values():
            self._stopping.add(fetcher.stop())
        self._fetchers.clear()
        self._leaders.clear()
        # A copy: a task that ends while we wait discards itself from the set.
        stopping = list(self._stopping)
        self._stopping.clear()
        for task in stopping:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class ReplicaFetcher:
    """The fetch loop of one leader's partitions (Kafka's ReplicaFetcherThread)."""

    def __init__(self, manager: ReplicaFetcherManager, leader: LeaderEndpoint) -> None:
        self.manager = manager
        self.leader = leader
        self.targets: dict[TopicPartition, FetchTarget] = {}
        self._wakeup = asyncio.Event()
        #: Resolved when a partition (or a new epoch of one) is added while a
        #: fetch is out: see ``_answer``.
        self._added: asyncio.Future[None] | None = None
        self._connection: BrokerConnection | None = None
        #: The fetch session on ``_connection`` (reset with it).
        self._session = FollowerSession()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"replica-fetcher-{manager.broker_id}-from-{leader.broker_id}"
        )

    def add(self, tp: TopicPartition, leader_epoch: int) -> None:
        target = self.targets.get(tp)
        if target is None or target.leader_epoch != leader_epoch or target.held:
            # A new epoch starts afresh: no backoff, not held.
            self.targets[tp] = FetchTarget(leader_epoch)
            if self._added is not None and not self._added.done():
                self._added.set_result(None)
        self._wakeup.set()

    def remove(self, tp: TopicPartition) -> None:
        self.targets.pop(tp, None)

    def stop(self) -> asyncio.Task[None]:
        """Cancel the loop; the task to await for its end."""
        self._task.cancel()
        return self._task

    # -- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._fetch_once()
                except Exception as exc:  # a lost connection, a refused or garbled answer
                    log.warning(
                        "broker %d: fetching from broker %d failed (%s); retrying in %d ms",
                        self.manager.broker_id,
                        self.leader.broker_id,
                        exc,
                        self.manager.backoff_ms,
                    )
                    self._drop_connection()
                    await asyncio.sleep(self.manager.backoff_ms / 1000)
        finally:
            self._drop_connection()

    async def _fetch_once(self) -> None:
        self._wakeup.clear()
        now = self.manager.clock()
        wanted = self._wanted(now)
        if not wanted:
            await self._idle(now)
            return
        # The targets as asked: an answer applies only while they are current.
        sent = {tp: self.targets[tp] for tp in wanted}
        conn = await self._connect()
        request = self._session.request(wanted)
        body = fetch_request(self.manager.broker_id, request, self.manager.limits)
        response = await self._answer(conn, body)
        if response is None:
            return
        code = response.get("error_code", 0)
        if code in SESSION_ERRORS:  # evicted, or the leader restarted: start over
            log.info(
                "broker %d: fetch session %d with broker %d: %s; fetching in full",
                self.manager.broker_id,
                request.session_id,
                self.leader.broker_id,
                ErrorCode(code).name,
            )
            self._session.reset()
            return
        if code:
            raise KafkaError(ErrorCode(code), "the leader refused the fetch")
        self._session.answered(request, response.get("session_id", 0))
        out_of_range: list[TopicPartition] = []
        for topic in response["responses"]:
            for answer in topic["partitions"]:
                tp = (topic["topic"], answer["partition_index"])
                current = tp in wanted and self._current(tp, sent[tp]) is not None
                if not current:
                    self._session.rename(tp)
                elif not self._apply(tp, wanted[tp], sent[tp], answer):
                    out_of_range.append(tp)
        for tp in out_of_range:
            await self._out_of_range(conn, tp, sent[tp])

    async def _answer(self, conn: BrokerConnection, body: dict[str, Any]) -> dict[str, Any] | None:
        """The leader's answer to ``body``; None if a partition was added
        while the leader held the fetch.

        The leader parks a fetch that finds no data for up to max_wait_ms,
        and answers a connection's requests in order: a partition added now
        (the LeaderAndIsr of a failover, whose acks=all writes wait for this
        follower) would be asked for only after that wait. So the fetch is
        given up with its connection, and the next one, on a new connection,
        names the partition at once. Nothing of the abandoned answer was
        applied, so the follower's log end the leader recorded stays true.
        """
        request = conn.send(
            ApiKey.FETCH,
            body,
            version=FOLLOWER_FETCH_VERSION,
            timeout_ms=self.manager.request_timeout_ms + self.manager.limits.max_wait_ms,
        )
        added = self._added = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait((request, added), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._added = None
            added.cancel()
            if not request.done():
                request.cancel()  # before the close, which would fail it unseen
                self._drop_connection()
        return None if request.cancelled() else request.result()

    def _wanted(self, now: int) -> dict[TopicPartition, PartitionFetch]:
        wanted = {}
        for tp, target in self.targets.items():
            if not target.ready(now):
                continue
            partition = self._current(tp, target)
            if partition is None:
                continue
            if partition.offline:
                target.held = True  # until the broker restarts, as in Kafka
                continue
            throttled_ms = self.manager.quota.holds_back(*tp)
            if throttled_ms:  # left out until back within the rate, as in Kafka
                target.delay(now, min(throttled_ms, self.manager.backoff_ms))
                continue
            wanted[tp] = PartitionFetch(
                tp[0],
                tp[1],
                target.leader_epoch,
                partition.log_end_offset,
                partition.log.leader_epochs.latest_epoch,
                partition.log_start_offset,
            )
        return wanted

    async def _idle(self, now: int) -> None:
        """Wait for a partition to be added or a backoff to end."""
        ready_at = next_ready_ms(self.targets.values())
        timeout = None if ready_at is None else max(ready_at - now, 0) / 1000
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _current(self, tp: TopicPartition, target: FetchTarget) -> Partition | None:
        """The partition if this fetcher still follows it with ``target``."""
        if self.targets.get(tp) is not target:
            return None
        partition = self.manager.partition(tp)
        if (
            partition is None
            or partition.is_leader
            or partition.leader_id != self.leader.broker_id
            or partition.leader_epoch != target.leader_epoch
        ):
            return None
        return partition

    # -- answers -------------------------------------------------------------------

    def _apply(
        self, tp: TopicPartition, asked: PartitionFetch, target: FetchTarget, answer: Any
    ) -> bool:
        """Apply one partition's answer; False if it needs the out-of-range lookup."""
        partition = self._current(tp, target)
        assert partition is not None
        now = self.manager.clock()
        code = answer["error_code"]
        if code != ErrorCode.NONE:
            action = error_action(code)
            if action is ErrorAction.OUT_OF_RANGE:
                return False
            if action is ErrorAction.HOLD:
                log.info(
                    "broker %d: %s-%d fenced at epoch %d by broker %d; waiting for the controller",
                    self.manager.broker_id,
                    tp[0],
                    tp[1],
                    target.leader_epoch,
                    self.leader.broker_id,
                )
                target.held = True
            else:
                target.delay(now, self.manager.backoff_ms)
            return True
        try:
            # An absent tagged field decodes as {}.
            diverging = answer.get("diverging_epoch") or {}
            epoch, end_offset = diverging.get("epoch", -1), diverging.get("end_offset", -1)
            if epoch >= 0 and end_offset >= 0:
                self._truncate(partition, target, (epoch, end_offset))
                return True
            records = answer["records"]
            unchanged = partition.log_end_offset == asked.fetch_offset
            if records is not None and len(records) and unchanged:
                partition.append_as_follower(records)
            partition.follow_leader_offsets(answer["high_watermark"], answer["log_start_offset"])
            self.manager.quota.fetched(
                *tp, len(records or b""), answer["high_watermark"], partition.log_end_offset
            )
        except KafkaError as exc:
            log.warning(
                "broker %d: could not apply %s-%d from broker %d: %s",
                self.manager.broker_id,
                tp[0],
                tp[1],
                self.leader.broker_id,
                exc,
            )
            target.delay(now, self.manager.backoff_ms)
        return True

    def _truncate(
        self, partition: Partition, target: FetchTarget, diverging: tuple[int, int]
    ) -> None:
        before = (partition.log_end_offset, partition.log.leader_epochs.latest_epoch)
        local = partition.log.end_offset_for_epoch(diverging[0])
        offset = truncation_offset(diverging, local, partition.log_end_offset)
        log.info(
            "broker %d: %s-%d diverged from broker %d (its epoch %d ends at %d): "
            "truncating from %d to %d",
            self.manager.broker_id,
            partition.topic,
            partition.index,
            self.leader.broker_id,
            diverging[0],
            diverging[1],
            partition.log_end_offset,
            offset,
        )
        partition.truncate_to(offset)
        if (partition.log_end_offset, partition.log.leader_epochs.latest_epoch) == before:
            # Nothing changed: asking again at once would get the same answer.
            target.delay(self.manager.clock(), self.manager.backoff_ms)

    async def _out_of_range(
        self, conn: BrokerConnection, tp: TopicPartition, target: FetchTarget
    ) -> None:
        """Ask where the leader's log starts and ends, then truncate or restart."""
        start = await self._leader_log_start(conn, tp, target.leader_epoch)
        end = await self._leader_log_end(conn, tp, target.leader_epoch)
        partition = self._current(tp, target)
        if partition is None:
            return
        if start < 0 or end < 0:
            target.delay(self.manager.clock(), self.manager.backoff_ms)
            return
        action, offset = out_of_range_action(partition.log_end_offset, start, end)
        log.warning(
            "broker %d: %s-%d at %d is out of range of broker %d's log [%d, %d]: %s %d",
            self.manager.broker_id,
            tp[0],
            tp[1],
            partition.log_end_offset,
            self.leader.broker_id,
            start,
            end,
            action.value,
            offset,
        )
        try:
            if action is OutOfRange.TRUNCATE:
                partition.truncate_to(offset)
            elif action is OutOfRange.RESTART_AT_LEADER_START:
                partition.truncate_fully_and_start_at(offset)
            else:
                target.delay(self.manager.clock(), self.manager.backoff_ms)
        except KafkaError as exc:
            log.warning("broker %d: %s-%d: %s", self.manager.broker_id, tp[0], tp[1], exc)
            target.delay(self.manager.clock(), self.manager.backoff_ms)

    async def _leader_log_start(
        self, conn: BrokerConnection, tp: TopicPartition, epoch: int
    ) -> int:
        body = {
            "replica_id": self.manager.broker_id,
            "isolation_level": 0,
            "topics": [
                {
                    "name": tp[0],
                    "partitions": [
                        {
                            "partition_index": tp[1],
                            "current_leader_epoch": epoch,
                            "timestamp": _EARLIEST,
                        }
                    ],
                }
            ],
        }
        response = await conn.request(ApiKey.LIST_OFFSETS, body)
        [answer] = response["topics"][0]["partitions"]
        return int(answer["offset"]) if answer["error_code"] == 0 else -1

    async def _leader_log_end(self, conn: BrokerConnection, tp: TopicPartition, epoch: int) -> int:
        """The leader's log end: the end offset of its current epoch."""
        body = {
            "replica_id": self.manager.broker_id,
            "topics": [
                {
                    "topic": tp[0],
                    "partitions": [
                        {"partition": tp[1], "current_leader_epoch": epoch, "leader_epoch": epoch}
                    ],
                }
            ],
        }
        response = await conn.request(ApiKey.OFFSET_FOR_LEADER_EPOCH, body)
        [answer] = response["topics"][0]["partitions"]
        return int(answer["end_offset"]) if answer["error_code"] == 0 else -1

    # -- the connection ----------------------------------------------------------------

    async def _connect(self) -> BrokerConnection:
        conn = self._connection
        if conn is None or conn.closed:
            conn = self._connection = await connect(
                self.leader.host,
                self.leader.port,
                client_id=f"replica-fetcher-{self.manager.broker_id}",
                request_timeout_ms=self.manager.request_timeout_ms,
            )
        return conn

    def _drop_connection(self) -> None:
        self._session.reset()
        if self._connection is not None:
            self._connection.close()
            self._connection = None
