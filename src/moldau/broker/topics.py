"""Topic admin: CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs,
and the auto-creation of topics on first use.

The rules that several APIs share live here: topic name checks, internal
topics (clients may not create or delete them), the broker's partition
capacity, and the all-or-nothing order of a change (the logs first, then the
metadata, then hosting; undone if anything fails or the request is
cancelled). Creating thousands of partitions takes seconds of fsyncs, so an
admin request runs in slices of the event loop, one admin request at a
time, as Kafka's controller handles one event at a time.

It is apart from the hosted partitions (``replica_manager.py``) because in
cluster mode the controller will do the metadata half of this and the
brokers only the hosting half.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterator

from ..cluster.metadata import MetadataStore, TopicInfo
from ..log.manager import LogManager
from ..log.partition_log import PartitionLog
from ..protocol.errors import ErrorCode, KafkaError
from .assignment import ReplicaAssigner, check_replica_list
from .capacity import check_request_size, check_room
from .config import BrokerConfig
from .internal_topics import OFFSETS_TOPIC, is_internal_topic
from .metadata_saving import saving
from .replica_manager import ReplicaManager
from .topic_config import InvalidTopicConfig, log_config, validate_topic_configs

log = logging.getLogger(__name__)

_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME = 249

#: How long a creation of partitions holds the event loop before it lets
#: other requests run (each partition costs a few fsyncs).
CREATION_SLICE_S = 0.02


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
    """Creates, deletes, grows and configures topics on this broker."""

    def __init__(
        self,
        config: BrokerConfig,
        metadata: MetadataStore,
        logs: LogManager,
        replicas: ReplicaManager,
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.logs = logs
        self.replicas = replicas
        self.broker_id = replicas.broker_id
        self._assigner = ReplicaAssigner(config, metadata)
        #: Internal topics created on first use by their owner (the group
        #: service creates ``__consumer_offsets`` with its own settings).
        self.internal_creators: dict[str, Callable[[], None]] = {}
        #: Called after a topic's metadata is deleted (committed offsets go).
        self.deletion_listeners: list[Callable[[str], None]] = []
        #: Admin requests that create partitions run one at a time, as Kafka's
        #: controller handles one event at a time; DeleteTopics waits too.
        self._admin_lock = asyncio.Lock()
        #: Topics whose partitions are being created right now.
        self._creating: set[str] = set()

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
        info = self._new_topic(name, num_partitions, replication_factor, configs, None, internal)
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
    ) -> TopicInfo:
        """CreateTopics for one topic: its partitions are created in slices
        of the event loop, other requests served in between (thousands of
        partitions take seconds), one admin request at a time."""
        async with self._admin_lock:
            info = self._new_topic(
                name, num_partitions, replication_factor, configs, assignments, False
            )
            if validate_only:
                return info
            await _run_sliced(
                self._creation(info, 0, info.replicas, lambda: self.metadata.create_topic(info))
            )
        log.info("created topic %s with %d partitions", name, info.partition_count)
        return info

    def _new_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: dict[str, str | None],
        assignments: list[tuple[int, list[int]]] | None,
        internal: bool,
    ) -> TopicInfo:
        """The topic a creation asks for, checked; nothing is written yet.

        ``assignments`` are (partition index, replica list) pairs as the
        request gives them.
        """
        check_topic_name(name)
        if self.metadata.topic(name) is not None or name in self._creating:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if is_internal_topic(name) and not internal:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                f"Creation of internal topic {name} is prohibited: the broker creates it "
                "with its own settings when it is first needed.",
            )
        if assignments:
            if num_partitions != -1 or replication_factor != -1:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST,
                    "A manual partition assignment was specified, but numPartitions and "
                    "replication factor were not set to -1.",
                )
            replicas = self._assigner.manual(assignments)
        else:
            replicas = self._assigner.automatic(
                num_partitions, replication_factor, self.replicas.hosted_count()
            )
        try:
            checked = validate_topic_configs(configs)
        except InvalidTopicConfig as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from None
        self._check_room(name, 0, len(replicas))
        return TopicInfo(name, uuid.uuid4(), replicas, checked, internal=internal)

    def _check_room(self, name: str, first: int, added: int) -> None:
        """Refuse partitions the broker cannot host (see capacity.py) or
        whose directory name the file system cannot hold."""
        # Room for the offsets topic stays free until the first group makes
        # the broker create it: user topics must not make groups impossible.
        reserved = 0
        if name != OFFSETS_TOPIC and self.metadata.topic(OFFSETS_TOPIC) is None:
            reserved = int(self.config.get("offsets.topic.num.partitions"))
        limit = int(self.config.get("max.broker.partitions"))
        check_room(self.replicas.hosted_count(), added, limit, reserved)
        last = first + added - 1
        if not self.logs.dir_name_fits(name, last):
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                f"The directory of partition {last} of topic {name} would have a name longer "
                "than the file system allows.",
            )

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
        self._creating.add(info.name)
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
            self._creating.discard(info.name)
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

    async def delete_topic_request(self, name: str) -> None:
        """DeleteTopics for one topic, after any admin request in progress."""
        async with self._admin_lock:
            self.delete_topic(name)

    def delete_topic(self, name: str) -> None:
        """Delete a topic: the metadata first (all or nothing), then its logs.

        A log that cannot be removed now (or a crash before) is removed at the
        next start, since the metadata no longer names it. Internal topics
        cannot be deleted: Kafka leaves that to ACLs, and moldau has none, so
        it refuses as a denying ACL would (TOPIC_AUTHORIZATION_FAILED).
        """
        info = self.metadata.topic(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if not self.config.get("delete.topic.enable"):
            raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED)
        if is_internal_topic(name):
            raise KafkaError(
                ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                f"Internal topic {name} cannot be deleted.",
            )
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
    ) -> None:
        """CreatePartitions for one topic, as ``create_topic_request``."""
        async with self._admin_lock:
            added = self._new_partitions(name, count, assignments)
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

    def _new_partitions(
        self, name: str, count: int, assignments: list[list[int]] | None
    ) -> list[list[int]]:
        """The replica lists of the partitions that take ``name`` to ``count``
        (``assignments`` None: placed by the broker), checked as Kafka does."""
        info = self.metadata.topic(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' not found")
        if is_internal_topic(name):
            # Groups are placed by offsets.topic.num.partitions: more
            # partitions would only break that. Refused as delete_topic does.
            raise KafkaError(
                ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                f"Partitions cannot be added to internal topic {name}.",
            )
        current = info.partition_count
        if count == current:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partition(s)."
            )
        if count < current:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                f"The topic {name} currently has {current} partition(s); {count} would not "
                "be an increase.",
            )
        additional = count - current
        check_request_size(additional)
        replication = len(info.replicas[0]) if info.replicas else 1
        if assignments is None:
            added = self._assigner.assign(additional, replication, self.replicas.hosted_count())
        else:
            if len(assignments) != additional:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Attempted to add {additional} additional partition(s), but only "
                    f"{len(assignments)} assignment(s) were specified.",
                )
            brokers = self._assigner.broker_ids()
            for replicas in assignments:
                check_replica_list(replicas, brokers, replication)
            added = [list(a) for a in assignments]
        self._check_room(name, current, additional)
        return added

    # -- configs ------------------------------------------------------------

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
        with saving(f"alter the configs of {name}"):
            self.metadata.set_topic_configs(name, checked)
        self.replicas.set_log_config(info, new_log_config)
        log.info("topic %s configs now %s", name, checked)
