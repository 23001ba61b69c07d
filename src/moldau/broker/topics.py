"""Topic admin of a single node: CreateTopics, DeleteTopics, CreatePartitions,
AlterConfigs, and the auto-creation of topics on first use.

The checks are ``topic_rules.py``'s (shared with cluster mode); this module
keeps the all-or-nothing order of a change (the logs first, then the
metadata, then hosting; undone if anything fails or the request is
cancelled). Creating thousands of partitions takes seconds of fsyncs, so an
admin request runs in slices of the event loop, one admin request at a
time, as Kafka's controller handles one event at a time.

In cluster mode ``cluster_topics.py`` takes its place behind the same
``TopicAdminApi``: there a request writes ZooKeeper, the controller decides,
and brokers host what its LeaderAndIsr requests say.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Generator, Iterator
from typing import Protocol

from ..cluster.metadata import LocalMetadataStore, TopicInfo
from ..log.manager import LogManager
from ..log.partition_log import PartitionLog
from ..protocol.errors import ErrorCode, KafkaError
from .config import BrokerConfig
from .internal_topics import is_internal_topic
from .metadata_saving import saving
from .replica_manager import ReplicaManager
from .topic_config import log_config
from .topic_rules import TopicRules

log = logging.getLogger(__name__)

#: How long a creation of partitions holds the event loop before it lets
#: other requests run (each partition costs a few fsyncs).
CREATION_SLICE_S = 0.02


class TopicAdminApi(Protocol):
    """What the admin handlers and the group service ask of topic admin, in
    either mode (``TopicAdmin`` on a single node, ``ClusterTopicAdmin``)."""

    rules: TopicRules
    internal_creators: dict[str, Callable[[], None]]
    deletion_listeners: list[Callable[[str], None]]

    async def create_topic_request(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: dict[str, str | None],
        assignments: list[tuple[int, list[int]]],
        validate_only: bool,
        timeout_ms: int,
    ) -> TopicInfo: ...

    async def delete_topic_request(self, name: str, timeout_ms: int) -> None: ...

    async def create_partitions_request(
        self,
        name: str,
        count: int,
        assignments: list[list[int]] | None,
        validate_only: bool,
        timeout_ms: int,
    ) -> None: ...

    async def alter_topic_configs(
        self, name: str, configs: dict[str, str | None], validate_only: bool
    ) -> None: ...

    def auto_create(self, name: str) -> TopicInfo | None:
        """The topic, created now if auto-creation allows it; None if it is
        not allowed or (cluster mode) still being created."""
        ...

    def create_internal_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> TopicInfo | None:
        """Create one of the broker's own topics; None while it is being
        created (cluster mode), KafkaError if it cannot be."""
        ...


def _run_now(steps: Iterator[None]) -> None:
    """Run ``steps`` without yielding to the loop (a few partitions)."""
    for _ in steps:
        pass


async def _run_sliced(steps: Generator[None, None, None]) -> None:
    """Run ``steps``, yielding to the loop every ``CREATION_SLICE_S``; if the
    request is cancelled, closing the generator undoes its work."""
    deadline = time.monotonic() + CREATION_SLICE_S
    try:
        for _ in steps:
            if time.monotonic() >= deadline:
                await asyncio.sleep(0)
                deadline = time.monotonic() + CREATION_SLICE_S
    finally:
        steps.close()


class TopicAdmin:
    """Creates, deletes, grows and configures topics on a single node."""

    def __init__(
        self,
        config: BrokerConfig,
        metadata: LocalMetadataStore,
        logs: LogManager,
        replicas: ReplicaManager,
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.logs = logs
        self.replicas = replicas
        self.broker_id = replicas.broker_id
        self.rules = TopicRules(config, metadata, logs, replicas)
        #: Internal topics created on first use by their owner (the group
        #: service creates ``__consumer_offsets`` with its own settings).
        self.internal_creators: dict[str, Callable[[], None]] = {}
        #: Called after a topic's metadata is deleted (committed offsets go).
        self.deletion_listeners: list[Callable[[str], None]] = []
        #: Admin requests that create partitions run one at a time, as Kafka's
        #: controller handles one event at a time; DeleteTopics waits too.
        self._admin_lock = asyncio.Lock()

    # -- creation -----------------------------------------------------------

    def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: dict[str, str | None],
        *,
        internal: bool = False,
    ) -> TopicInfo:
        """Create a topic at once (auto-creation, the broker's own topics:
        a few partitions); raise KafkaError with the reason."""
        info = self.rules.new_topic(
            name, num_partitions, replication_factor, configs, None, internal
        )
        _run_now(self._creation(info, 0, info.replicas, lambda: self.metadata.create_topic(info)))
        log.info("created topic %s with %d partitions", name, info.partition_count)
        return info

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
        """CreateTopics for one topic: its partitions are created in slices
        of the event loop, other requests served in between (thousands of
        partitions take seconds), one admin request at a time. Done when it
        returns, so ``timeout_ms`` has nothing to wait for."""
        async with self._admin_lock:
            info = self.rules.new_topic(
                name, num_partitions, replication_factor, configs, assignments, False
            )
            if validate_only:
                return info
            await _run_sliced(
                self._creation(info, 0, info.replicas, lambda: self.metadata.create_topic(info))
            )
        log.info("created topic %s with %d partitions", name, info.partition_count)
        return info

    def _creation(
        self, info: TopicInfo, first: int, added: list[list[int]], save: Callable[[], None]
    ) -> Generator[None, None, None]:
        """Create the logs of partitions ``first...`` (yielding after each, so
        a caller may let the loop run), then save the metadata, then host
        them. If anything fails, or the caller closes the generator (a
        cancelled request), the logs created here are removed again; a crash
        leaves dirs the next start removes (``ReplicaManager.keeps_log``)."""
        config = log_config(info.configs, self.config)
        created: list[tuple[int, list[int], PartitionLog]] = []
        self.rules.creating.add(info.name)
        try:
            for index, replicas in enumerate(added, first):
                if self.broker_id in replicas:
                    partition_log = self.logs.create(info.name, index, info.topic_id, config)
                    created.append((index, replicas, partition_log))
                    yield
            save()
        except BaseException as exc:
            for index, _, _ in created:
                try:
                    self.logs.delete(info.name, index)
                except OSError as cleanup:
                    log.warning("could not remove %s-%d: %s", info.name, index, cleanup)
            if isinstance(exc, OSError):
                log.error("could not create partitions of %s: %s", info.name, exc)
                raise KafkaError(
                    ErrorCode.KAFKA_STORAGE_ERROR,
                    f"Could not create the partitions of {info.name}: {exc}",
                ) from None
            raise
        finally:
            self.rules.creating.discard(info.name)
        # The configs may have changed while the logs were being created.
        saved = self.metadata.topic(info.name)
        config = log_config(saved.configs if saved else info.configs, self.config)
        for index, replicas, partition_log in created:
            partition_log.config = config
            self.replicas.host(info, index, replicas, partition_log)

    def auto_create(self, name: str) -> TopicInfo | None:
        """Create a topic on first use when auto.create.topics.enable allows it.

        ``__consumer_offsets`` is created as the group coordinator needs it
        (with ``offsets.topic.*``), whatever auto.create.topics.enable says,
        as in Kafka; other internal topics never by a client's request.
        """
        creator = self.internal_creators.get(name)
        if creator is not None:
            creator()
            return self.metadata.topic(name)
        if is_internal_topic(name) or not self.config.get("auto.create.topics.enable"):
            return None
        try:
            return self.create_topic(name, -1, -1, {})
        except KafkaError as exc:
            if exc.code == ErrorCode.TOPIC_ALREADY_EXISTS:
                return self.metadata.topic(name)
            raise

    # -- deletion -----------------------------------------------------------

    def create_internal_topic(
        self, name: str, num_partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> TopicInfo:
        """One of the broker's own topics, created at once."""
        return self.create_topic(
            name, num_partitions, replication_factor, dict(configs), internal=True
        )

    async def delete_topic_request(self, name: str, timeout_ms: int = 0) -> None:
        """DeleteTopics for one topic, after any admin request in progress."""
        async with self._admin_lock:
            self.delete_topic(name)

    def delete_topic(self, name: str) -> None:
        """Delete a topic: the metadata first (all or nothing), then its logs.

        A log that cannot be removed now (or a crash before) is removed at the
        next start, since the metadata no longer names it.
        """
        info = self.rules.deletable(name)
        with saving(f"delete topic {name}"):
            self.metadata.delete_topic(name)
        for listener in self.deletion_listeners:
            listener(name)
        for index in range(info.partition_count):
            self.replicas.stop_and_delete(name, index)
        log.info("deleted topic %s", name)

    # -- more partitions ----------------------------------------------------

    async def create_partitions_request(
        self,
        name: str,
        count: int,
        assignments: list[list[int]] | None,
        validate_only: bool,
        timeout_ms: int = 0,
    ) -> None:
        """CreatePartitions for one topic, as ``create_topic_request``."""
        async with self._admin_lock:
            added = self.rules.new_partitions(name, count, assignments)
            if validate_only:
                return
            info = self.metadata.topic(name)
            assert info is not None
            await _run_sliced(
                self._creation(
                    info,
                    info.partition_count,
                    added,
                    lambda: self.metadata.add_partitions(name, added),
                )
            )

    # -- configs ------------------------------------------------------------

    async def alter_topic_configs(
        self, name: str, configs: dict[str, str | None], validate_only: bool
    ) -> None:
        """Replace a topic's configs; hosted logs use them from the next call on."""
        info = self.rules.existing(name)
        checked, new_log_config = self.rules.log_config_of(configs)
        if validate_only:
            return
        with saving(f"alter the configs of {name}"):
            self.metadata.set_topic_configs(name, checked)
        self.replicas.set_log_config(info, new_log_config)
        log.info("topic %s configs now %s", name, checked)
