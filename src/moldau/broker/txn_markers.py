"""Writing a completing transaction's markers into its partitions (Kafka's
``TransactionMarkerChannelManager``).

A :class:`MarkerJob` of the coordinator becomes one task here. It waits until
the PrepareCommit/PrepareAbort it follows is replicated (markers must never
precede a decision a new coordinator could lose), then sends WriteTxnMarkers
for every partition of the transaction to that partition's leader: in
process when this broker leads it, else over a peer link (API 27, v1). Each
partition that reports the marker written, or that no longer exists (its
topic was deleted: Kafka skips it too), is told to the coordinator, which
writes CompleteCommit/CompleteAbort after the last one. Partitions without a
leader, or whose leader answers a retriable error or cannot be reached, are
tried again after a backoff, until they are written or the job is no longer
current (the coordinator moved or the transaction was completed).

Where moldau departs from Kafka: a partition that refuses the marker as
fenced (a newer producer epoch or coordinator epoch wrote there) counts as
done, so that the transaction completes rather than staying prepared; Kafka
stops sending and leaves that to the newer coordinator or producer.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from ..cluster.metadata import MetadataStore
from ..protocol.api_keys import ApiKey
from ..protocol.errors import ErrorCode, KafkaError
from ..protocol.messages import Message
from ..txn.coordinator import MarkerJob, TxnCoordinator
from .peer_links import PeerLinks

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
#: Writes markers into partitions this broker leads (the WriteTxnMarkers
#: handler's function): the request's ``markers``, the response's ``markers``.
LocalMarkerWriter = Callable[[Sequence[Message]], Awaitable[list[Message]]]

WRITE_TXN_MARKERS_VERSION = 1
RETRY_BACKOFF_MS = 100
MAX_BACKOFF_MS = 1_000

#: Errors after which a partition's marker is tried again (Kafka's
#: ``TransactionMarkerRequestCompletionHandler``).
_RETRIABLE = frozenset(
    {
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.KAFKA_STORAGE_ERROR,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.BROKER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_SERVER_ERROR,
    }
)
#: Errors that say a newer coordinator or producer epoch wrote since: the
#: job is stale and stops.
_FENCED = frozenset({ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.TRANSACTION_COORDINATOR_FENCED})


class MarkerSender:
    def __init__(
        self,
        broker_id: int,
        coordinator: TxnCoordinator,
        metadata: MetadataStore,
        links: PeerLinks,
        write_local: LocalMarkerWriter,
    ) -> None:
        self.broker_id = broker_id
        self.coordinator = coordinator
        self.metadata = metadata
        self.links = links
        self.write_local = write_local
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self, job: MarkerJob, replicated: Callable[[], Awaitable[ErrorCode]]
    ) -> asyncio.Task[None]:
        """Run ``job`` once ``replicated()`` says its decision is on the ISR;
        the task ends when the job is done or no longer this broker's."""
        task = asyncio.get_running_loop().create_task(
            self._run(job, replicated), name=f"txn markers {job.transactional_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, job: MarkerJob, replicated: Callable[[], Awaitable[ErrorCode]]) -> None:
        try:
            while True:
                code = await replicated()
                if code == ErrorCode.NONE:
                    break
                if code == ErrorCode.NOT_COORDINATOR or not self.coordinator.job_current(job):
                    return  # the partition's new leader resumes the job
                await asyncio.sleep(RETRY_BACKOFF_MS / 1000)
            pending = set(job.partitions)
            backoff = RETRY_BACKOFF_MS
            while pending and self.coordinator.job_current(job):
                pending = await self._send_round(job, pending)
                if pending:
                    await asyncio.sleep(backoff / 1000)
                    backoff = min(backoff * 2, MAX_BACKOFF_MS)
        except Exception:
            log.exception("the markers of %s failed", job.transactional_id)

    async def _send_round(
        self, job: MarkerJob, pending: set[TopicPartition]
    ) -> set[TopicPartition]:
        """Send every pending marker once; the partitions still pending."""
        by_leader: dict[int, list[TopicPartition]] = defaultdict(list)
        retry: set[TopicPartition] = set()
        for tp in pending:
            info = self.metadata.topic(tp[0])
            if info is None or not 0 <= tp[1] < info.partition_count:
                log.info("%s-%d is gone: no marker for %s", *tp, job.transactional_id)
                self.coordinator.marker_written(job, tp)
                continue
            leader = self.metadata.partition_leader(*tp)
            if leader is None or leader[0] < 0:
                retry.add(tp)
            else:
                by_leader[leader[0]].append(tp)
        sends = [self._send(job, leader, tps) for leader, tps in by_leader.items()]
        for failed in await asyncio.gather(*sends):
            retry |= failed
        return retry

    async def _send(
        self, job: MarkerJob, leader: int, partitions: list[TopicPartition]
    ) -> set[TopicPartition]:
        """WriteTxnMarkers for ``partitions`` to ``leader``; those to retry."""
        marker = _marker(job, partitions)
        try:
            if leader == self.broker_id:
                results = await self.write_local([marker])
            else:
                response = await self.links.request(
                    leader,
                    ApiKey.WRITE_TXN_MARKERS,
                    WRITE_TXN_MARKERS_VERSION,
                    {"markers": [marker]},
                )
                results = response["markers"]
        except (KafkaError, OSError) as exc:
            log.info("markers of %s to broker %d: %s", job.transactional_id, leader, exc)
            return set(partitions)
        retry: set[TopicPartition] = set()
        answered: set[TopicPartition] = set()
        for result in results:
            for topic in result["topics"]:
                for part in topic["partitions"]:
                    tp = (topic["name"], part["partition_index"])
                    answered.add(tp)
                    code = ErrorCode(part["error_code"])
                    if code == ErrorCode.NONE:
                        self.coordinator.marker_written(job, tp)
                    elif code in _FENCED:
                        log.info("%s-%d fenced the markers of %s", *tp, job.transactional_id)
                        self.coordinator.marker_written(job, tp)
                    else:
                        if code not in _RETRIABLE:
                            log.warning(
                                "%s-%d refused the marker of %s: %s",
                                *tp,
                                job.transactional_id,
                                code.name,
                            )
                        retry.add(tp)
        return retry | (set(partitions) - answered)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _marker(job: MarkerJob, partitions: list[TopicPartition]) -> Message:
    topics: dict[str, list[int]] = defaultdict(list)
    for topic, index in sorted(partitions):
        topics[topic].append(index)
    return {
        "producer_id": job.producer_id,
        "producer_epoch": job.producer_epoch,
        "transaction_result": job.committed,
        "topics": [{"name": t, "partition_indexes": p} for t, p in topics.items()],
        "coordinator_epoch": job.coordinator_epoch,
    }
