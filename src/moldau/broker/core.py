"""The broker's shared state: metadata, logs, hosted partitions, waiters.

Request handlers are thin adapters over this object. It owns the decisions
that several APIs share: creating a topic (CreateTopics and auto-creation
through Metadata and Produce), placing replicas, and waking fetches that wait
for data.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..cluster.metadata import BrokerInfo, MetadataStore, TopicInfo
from ..log.manager import ZERO_UUID, LogManager
from ..protocol.errors import ErrorCode, KafkaError
from ..replication.partition import Partition
from .config import BrokerConfig
from .topic_config import InvalidTopicConfig, log_config, validate_topic_configs

if TYPE_CHECKING:
    from .groups import GroupService

log = logging.getLogger(__name__)

_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME = 249
#: Producer ids are reserved from the metadata store this many at a time, so
#: that InitProducerId rarely writes metadata.
PRODUCER_ID_BLOCK = 1000

TopicPartition = tuple[str, int]


def check_topic_name(name: str) -> None:
    """Kafka's topic name rules; raises INVALID_TOPIC_EXCEPTION."""
    if not name or name in (".", ".."):
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"Topic name {name!r} is illegal")
    if len(name) > MAX_TOPIC_NAME:
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name is longer than {MAX_TOPIC_NAME} characters",
        )
    if not _LEGAL_TOPIC.match(name):
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name {name!r} contains characters other than ASCII alphanumerics, '.', "
            "'_' and '-'",
        )


