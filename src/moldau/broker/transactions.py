"""The asyncio shell around the pure transaction coordinator.

The coordinator (``moldau.txn``) decides; this shell gives it what a pure
core lacks, as ``groups.py`` does for groups:

- ``__transaction_state`` (compacted, internal,
  ``transaction.state.log.num.partitions`` partitions, replication factor
  and ``min.insync.replicas`` from ``transaction.state.log.*``; a single
  node caps them at its one broker) through a :class:`CoordinatorLog`:
  created on first use, loaded in slices when this broker becomes leader of
  a partition, unloaded when it stops; writes appended as leader and
  answers released at the high watermark (:meth:`TransactionService.settle`,
  ``request.timeout.ms`` as Kafka's transaction state manager);
- producer ids (reserved ahead, since the core cannot wait for a block);
- a timer that calls ``tick()`` at the next deadline;
- the markers of completing transactions (``txn_markers.py``);
- :meth:`verify_transaction` for the partition leaders' KIP-890 check
  (``txn_verifier.TransactionVerifier``): locally when this broker
  coordinates the id, else AddPartitionsToTxn v4 with verify_only to the
  coordinator.

Handlers call ``service.coordinator`` and then :meth:`settle`, which also
re-arms the timer and hands new marker jobs to the sender.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

from ..cluster.metadata import MetadataStore
from ..protocol.api_keys import ApiKey
from ..protocol.errors import ErrorCode, KafkaError
from ..protocol.messages import Message
from ..replication.partition import Partition
from ..txn.coordinator import InitResult, TxnConfig, TxnCoordinator
from .config import BrokerConfig
from .coordinator_log import CoordinatorLog, DeadlineTimer, TopicSpec
from .internal_topics import TRANSACTION_STATE_TOPIC
from .peer_links import PeerLinks
from .producer_ids import ProducerIdBlocks
from .purgatory import FetchPurgatory
from .replica_manager import ReplicaManager
from .topics import TopicAdminApi
from .txn_markers import LocalMarkerWriter, MarkerSender

log = logging.getLogger(__name__)

#: Kafka's transaction state manager waits ``request.timeout.ms`` (default
#: 30 s) for its writes to be replicated.
STATE_WRITE_TIMEOUT_MS = 30_000
VERIFY_VERSION = 4


class TransactionService:
    """Owns the transaction coordinator, its timer, its topic and its
    marker sender on this broker."""

    def __init__(
        self,
        config: BrokerConfig,
        clock: Callable[[], int],
        metadata: MetadataStore,
        replicas: ReplicaManager,
        topics: TopicAdminApi,
        producer_ids: ProducerIdBlocks,
        purgatory: FetchPurgatory,
        write_local_markers: LocalMarkerWriter,
    ) -> None:
        self.config = config
        self.clock = clock
        self.broker_id = config.broker_id
        self.producer_ids = producer_ids
        self.purgatory = purgatory
        self.num_partitions = int(config.get("transaction.state.log.num.partitions"))
        self._spare_producer_id: int | None = None
        self.coordinator = TxnCoordinator(
            TxnConfig(
                num_partitions=self.num_partitions,
                offsets_num_partitions=int(config.get("offsets.topic.num.partitions")),
                max_timeout_ms=int(config.get("transaction.max.timeout.ms")),
                abort_check_interval_ms=int(
                    config.get("transaction.abort.timed.out.transaction.cleanup.interval.ms")
                ),
                expiration_ms=int(config.get("transactional.id.expiration.ms")),
                expiration_check_interval_ms=int(
                    config.get("transaction.remove.expired.transaction.cleanup.interval.ms")
                ),
            ),
            clock,
            self._persist,
            self._take_producer_id,
            self._coordinator_epoch,
        )
        self.store = CoordinatorLog(
            TopicSpec(
                TRANSACTION_STATE_TOPIC,
                self.num_partitions,
                "transaction.state.log.replication.factor",
                {"segment.bytes": str(config.get("transaction.state.log.segment.bytes"))},
                "transactions",
                min_isr_key="transaction.state.log.min.isr",
            ),
            config,
            clock,
            metadata,
            replicas,
            topics,
            self.coordinator,
            self.after_call,
            STATE_WRITE_TIMEOUT_MS,
        )
        self.links = PeerLinks(f"txn-coordinator-{self.broker_id}", metadata.broker)
        self.markers = MarkerSender(
            self.broker_id, self.coordinator, metadata, self.links, write_local_markers
        )
        self.timer = DeadlineTimer(
            clock, self.coordinator, self.after_call, "transaction coordinator"
        )

    # -- leadership, placement -------------------------------------------------

    def load(self) -> None:
        self.store.load()

    def ensure_topic(self) -> None:
        self.store.ensure_topic()

    def leadership_changed(self, partition: Partition) -> None:
        self.store.leadership_changed(partition)

    def coordinator_for(self, transactional_id: str) -> int:
        """The broker that coordinates ``transactional_id``: the leader of its
        ``__transaction_state`` partition (creating the topic on first use)."""
        return self.store.leader_of(self.coordinator.partition_for(transactional_id))

    def _coordinator_epoch(self, index: int) -> int:
        return self.store.led_epoch(index)

    # -- what the core needs -----------------------------------------------------

    def _persist(self, index: int, key: bytes, value: bytes | None) -> None:
        self.store.append(index, [(key, value)])

    def _take_producer_id(self) -> int:
        """The id reserved by :meth:`init_producer_id` before it called the core."""
        producer_id = self._spare_producer_id
        if producer_id is None:  # cannot happen: the loop ran nothing in between
            raise KafkaError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, "no producer id reserved")
        self._spare_producer_id = None
        return producer_id

    # -- calls -----------------------------------------------------------------------

    async def init_producer_id(
        self, transactional_id: str, timeout_ms: int, expected: tuple[int, int] | None
    ) -> InitResult:
        if self._spare_producer_id is None:
            self._spare_producer_id = await self.producer_ids.new_producer_id()
        result = self.coordinator.init_producer_id(transactional_id, timeout_ms, expected)
        code = await self.settle(transactional_id, result.error)
        return result if code == ErrorCode.NONE else InitResult(code)

    async def settle(self, transactional_id: str, code: ErrorCode) -> ErrorCode:
        """After a call of the coordinator about ``transactional_id``: re-arm
        the timer, start the new marker jobs, and answer ``code`` once the
        id's writes so far are replicated (an error at once)."""
        self.after_call()
        if code != ErrorCode.NONE:
            return code
        return await self._replicated([self.coordinator.partition_for(transactional_id)])

    async def _replicated(self, indexes: list[int]) -> ErrorCode:
        answer = self.store.release(self.purgatory, indexes, lambda code: code)
        if isinstance(answer, ErrorCode):
            return answer
        return await answer

    def after_call(self) -> None:
        """Hand new marker jobs to the sender and re-arm the timer."""
        for job in self.coordinator.take_marker_jobs():
            index = self.coordinator.partition_for(job.transactional_id)
            self.markers.submit(job, functools.partial(self._replicated, [index]))
        self.timer.rearm()

    # -- KIP-890: the partition leaders' check ----------------------------------

    async def verify_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Sequence[tuple[str, int]],
    ) -> dict[tuple[str, int], ErrorCode]:
        """Whether each partition is in the producer's open transaction
        (``txn_verifier.TransactionVerifier``): NONE, or the coordinator's
        error (TRANSACTION_ABORTABLE when it is not; PRODUCER_FENCED,
        INVALID_PRODUCER_ID_MAPPING, CONCURRENT_TRANSACTIONS; NOT_COORDINATOR,
        COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE or
        NETWORK_EXCEPTION while it cannot be asked)."""
        try:
            coordinator = self.coordinator_for(transactional_id)
        except KafkaError as exc:
            return dict.fromkeys(partitions, exc.code)
        if coordinator == self.broker_id:
            local = self.coordinator.verify(
                transactional_id, producer_id, producer_epoch, partitions
            )
            return {tp: _for_produce(code) for tp, code in local.items()}
        topics: dict[str, list[int]] = {}
        for topic, index in partitions:
            topics.setdefault(topic, []).append(index)
        request: Message = {
            "transactions": [
                {
                    "transactional_id": transactional_id,
                    "producer_id": producer_id,
                    "producer_epoch": producer_epoch,
                    "verify_only": True,
                    "topics": [{"name": t, "partitions": p} for t, p in topics.items()],
                }
            ]
        }
        try:
            response = await self.links.request(
                coordinator, ApiKey.ADD_PARTITIONS_TO_TXN, VERIFY_VERSION, request
            )
        except KafkaError as exc:
            return dict.fromkeys(partitions, exc.code)
        top = ErrorCode(response["error_code"])
        if top != ErrorCode.NONE:
            return dict.fromkeys(partitions, top)
        found: dict[tuple[str, int], ErrorCode] = {}
        for result in response["results_by_transaction"]:
            for topic in result["topic_results"]:
                for part in topic["results_by_partition"]:
                    tp = (topic["name"], part["partition_index"])
                    found[tp] = ErrorCode(part["partition_error_code"])
        return {
            tp: _for_produce(found.get(tp, ErrorCode.UNKNOWN_SERVER_ERROR)) for tp in partitions
        }

    async def close(self) -> None:
        self.timer.cancel()
        self.store.close()
        await self.markers.close()
        await self.links.close()


def _for_produce(code: ErrorCode) -> ErrorCode:
    """A partition missing from the transaction is TRANSACTION_ABORTABLE on
    the wire (Kafka 3.8+) and INVALID_TXN_STATE to Produce, as the verifier's
    contract says (what Kafka answers producers that do not know the newer
    error)."""
    return ErrorCode.INVALID_TXN_STATE if code == ErrorCode.TRANSACTION_ABORTABLE else code
