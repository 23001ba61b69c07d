"""A leader's ISR changes, sent to the controller (Kafka's AlterPartitionManager
and the ISR expiration task of its ReplicaManager).

Every ``replica.lag.time.max.ms / 2`` the leader looks for ISR members that
have not caught up for ``replica.lag.time.max.ms`` (``Partition.isr_shrink``);
after each follower fetch it asks whether that follower may rejoin
(``Partition.isr_expand``, called by ``ReplicaManager.record_follower_fetch``).
Either proposal becomes the partition's ``pending_isr`` and goes to the
controller in an AlterPartition request (v3, ``cluster.wire``), conditional
on the leader epoch and partition epoch the leader holds. The leader's ISR
changes only when the controller answers with the state it wrote
(``Partition.isr_changed``); until then the high watermark waits for the
larger of the two ISRs, so nothing is committed on the strength of a change
ZooKeeper does not hold. A refused change (FENCED_LEADER_EPOCH: this leader
has been replaced; INVALID_UPDATE_VERSION; INELIGIBLE_REPLICA) is dropped
and proposed again if still due; a failed request (no controller, a lost
connection, NOT_CONTROLLER) is retried after a backoff.

Where moldau departs from Kafka: the controller is reached on the listener
the metadata cache names (Kafka uses the inter-broker listener).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..client.connection import BrokerConnection, connect
from ..protocol.errors import ErrorCode
from ..protocol.messages import Message
from ..replication.partition import Partition
from .replica_fetcher import LeaderEndpoint

if TYPE_CHECKING:  # imported when a request is sent: a single node loads no cluster code
    from ..cluster.controller.alter_partition import AlterPartitionItem

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
#: Wait after a failed AlterPartition request before the next.
RETRY_BACKOFF_S = 0.5


class IsrUpdater:
    """One task per broker: the periodic shrink check and the requests."""

    def __init__(
        self,
        broker_id: int,
        led: Callable[[], Iterable[Partition]],
        controller: Callable[[], LeaderEndpoint | None],
        broker_epoch: Callable[[], int],
        clock: Callable[[], int],
        *,
        max_lag_ms: int,
        request_timeout_ms: int = 30_000,
    ) -> None:
        self.broker_id = broker_id
        self._led = led
        self._controller = controller
        self._broker_epoch = broker_epoch
        self._clock = clock
        self.max_lag_ms = max_lag_ms
        self.request_timeout_ms = request_timeout_ms
        self._queue: dict[TopicPartition, Partition] = {}
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._connection: BrokerConnection | None = None
        self._connected_to: LeaderEndpoint | None = None
        self._closed = False

    def start(self) -> None:
        """Start the task (once; nothing after ``close``)."""
        if self._task is None and not self._closed:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"isr-updates-{self.broker_id}"
            )

    def propose(self, partition: Partition, isr: list[int]) -> None:
        """Ask the controller for ``isr`` as ``partition``'s ISR."""
        log.info(
            "%s-%d: asking the controller to change the ISR from %s to %s",
            partition.topic,
            partition.index,
            partition.isr,
            isr,
        )
        partition.pending_isr = list(isr)
        self._queue[(partition.topic, partition.index)] = partition
        self.start()
        if self._wakeup is not None:
            self._wakeup.set()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop_connection()

    # -- the task ---------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wakeup is not None
        interval_ms = max(self.max_lag_ms // 2, 1)
        next_check = self._clock() + interval_ms
        while True:
            timeout = max(next_check - self._clock(), 0) / 1000
            if not self._queue:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
            self._wakeup.clear()
            now = self._clock()
            if now >= next_check:
                next_check = now + interval_ms
                self._check_lag(now)
            if self._queue:
                try:
                    await self._send()
                except Exception as exc:  # no controller, a lost connection
                    log.warning(
                        "broker %d: AlterPartition failed (%s); retrying", self.broker_id, exc
                    )
                    self._drop_connection()
                    await asyncio.sleep(RETRY_BACKOFF_S)

    def _check_lag(self, now: int) -> None:
        for partition in self._led():
            shrunk = partition.isr_shrink(now, self.max_lag_ms)
            if shrunk is not None:
                self.propose(partition, shrunk)

    async def _send(self) -> None:
        batch = {
            tp: p for tp, p in self._queue.items() if p.is_leader and p.pending_isr is not None
        }
        self._queue.clear()
        if not batch:
            return
        from ..cluster.controller.alter_partition import AlterPartitionItem

        items = {
            tp: AlterPartitionItem(
                p.topic, p.index, p.leader_epoch, tuple(p.pending_isr or ()), p.partition_epoch
            )
            for tp, p in batch.items()
        }
        try:
            response = await self._request(batch, items)
        except BaseException:
            for tp, partition in batch.items():
                self._queue.setdefault(tp, partition)
            raise
        names = {p.topic_id: p.topic for p in batch.values()}
        for topic in response["topics"]:
            name = names.get(topic["topic_id"])
            for answer in topic["partitions"]:
                tp = (name or "", answer["partition_index"])
                if tp in batch:
                    self._apply(batch[tp], items[tp], answer)

    async def _request(
        self,
        batch: dict[TopicPartition, Partition],
        items: dict[TopicPartition, AlterPartitionItem],
    ) -> Message:
        controller = self._controller()
        if controller is None:
            raise ConnectionError("no controller known")
        if self._connection is None or self._connection.closed or self._connected_to != controller:
            self._drop_connection()
            self._connection = await connect(
                controller.host,
                controller.port,
                client_id=f"alter-partition-{self.broker_id}",
                request_timeout_ms=self.request_timeout_ms,
            )
            self._connected_to = controller
        from ..cluster import wire

        api_key, version, body = wire.alter_partition_request(
            self.broker_id,
            self._broker_epoch(),
            list(items.values()),
            {p.topic: p.topic_id for p in batch.values()},
        )
        response = await self._connection.request(api_key, body, version=version)
        code = ErrorCode(response["error_code"])
        if code != ErrorCode.NONE:
            raise ConnectionError(f"the controller answered {code.name}")
        return response

    def _apply(self, partition: Partition, item: AlterPartitionItem, answer: Message) -> None:
        if not partition.is_leader or partition.leader_epoch != item.leader_epoch:
            return  # led again or no more since: a LeaderAndIsr said what holds
        code = ErrorCode(answer["error_code"])
        if code == ErrorCode.NONE:
            log.info(
                "%s-%d: ISR now %s (partition epoch %d)",
                partition.topic,
                partition.index,
                answer["isr"],
                answer["partition_epoch"],
            )
            partition.isr_changed(list(answer["isr"]), answer["partition_epoch"])
        else:
            log.warning(
                "%s-%d: the controller refused ISR %s: %s",
                partition.topic,
                partition.index,
                list(item.isr),
                code.name,
            )
            partition.pending_isr = None

    def _drop_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = None
        self._connected_to = None