class BrokerCore:
    """Everything a request handler may need, owned by one broker."""

    def __init__(
        self,
        config: BrokerConfig,
        metadata: MetadataStore,
        logs: LogManager,
        advertised: BrokerInfo,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.logs = logs
        self.advertised = advertised
        self.broker_id = config.broker_id
        self.clock = clock
        self.partitions: dict[TopicPartition, Partition] = {}
        #: Fetches waiting for data, per partition: insertion-ordered sets (a
        #: dict's keys), so registering, forgetting and waking are O(1) each.
        self._waiters: dict[TopicPartition, dict[asyncio.Future[None], None]] = {}
        #: The unused rest of this broker's block of producer ids: [next, end).
        self._producer_ids: list[int] | None = None
        #: The consumer group coordinator's shell, set by the server at start.
        self.groups: GroupService | None = None

    # -- startup ------------------------------------------------------------

    def open_partitions(self) -> None:
        """Host every partition the metadata assigns to this broker."""
        for info in self.metadata.topics().values():
            for index, replicas in enumerate(info.replicas):
                if self.broker_id in replicas:
                    self._host(info, index, replicas)

    def _host(self, info: TopicInfo, index: int, replicas: list[int]) -> Partition:
        partition_log = self.logs.get(info.name, index)
        if partition_log is not None and partition_log.topic_id not in (info.topic_id, ZERO_UUID):
            # Left by a deletion a crash interrupted: an older topic's records.
            log.warning("deleting stale log of %s-%d (another topic id)", info.name, index)
            self.logs.delete(info.name, index)
        # A log loaded from disk runs with the broker's defaults until create()
        # gives it the topic's own configs (compaction, retention, limits...).
        partition_log = self.logs.create(
            info.name, index, info.topic_id, log_config(info.configs, self.config)
        )
        partition = Partition(
            topic=info.name,
            index=index,
            topic_id=info.topic_id,
            log=partition_log,
            broker_id=self.broker_id,
            replicas=list(replicas),
            on_append=self._wake,
        )
        partition.become_leader(epoch=0, isr=[self.broker_id])
        self.partitions[(info.name, index)] = partition
        return partition

    # -- topics -------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: dict[str, str | None],
        *,
        assignments: list[list[int]] | None = None,
        validate_only: bool = False,
        internal: bool = False,
    ) -> TopicInfo:
        """Create a topic or raise KafkaError with the reason."""
        check_topic_name(name)
        if self.metadata.topic(name) is not None:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if num_partitions == -1:
            num_partitions = int(self.config.get("num.partitions"))
        if replication_factor == -1:
            replication_factor = int(self.config.get("default.replication.factor"))
        if assignments:
            replicas = [list(a) for a in assignments]
        else:
            if num_partitions < 1:
                raise KafkaError(
                    ErrorCode.INVALID_PARTITIONS, "Number of partitions must be larger than 0."
                )
            if replication_factor < 1:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICATION_FACTOR,
                    "Replication factor must be larger than 0.",
                )
            replicas = self.assign_replicas(num_partitions, replication_factor)
        try:
            checked = validate_topic_configs(configs)
        except InvalidTopicConfig as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from None
        info = TopicInfo(name, uuid.uuid4(), replicas, checked, internal=internal)
        if validate_only:
            return info
        self.metadata.create_topic(info)
        for index, partition_replicas in enumerate(replicas):
            if self.broker_id in partition_replicas:
                self._host(info, index, partition_replicas)
        log.info("created topic %s with %d partitions", name, len(replicas))
        return info

    def assign_replicas(self, num_partitions: int, replication_factor: int) -> list[list[int]]:
        """Spread partitions and their leaders evenly over the live brokers."""
        brokers = sorted(b.node_id for b in self.metadata.brokers())
        if replication_factor > len(brokers):
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Replication factor: {replication_factor} larger than available brokers: "
                f"{len(brokers)}.",
            )
        start = len(self.metadata.topics())
        return [
            [brokers[(start + p + r) % len(brokers)] for r in range(replication_factor)]
            for p in range(num_partitions)
        ]

    def auto_create(self, name: str) -> TopicInfo | None:
        """Create a topic on first use when auto.create.topics.enable allows it."""
        if not self.config.get("auto.create.topics.enable"):
            return None
        try:
            return self.create_topic(name, -1, -1, {})
        except KafkaError as exc:
            if exc.code == ErrorCode.TOPIC_ALREADY_EXISTS:
                return self.metadata.topic(name)
            raise

    def delete_topic(self, name: str) -> None:
        info = self.metadata.topic(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if not self.config.get("delete.topic.enable"):
            raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED)
        self.metadata.delete_topic(name)
        if self.groups is not None:
            self.groups.topic_deleted(name)
        for index in range(info.partition_count):
            partition = self.partitions.pop((name, index), None)
            if partition is not None:
                self.logs.delete(name, index)
                self._wake(partition)
        log.info("deleted topic %s", name)

    def create_partitions(
        self, name: str, count: int, assignments: list[list[int]] | None, validate_only: bool
    ) -> None:
        info = self.metadata.topic(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' not found")
        current = info.partition_count
        if count <= current:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                f"Topic currently has {current} partitions, which is higher than or equal to "
                f"the requested {count}.",
            )
        replication = len(info.replicas[0]) if info.replicas else 1
        added = (
            [list(a) for a in assignments]
            if assignments
            else self.assign_replicas(count - current, replication)
        )
        if len(added) != count - current:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"Increasing the number of partitions by {count - current} but "
                f"{len(added)} assignments provided.",
            )
        if validate_only:
            return
        self.metadata.add_partitions(name, added)
        for offset, replicas in enumerate(added):
            if self.broker_id in replicas:
                self._host(info, current + offset, replicas)

    def alter_topic_configs(
        self, name: str, configs: dict[str, str | None], validate_only: bool
    ) -> None:
        """Replace a topic's configs; hosted logs use them from the next call on."""
        info = self.metadata.topic(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' not found")
        try:
            checked = validate_topic_configs(configs)
            new_log_config = log_config(checked, self.config)
        except InvalidTopicConfig as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from None
        if validate_only:
            return
        self.metadata.set_topic_configs(name, checked)
        for index in range(info.partition_count):
            partition = self.partitions.get((name, index))
            if partition is not None:
                partition.log.config = new_log_config
        log.info("topic %s configs now %s", name, checked)

    def new_producer_id(self) -> int:
        """A producer id no other producer of this cluster has had."""
        if self._producer_ids is None or self._producer_ids[0] >= self._producer_ids[1]:
            first = self.metadata.allocate_producer_ids(PRODUCER_ID_BLOCK)
            self._producer_ids = [first, first + PRODUCER_ID_BLOCK]
        producer_id = self._producer_ids[0]
        self._producer_ids[0] += 1
        return producer_id

    # -- partitions ---------------------------------------------------------

    def leader_partition(self, topic: str, index: int) -> Partition:
        """The partition this broker leads, or KafkaError saying why not."""
        partition = self.partitions.get((topic, index))
        if partition is None:
            info = self.metadata.topic(topic)
            if info is None or index >= info.partition_count or index < 0:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if not partition.is_leader:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        return partition

    # -- waiting for data ---------------------------------------------------

    def waiter(self, keys: list[TopicPartition]) -> asyncio.Future[None]:
        """A future resolved on the next append to any of ``keys``.

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

    def _wake(self, partition: Partition) -> None:
        waiting = self._waiters.pop((partition.topic, partition.index), None)
        if not waiting:
            return
        for future in waiting:
            if not future.done():
                future.set_result(None)
