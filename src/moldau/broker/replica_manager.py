"""The partitions this broker hosts (Kafka's ReplicaManager).

On a single node, which partitions a broker hosts follows from its own
metadata: those whose replica list names it. This module opens them at start
(and judges which partition dirs on disk are a crash's leftovers), hosts the
ones a topic admin request creates, stops and deletes them when their topic
goes, and answers "which partition do I lead" for the data-plane handlers.

In cluster mode the controller decides: ``become_leader_or_follower`` applies
a LeaderAndIsr request (open or create the log, lead or follow at the given
leader epoch) and ``stop_replicas`` a StopReplica. A partition changes only
for a newer leader epoch, so a late or repeated request changes nothing.

Every hosted partition calls ``on_change`` after an append or a move of its
high watermark, and so does stopping one or a change of its leader, so that
fetches and acks=all produces waiting on it (the purgatory) wake;
``leadership_listeners`` hear of every partition that starts or stops
leading here (the group coordinator loads and unloads its groups).

A follower replicates through ``fetchers`` (``replica_fetcher.py``):
becoming a follower adds the partition to the fetcher of its leader (the
leader's inter-broker endpoint from the LeaderAndIsr request's live
leaders, else from the metadata cache); leading or stopping removes it. A
leader's high watermark moves with its followers' fetches
(``record_follower_fetch``), and its ISR changes go to the controller
through ``isr_updates`` (``isr_updates.py``). ``close`` stops both.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..cluster.metadata import MetadataStore, TopicInfo
from ..log.config import LogConfig
from ..log.manager import ZERO_UUID, LogManager
from ..log.partition_log import PartitionLog
from ..protocol.errors import ErrorCode, KafkaError
from ..replication.partition import Partition
from ..replication.quota import ReplicationQuotas
from .capacity import warn_if_files_short
from .config import BrokerConfig
from .fetch_sessions import FetchSessionCache
from .purgatory import TopicPartition
from .topic_config import log_config

if TYPE_CHECKING:  # a single node loads no controller or replication code
    from ..cluster.controller.commands import LeaderAndIsr, PartitionLeadership, StopReplica
    from ..cluster.controller.context import LiveBroker
    from .isr_updates import IsrUpdater
    from .replica_fetcher import LeaderEndpoint, ReplicaFetcherManager

log = logging.getLogger(__name__)


class ReplicaManager:
    """Hosted partitions by (topic, index), led or followed, and the fetchers."""

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
        #: Followers fetch from their leaders, and ask the controller, on it.
        self._inter_broker = config.inter_broker_listener
        self.partitions: dict[TopicPartition, Partition] = {}
        #: Called with a partition that started or stopped leading here
        #: (``is_leader`` says which; a stopped one is no longer hosted).
        self.leadership_listeners: list[Callable[[Partition], None]] = []
        #: This broker's epoch (its registration's czxid; cluster mode sets it).
        self.broker_epoch: Callable[[], int] = lambda: -1
        # The replica fetchers and ISR updates exist in cluster mode only:
        # made on first use, so a single node never loads their modules.
        self._fetchers: ReplicaFetcherManager | None = None
        self._isr_updates: IsrUpdater | None = None
        #: Followers' incremental fetch sessions (KIP-227, ``fetch_sessions.py``).
        self.fetch_sessions = FetchSessionCache(
            int(config.get("max.incremental.fetch.session.cache.slots"))
        )
        #: The replication throttles (their rates: ``dynamic_config.py``).
        self.quotas = ReplicationQuotas.create(
            broker_id,
            lambda topic: getattr(metadata.topic(topic), "configs", None),
            lambda: int(time.monotonic() * 1000),
            int(config.get("replication.quota.window.num")),
            int(config.get("replication.quota.window.size.seconds")) * 1000,
        )

    @property
    def fetchers(self) -> ReplicaFetcherManager:
        """The replica fetchers (cluster mode), made on first use."""
        if self._fetchers is None:
            from ..replication.fetch_state import FetchLimits
            from .replica_fetcher import ReplicaFetcherManager

            config = self.config
            self._fetchers = ReplicaFetcherManager(
                self.broker_id,
                self.partitions.get,
                FetchLimits(
                    max_wait_ms=int(config.get("replica.fetch.wait.max.ms")),
                    min_bytes=int(config.get("replica.fetch.min.bytes")),
                    partition_max_bytes=int(config.get("replica.fetch.max.bytes")),
                    max_bytes=int(config.get("replica.fetch.response.max.bytes")),
                ),
                backoff_ms=int(config.get("replica.fetch.backoff.ms")),
                request_timeout_ms=int(config.get("replica.socket.timeout.ms")),
                quota=self.quotas.follower,
            )
        return self._fetchers

    @property
    def isr_updates(self) -> IsrUpdater:
        """The leader's ISR changes through the controller (cluster mode),
        made on first use."""
        if self._isr_updates is None:
            from .isr_updates import IsrUpdater

            self._isr_updates = IsrUpdater(
                self.broker_id,
                self._led_with_followers,
                self._controller_endpoint,
                lambda: self.broker_epoch(),
                _now_ms,
                max_lag_ms=int(self.config.get("replica.lag.time.max.ms")),
                request_timeout_ms=int(self.config.get("controller.socket.timeout.ms")),
            )
        return self._isr_updates

    def _unfollow(self, tp: TopicPartition) -> None:
        if self._fetchers is not None:
            self._fetchers.unfollow(tp)

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
        partition = self._new_partition(info.name, index, info.topic_id, replicas, partition_log)
        # A single node leads at the epoch its log last saw (0 when new): a
        # lower epoch would prune the log's epoch history (Kafka's rule).
        epoch = max(0, partition_log.leader_epochs.latest_epoch)
        partition.become_leader(epoch=epoch, isr=[self.broker_id])
        self.partitions[(info.name, index)] = partition
        self._leadership_changed(partition)
        return partition

    def _new_partition(
        self,
        topic: str,
        index: int,
        topic_id: uuid.UUID,
        replicas: list[int],
        partition_log: PartitionLog,
    ) -> Partition:
        return Partition(
            topic=topic,
            index=index,
            topic_id=topic_id,
            log=partition_log,
            broker_id=self.broker_id,
            replicas=list(replicas),
            on_append=self._appended,
        )

    def _leadership_changed(self, partition: Partition) -> None:
        for listener in self.leadership_listeners:
            try:
                listener(partition)
            except Exception:
                log.exception(
                    "a listener failed on the leadership of %s-%d", partition.topic, partition.index
                )

    # -- cluster mode: the controller's requests ------------------------------

    def become_leader_or_follower(
        self, request: LeaderAndIsr, configs: dict[str, LogConfig]
    ) -> dict[TopicPartition, ErrorCode]:
        """Apply a LeaderAndIsr request (Kafka: becomeLeaderOrFollower): per
        partition the error, NONE where it now leads or follows as asked.
        ``configs`` are the log configs of the request's topics."""
        errors: dict[TopicPartition, ErrorCode] = {}
        leaders = {broker.broker_id: broker for broker in request.leaders}
        for state in request.partitions:
            tp = (state.topic, state.partition)
            if self.broker_id not in state.replicas:
                errors[tp] = ErrorCode.NONE
                continue
            try:
                errors[tp] = self._apply_leadership(state, configs[state.topic], leaders)
            except OSError as exc:
                log.error("could not open the log of %s-%d: %s", state.topic, state.partition, exc)
                errors[tp] = ErrorCode.KAFKA_STORAGE_ERROR
        warn_if_files_short()
        return errors

    def _apply_leadership(
        self, state: PartitionLeadership, config: LogConfig, leaders: Mapping[int, LiveBroker]
    ) -> ErrorCode:
        tp = (state.topic, state.partition)
        partition = self.partitions.get(tp)
        if partition is not None and state.leader_epoch <= partition.leader_epoch:
            # Kafka: an epoch not above the current one is a stale request.
            log.info(
                "ignored leadership of %s-%d at epoch %d: it is at epoch %d",
                state.topic,
                state.partition,
                state.leader_epoch,
                partition.leader_epoch,
            )
            return ErrorCode.STALE_CONTROLLER_EPOCH
        if partition is None:
            topic_id = state.topic_id or ZERO_UUID
            partition_log = self.logs.get(state.topic, state.partition)
            if partition_log is not None and partition_log.topic_id not in (topic_id, ZERO_UUID):
                log.warning(
                    "deleting the log of %s-%d: it belongs to an older topic of that name",
                    state.topic,
                    state.partition,
                )
                self.logs.delete(state.topic, state.partition)
            partition_log = self.logs.create(state.topic, state.partition, topic_id, config)
            partition = self._new_partition(
                state.topic, state.partition, topic_id, list(state.replicas), partition_log
            )
            self.partitions[tp] = partition
        partition.replicas = list(state.replicas)
        was_leader = partition.is_leader
        partition.partition_epoch = state.partition_epoch
        if state.leader == self.broker_id:
            self._unfollow(tp)
            partition.become_leader(epoch=state.leader_epoch, isr=list(state.isr), now_ms=_now_ms())
            if len(partition.replicas) > 1:
                self.isr_updates.start()
        else:
            partition.become_follower(state.leader, state.leader_epoch)
            self._fetch_from(tp, state.leader, state.leader_epoch, leaders)
        log.debug(
            "%s-%d: %s at epoch %d, ISR %s",
            state.topic,
            state.partition,
            "leading" if partition.is_leader else f"following {state.leader}",
            state.leader_epoch,
            list(state.isr),
        )
        if was_leader or partition.is_leader:
            self._leadership_changed(partition)
        self._on_change(tp)
        return ErrorCode.NONE

    def _fetch_from(
        self, tp: TopicPartition, leader_id: int, epoch: int, leaders: Mapping[int, LiveBroker]
    ) -> None:
        """Fetch ``tp`` from ``leader_id``'s inter-broker endpoint; with no
        leader (-1) or no known endpoint, fetch nothing until the next
        LeaderAndIsr names one."""
        endpoint = self._endpoint(leader_id, leaders)
        if endpoint is None:
            if leader_id >= 0:
                log.warning("%s-%d: no endpoint for its leader %d", tp[0], tp[1], leader_id)
            self._unfollow(tp)
            return
        self.fetchers.follow(tp, endpoint, epoch)

    def _endpoint(self, broker_id: int, leaders: Mapping[int, LiveBroker]) -> LeaderEndpoint | None:
        from .replica_fetcher import LeaderEndpoint

        # LeaderAndIsr's live leaders carry the inter-broker endpoint only,
        # without its listener name (decoded as "").
        listener = self.config.inter_broker_listener
        live = leaders.get(broker_id)
        if live is not None:
            for endpoint in live.endpoints:
                if endpoint.listener in (listener, ""):
                    return LeaderEndpoint(broker_id, endpoint.host, endpoint.port)
        info = self.metadata.broker(broker_id, self._inter_broker) if broker_id >= 0 else None
        return None if info is None else LeaderEndpoint(broker_id, info.host, info.port)

    def _led_with_followers(self) -> list[Partition]:
        return [p for p in self.partitions.values() if p.is_leader and p.followers]

    def _controller_endpoint(self) -> LeaderEndpoint | None:
        from .replica_fetcher import LeaderEndpoint

        controller_id = self.metadata.controller_id()
        if controller_id < 0:
            return None
        info = self.metadata.broker(controller_id, self._inter_broker)
        return None if info is None else LeaderEndpoint(controller_id, info.host, info.port)

    # -- followers' fetches ----------------------------------------------------------

    def record_follower_fetch(
        self, partition: Partition, replica_id: int, fetch_offset: int, leader_end: int
    ) -> None:
        """A follower fetched ``partition`` from ``fetch_offset`` while the
        log ended at ``leader_end``: record it (the high watermark may move)
        and, in cluster mode, ask the controller to take a follower that has
        caught up back into the ISR."""
        partition.update_follower_fetch(replica_id, fetch_offset, leader_end, _now_ms())
        if self.config.cluster_mode:
            expanded = partition.isr_expand(replica_id)
            if expanded is not None:
                self.isr_updates.propose(partition, expanded)

    async def close(self) -> None:
        """Stop the replica fetchers and the ISR updates, and wait for them."""
        if self._fetchers is not None:
            await self._fetchers.close()
        if self._isr_updates is not None:
            await self._isr_updates.close()

    def stop_replicas(self, request: StopReplica) -> dict[TopicPartition, ErrorCode]:
        """Apply a StopReplica request: stop hosting, and with ``delete``
        remove the log. A partition this broker does not host is stopped
        already."""
        errors: dict[TopicPartition, ErrorCode] = {}
        for stop in request.partitions:
            tp = (stop.topic, stop.partition)
            partition = self.partitions.get(tp)
            if partition is not None and 0 <= stop.leader_epoch < partition.leader_epoch:
                errors[tp] = ErrorCode.FENCED_LEADER_EPOCH
                continue
            if stop.delete:
                errors[tp] = self._delete(stop.topic, stop.partition)
            else:
                self._stop(stop.topic, stop.partition)
                errors[tp] = ErrorCode.NONE
        return errors

    def _stop(self, topic: str, index: int) -> Partition | None:
        self._unfollow((topic, index))
        partition = self.partitions.pop((topic, index), None)
        if partition is not None:
            partition.leader_id = -1
            self._leadership_changed(partition)
            self._on_change((topic, index))
        return partition

    def _delete(self, topic: str, index: int) -> ErrorCode:
        self._stop(topic, index)
        try:
            self.logs.delete(topic, index)
        except OSError as exc:
            log.error("could not remove the log of %s-%d: %s", topic, index, exc)
            return ErrorCode.KAFKA_STORAGE_ERROR
        return ErrorCode.NONE

    def _appended(self, partition: Partition) -> None:
        self._on_change((partition.topic, partition.index))

    def stop_and_delete(self, topic: str, index: int) -> None:
        """Stop hosting a partition and remove its log (Kafka's StopReplica
        with delete). A log that cannot be removed now is removed at the
        next start, since the metadata no longer names it."""
        if self._stop(topic, index) is None:
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


def _now_ms() -> int:
    """Wall-clock milliseconds: when a new leader counts its ISR caught up."""
    return int(time.time() * 1000)
