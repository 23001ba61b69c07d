"""The broker's shared state: metadata, logs, hosted partitions, waiters.

Request handlers are thin adapters over this object. It owns the decisions
that several APIs share: creating a topic (CreateTopics and auto-creation
through Metadata and Produce), placing replicas, and waking fetches that wait
for data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING

from ..cluster.metadata import BrokerInfo, MetadataStore, TopicInfo
from ..group.history import HISTORY_TOPIC
from ..log.manager import ZERO_UUID, LogManager
from ..log.partition_log import PartitionLog
from ..protocol.errors import ErrorCode, KafkaError
from ..replication.partition import Partition
from .capacity import check_request_size, check_room, warn_if_files_short
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

OFFSETS_TOPIC = "__consumer_offsets"
TRANSACTION_STATE_TOPIC = "__transaction_state"
#: Clients may not produce to, create or delete these.
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC, HISTORY_TOPIC})


def is_internal_topic(name: str) -> bool:
    """Kafka's internal topics (``Topic.isInternal``) and moldau's own."""
    return name in INTERNAL_TOPICS


def check_replica_list(replicas: list[int], brokers: set[int], replication: int | None) -> None:
    """Kafka's checks of one manual replica list (INVALID_REPLICA_ASSIGNMENT):
    not empty, known brokers named once each, as long as the others."""
    if not replicas:
        raise KafkaError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "The manual partition assignment includes an empty replica list.",
        )
    previous: int | None = None
    for broker in sorted(replicas):
        if broker not in brokers:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes broker {broker}, but no such "
                "broker is registered.",
            )
        if broker == previous:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes the broker {broker} more than once.",
            )
        previous = broker
    if replication is not None and len(replicas) != replication:
        raise KafkaError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"The manual partition assignment includes a partition with {len(replicas)} "
            f"replica(s), but this is not consistent with previous partitions, which have "
            f"{replication} replica(s).",
        )


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


#: How long a creation of partitions holds the event loop before it lets
#: other requests run (each partition costs a few fsyncs).
CREATION_SLICE_S = 0.02


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
        #: Admin requests that create partitions run one at a time, as Kafka's
        #: controller handles one event at a time; DeleteTopics waits too.
        self._admin_lock = asyncio.Lock()
        #: Topics whose partitions are being created right now.
        self._creating: set[str] = set()

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
                self._host(info, index, replicas, partition_log)
        warn_if_files_short()

    def _host(
        self, info: TopicInfo, index: int, replicas: list[int], partition_log: PartitionLog
    ) -> Partition:
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
            replicas = self._manual_placement(assignments)
        else:
            replicas = self._automatic_placement(num_partitions, replication_factor)
        try:
            checked = validate_topic_configs(configs)
        except InvalidTopicConfig as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from None
        self._check_room(name, 0, len(replicas))
        return TopicInfo(name, uuid.uuid4(), replicas, checked, internal=internal)

    def _automatic_placement(self, num_partitions: int, replication_factor: int) -> list[list[int]]:
        """Kafka's checks of the counts (-1: the broker's default), then placement."""
        if replication_factor < -1 or replication_factor == 0:
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                "Replication factor was set to an invalid non-positive value.",
            )
        if num_partitions < -1 or num_partitions == 0:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                "Number of partitions was set to an invalid non-positive value.",
            )
        if num_partitions == -1:
            num_partitions = int(self.config.get("num.partitions"))
        if replication_factor == -1:
            replication_factor = int(self.config.get("default.replication.factor"))
        check_request_size(num_partitions)
        return self.assign_replicas(num_partitions, replication_factor)

    def _manual_placement(self, assignments: list[tuple[int, list[int]]]) -> list[list[int]]:
        """A request's own replica lists, checked as Kafka's controller checks
        them: each valid, all of one size, indexes 0, 1, 2... once each."""
        check_request_size(len(assignments))
        brokers = {b.node_id for b in self.metadata.brokers()}
        by_index: dict[int, list[int]] = {}
        replication: int | None = None
        for index, replicas in assignments:
            if index in by_index:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Found multiple manual partition assignments for partition {index}",
                )
            check_replica_list(replicas, brokers, replication)
            replication = len(replicas)
            by_index[index] = list(replicas)
        if any(i not in by_index for i in range(len(by_index))):
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                "partitions should be a consecutive 0-based integer sequence",
            )
        return [by_index[i] for i in range(len(by_index))]

    def _check_room(self, name: str, first: int, added: int) -> None:
        """Refuse partitions the broker cannot host (see capacity.py) or
        whose directory name the file system cannot hold."""
        # Room for the offsets topic stays free until the first group makes
        # the broker create it: user topics must not make groups impossible.
        reserved = 0
        if name != OFFSETS_TOPIC and self.metadata.topic(OFFSETS_TOPIC) is None:
            reserved = int(self.config.get("offsets.topic.num.partitions"))
        limit = int(self.config.get("max.broker.partitions"))
        check_room(len(self.partitions), added, limit, reserved)
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
        leaves dirs the next start removes (``keeps_log``)."""
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
            self._host(info, index, replicas, partition_log)

    def assign_replicas(self, num_partitions: int, replication_factor: int) -> list[list[int]]:
        """Spread partitions and their leaders evenly over the live brokers."""
        brokers = sorted(b.node_id for b in self.metadata.brokers())
        if replication_factor > len(brokers):
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Replication factor: {replication_factor} larger than available brokers: "
                f"{len(brokers)}.",
            )
        # Where the previous topics left off; the hosted count is O(1).
        start = len(self.partitions)
        return [
            [brokers[(start + p + r) % len(brokers)] for r in range(replication_factor)]
            for p in range(num_partitions)
        ]

    def auto_create(self, name: str) -> TopicInfo | None:
        """Create a topic on first use when auto.create.topics.enable allows it.

        ``__consumer_offsets`` is created as the group coordinator needs it
        (with ``offsets.topic.*``), whatever auto.create.topics.enable says,
        as in Kafka; other internal topics never by a client's request.
        """
        if name == OFFSETS_TOPIC and self.groups is not None:
            self.groups.ensure_topic()
            return self.metadata.topic(name)
        if is_internal_topic(name) or not self.config.get("auto.create.topics.enable"):
            return None
        try:
            return self.create_topic(name, -1, -1, {})
        except KafkaError as exc:
            if exc.code == ErrorCode.TOPIC_ALREADY_EXISTS:
                return self.metadata.topic(name)
            raise

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
        with self._saving(f"delete topic {name}"):
            self.metadata.delete_topic(name)
        if self.groups is not None:
            self.groups.topic_deleted(name)
        for index in range(info.partition_count):
            partition = self.partitions.pop((name, index), None)
            if partition is None:
                continue
            try:
                self.logs.delete(name, index)
            except OSError as exc:
                log.error(
                    "could not remove the log of %s-%d, left for the next start: %s",
                    name,
                    index,
                    exc,
                )
            self._wake(partition)
        log.info("deleted topic %s", name)

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
            added = self.assign_replicas(additional, replication)
        else:
            if len(assignments) != additional:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Attempted to add {additional} additional partition(s), but only "
                    f"{len(assignments)} assignment(s) were specified.",
                )
            brokers = {b.node_id for b in self.metadata.brokers()}
            for replicas in assignments:
                check_replica_list(replicas, brokers, replication)
            added = [list(a) for a in assignments]
        self._check_room(name, current, additional)
        return added

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
        with self._saving(f"alter the configs of {name}"):
            self.metadata.set_topic_configs(name, checked)
        for index in range(info.partition_count):
            partition = self.partitions.get((name, index))
            if partition is not None:
                partition.log.config = new_log_config
        log.info("topic %s configs now %s", name, checked)

    @contextlib.contextmanager
    def _saving(self, what: str) -> Iterator[None]:
        """A metadata change that failed to save (the store changed nothing)
        is KAFKA_STORAGE_ERROR to the client."""
        try:
            yield
        except OSError as exc:
            log.error("could not %s, the metadata was not saved: %s", what, exc)
            raise KafkaError(
                ErrorCode.KAFKA_STORAGE_ERROR, f"Could not save the metadata: {exc}"
            ) from None

    def new_producer_id(self) -> int:
        """A producer id no other producer of this cluster has had."""
        if self._producer_ids is None or self._producer_ids[0] >= self._producer_ids[1]:
            with self._saving("reserve producer ids"):
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
