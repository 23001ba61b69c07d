"""Topic admin in cluster mode: requests write ZooKeeper, the controller acts.

Any broker takes CreateTopics, DeleteTopics, CreatePartitions and the
configs APIs, as in Kafka's ZooKeeper mode (AdminZkClient):

- CreateTopics writes the topic's config and then its replica assignment
  (/config/topics/T, /brokers/topics/T); the controller sees the new topic,
  elects leaders and tells the brokers, which create the logs;
- DeleteTopics writes /admin/delete_topics/T; the controller stops and
  deletes the replicas (on a broker that is down, when it returns);
- CreatePartitions rewrites the assignment with the new partitions
  (conditionally on its znode version, see ``ZkStore.set_topic_assignment``);
- AlterConfigs writes /config/topics/T and a change notification, which
  every broker follows.

A request answers once its change is visible in this broker's metadata
cache (every partition with a leader; the topic gone), or REQUEST_TIMED_OUT
after the request's ``timeout_ms``, as Kafka's DelayedCreatePartitions and
DelayedDeleteTopics do; a timeout of 0 answers at once. The checks are the
single node's (``topic_rules.py``), over the live brokers of the cache.

Topics the broker creates itself (auto-creation on Metadata, the offsets and
history topics) are written in the background, and the caller is told to
ask again: Metadata answers LEADER_NOT_AVAILABLE meanwhile, as Kafka does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from kazoo.exceptions import KazooException

from ..cluster.metadata import TopicInfo
from ..cluster.metadata_cache import MetadataCache
from ..cluster.zk import paths as zp
from ..cluster.zk.store import StaleVersion, TopicExists, ZkStore
from ..log.manager import LogManager
from ..protocol.errors import ErrorCode, KafkaError
from . import metadata_wait
from .config import BrokerConfig
from .internal_topics import is_internal_topic
from .replica_manager import ReplicaManager
from .topic_rules import TopicRules

log = logging.getLogger(__name__)


class ClusterTopicAdmin:
    """Topic admin through ZooKeeper (``TopicAdminApi``)."""

    def __init__(
        self,
        config: BrokerConfig,
        cache: MetadataCache,
        logs: LogManager,
        replicas: ReplicaManager,
        store: ZkStore,
    ) -> None:
        self.config = config
        self.cache = cache
        self.replicas = replicas
        self.store = store
        self.rules = TopicRules(config, cache, logs, replicas)
        self.internal_creators: dict[str, Callable[[], None]] = {}
        self.deletion_listeners: list[Callable[[str], None]] = []
        cache.deletion_listeners.append(self._deleted)
        self._background: dict[str, asyncio.Task[None]] = {}

    # -- waiting for the controller ----------------------------------------

    async def _visible(self, done: Callable[[], bool], timeout_ms: int, what: str) -> None:
        """Return once ``done()`` holds in the cache; REQUEST_TIMED_OUT after
        ``timeout_ms`` (0: do not wait)."""
        if timeout_ms <= 0 or await metadata_wait.shown(self.cache, done, timeout_ms):
            return
        raise KafkaError(
            ErrorCode.REQUEST_TIMED_OUT,
            f"{what}: written to ZooKeeper, not yet visible after {timeout_ms} ms",
        )

    def _led(self, name: str, count: int) -> bool:
        """The topic has ``count`` partitions here, each with a leader."""
        info = self.cache.topic(name)
        if info is None or info.partition_count < count:
            return False
        return all(
            (view := self.cache.partition(name, index)) is not None and view.leader >= 0
            for index in range(count)
        )

    # -- creation ----------------------------------------------------------

    async def create_topic_request(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: dict[str, str | None],
        assignments: list[tuple[int, list[int]]],
        validate_only: bool,
        timeout_ms: int = 0,
    ) -> TopicInfo:
        info = self.rules.new_topic(
            name, num_partitions, replication_factor, configs, assignments, False
        )
        if validate_only:
            return info
        await self._write_topic(info)
        log.info("created topic %s with %d partitions", name, info.partition_count)
        await self._visible(
            lambda: self._led(name, info.partition_count), timeout_ms, f"topic {name}"
        )
        return info

    async def _write_topic(self, info: TopicInfo) -> None:
        assignment = zp.TopicAssignment(
            info.topic_id,
            {i: zp.ReplicaAssignment(tuple(r)) for i, r in enumerate(info.replicas)},
        )
        self.rules.creating.add(info.name)
        try:
            with _zookeeper(f"create topic {info.name}"):
                await self.store.create_topic(info.name, assignment, info.configs)
        except TopicExists as exc:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, str(exc)) from None
        finally:
            self.rules.creating.discard(info.name)

    def auto_create(self, name: str) -> TopicInfo | None:
        """Start creating a topic on first use; LEADER_NOT_AVAILABLE meanwhile."""
        creator = self.internal_creators.get(name)
        if creator is not None:
            creator()
            return self.cache.topic(name)
        if is_internal_topic(name) or not self.config.get("auto.create.topics.enable"):
            return None
        found = self.cache.topic(name)
        if found is not None:
            return found
        if name not in self._background:
            info = self.rules.new_topic(name, -1, -1, {}, None, False)
            self._create_in_background(info)
        raise KafkaError(ErrorCode.LEADER_NOT_AVAILABLE, f"topic {name} is being created")

    def create_internal_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> TopicInfo | None:
        found = self.cache.topic(name)
        if found is not None:
            return found
        if name not in self._background:
            info = self.rules.new_topic(
                name, num_partitions, replication_factor, dict(configs), None, True
            )
            self._create_in_background(info)
        return None

    def _create_in_background(self, info: TopicInfo) -> None:
        async def create() -> None:
            try:
                await self._write_topic(info)
                log.info("created topic %s with %d partitions", info.name, info.partition_count)
            except KafkaError as exc:
                if exc.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                    log.warning("could not create topic %s: %s", info.name, exc.message)
            finally:
                self._background.pop(info.name, None)

        self._background[info.name] = asyncio.get_running_loop().create_task(create())

    # -- deletion ----------------------------------------------------------

    async def delete_topic_request(self, name: str, timeout_ms: int = 0) -> None:
        self.rules.deletable(name)
        with _zookeeper(f"delete topic {name}"):
            await self.store.mark_topic_for_deletion(name)
        log.info("marked topic %s for deletion", name)
        await self._visible(
            lambda: self.cache.topic(name) is None, timeout_ms, f"deletion of topic {name}"
        )

    def _deleted(self, name: str) -> None:
        for listener in self.deletion_listeners:
            listener(name)

    # -- more partitions ----------------------------------------------------

    async def create_partitions_request(
        self,
        name: str,
        count: int,
        assignments: list[list[int]] | None,
        validate_only: bool,
        timeout_ms: int = 0,
    ) -> None:
        added = self.rules.new_partitions(name, count, assignments)
        if validate_only:
            return
        with _zookeeper(f"add partitions to {name}"):
            found = await self.store.topic_with_version(name)
            if found is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' not found")
            current, version = found
            first = len(current.partitions)
            partitions = dict(current.partitions)
            for index, replicas in enumerate(added, first):
                partitions[index] = zp.ReplicaAssignment(tuple(replicas))
            try:
                await self.store.set_topic_assignment(
                    name, zp.TopicAssignment(current.topic_id, partitions), version
                )
            except StaleVersion:
                raise KafkaError(
                    ErrorCode.INVALID_PARTITIONS,
                    f"Topic {name} changed while its partitions were being added; try again.",
                ) from None
        log.info("topic %s grows to %d partitions", name, count)
        await self._visible(lambda: self._led(name, count), timeout_ms, f"partitions of {name}")

    # -- configs ------------------------------------------------------------

    async def alter_topic_configs(
        self, name: str, configs: dict[str, str | None], validate_only: bool
    ) -> None:
        """Write the overrides and notify every broker; this one applies them
        at once, so a DescribeConfigs here sees them."""
        info = self.rules.existing(name)
        checked, new_log_config = self.rules.log_config_of(configs)
        if validate_only:
            return
        with _zookeeper(f"alter the configs of {name}"):
            await self.store.set_topic_config(name, checked)
        self.cache.set_configs(name, checked)
        self.replicas.set_log_config(info, new_log_config)
        log.info("topic %s configs now %s", name, checked)


@contextlib.contextmanager
def _zookeeper(what: str) -> Iterator[None]:
    """ZooKeeper unreachable or the session gone: a retriable error to the
    client (REQUEST_TIMED_OUT), and one line in the log."""
    try:
        yield
    except KazooException as exc:
        log.warning("could not %s: ZooKeeper: %r", what, exc)
        raise KafkaError(
            ErrorCode.REQUEST_TIMED_OUT, f"Could not {what}: ZooKeeper is unavailable"
        ) from None
