"""The partitions this broker hosts (Kafka's ReplicaManager, single node).

Which partitions a broker hosts follows from the metadata: those whose
replica list names it. This module opens them at start (and judges which
partition dirs on disk are a crash's leftovers), hosts the ones a topic
admin request creates, stops and deletes them when their topic goes, and
answers "which partition do I lead" for the data-plane handlers. Keeping
that apart from topic admin is what cluster mode needs: there the
controller's LeaderAndIsr / StopReplica requests, not this broker's own
admin requests, decide what is hosted, and this class is what they drive.

Every hosted partition calls ``on_change`` after an append, and so does
stopping one, so that fetches waiting on it (the purgatory) wake.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from ..cluster.metadata import MetadataStore, TopicInfo
from ..log.config import LogConfig
from ..log.manager import ZERO_UUID, LogManager
from ..log.partition_log import PartitionLog
from ..protocol.errors import ErrorCode, KafkaError
from ..replication.partition import Partition
from .capacity import warn_if_files_short
from .config import BrokerConfig
from .purgatory import TopicPartition
from .topic_config import log_config

log = logging.getLogger(__name__)


class ReplicaManager:
    """Hosted partitions by (topic, index); this broker leads each today."""

    def __init__(
        self,
        broker_id: int,
        config: BrokerConfig,
        metadata: MetadataStore,
        logs: LogManager,
        on_change: Callable[[TopicPartition], None],
    ) -> None:
        self.broker_id = broker_id
        self.config = config
        self.metadata = metadata
        self.logs = logs
        self._on_change = on_change
        self.partitions: dict[TopicPartition, Partition] = {}

    # -- startup ------------------------------------------------------------

    def keeps_log(self, topic: str, index: int, topic_id: uuid.UUID) -> bool:
        """Whether a partition dir found at startup belongs to the metadata:
        one a crash left behind (an interrupted DeleteTopics, a creation
        whose metadata was never saved) does not, and is removed."""
        info = self.metadata.topic(topic)
        return (
            info is not None
            and 0 <= index < info.partition_count
            and self.broker_id in info.replicas[index]
            and topic_id in (info.topic_id, ZERO_UUID)
        )

    def open_partitions(self) -> None:
        """Host every partition the metadata assigns to this broker."""
        for info in self.metadata.topics().values():
            config = log_config(info.configs, self.config)
            for index, replicas in enumerate(info.replicas):
                if self.broker_id not in replicas:
                    continue
                partition_log = self.logs.get(info.name, index)
                if partition_log is not None and partition_log.topic_id not in (
                    info.topic_id,
                    ZERO_UUID,
                ):
                    # A log dir loaded without the metadata's check.
                    log.warning("deleting stale log of %s-%d (another topic id)", info.name, index)
                    self.logs.delete(info.name, index)
                # A log loaded from disk runs with the broker's defaults until
                # create() gives it the topic's own configs.
                partition_log = self.logs.create(info.name, index, info.topic_id, config)
                self.host(info, index, replicas, partition_log)
        warn_if_files_short()

    # -- hosting ------------------------------------------------------------

    def host(
        self, info: TopicInfo, index: int, replicas: list[int], partition_log: PartitionLog
    ) -> Partition:
        """Host ``partition_log`` as partition ``index`` of ``info``, as its leader."""
        partition = Partition(
            topic=info.name,
            index=index,
            topic_id=info.topic_id,
            log=partition_log,
            broker_id=self.broker_id,
            replicas=list(replicas),
            on_append=self._appended,
        )
        partition.become_leader(epoch=0, isr=[self.broker_id])
        self.partitions[(info.name, index)] = partition
        return partition

    def _appended(self, partition: Partition) -> None:
        self._on_change((partition.topic, partition.index))

    def stop_and_delete(self, topic: str, index: int) -> None:
        """Stop hosting a partition and remove its log (Kafka's StopReplica
        with delete). A log that cannot be removed now is removed at the
        next start, since the metadata no longer names it."""
        partition = self.partitions.pop((topic, index), None)
        if partition is None:
            return
        try:
            self.logs.delete(topic, index)
        except OSError as exc:
            log.error(
                "could not remove the log of %s-%d, left for the next start: %s",
                topic,
                index,
                exc,
            )
        self._on_change((topic, index))

    def set_log_config(self, info: TopicInfo, config: LogConfig) -> None:
        """Hosted logs of ``info`` use ``config`` from their next call on."""
        for index in range(info.partition_count):
            partition = self.partitions.get((info.name, index))
            if partition is not None:
                partition.log.config = config

    # -- lookups ------------------------------------------------------------

    def get(self, topic: str, index: int) -> Partition | None:
        """The hosted partition, leader or not, or None."""
        return self.partitions.get((topic, index))

    def hosted_count(self) -> int:
        return len(self.partitions)

    def leader_partition(self, topic: str, index: int, current_leader_epoch: int = -1) -> Partition:
        """The partition this broker leads, or KafkaError saying why not.

        ``current_leader_epoch`` (-1: none) is checked first, as Kafka's
        ``Partition.getLocalLog`` does (``Partition.check_leader_epoch``)."""
        partition = self.partitions.get((topic, index))
        if partition is None:
            info = self.metadata.topic(topic)
            if info is None or index >= info.partition_count or index < 0:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        partition.check_leader_epoch(current_leader_epoch)
        if not partition.is_leader:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        return partition
