"""The typed ZooKeeper store of cluster mode (Kafka's KafkaZkClient in miniature).

Reads return the dataclasses of ``paths``; every write that depends on what
was read is conditional:

- on the znode's version (partition state, producer id block), losing with
  ``StaleVersion`` when someone wrote in between;
- for the controller, on the version of /controller_epoch as well, in one
  multi-op (``ControllerLease``): a deposed controller's write fails with
  ``ControllerMoved`` and changes nothing, however late it arrives.

Controller election is Kafka's: one multi-op creates the ephemeral
/controller and bumps /controller_epoch conditionally on the version read,
so two brokers racing cannot both win, and a winner knows the epoch version
that fences its later writes.

Where moldau departs from Kafka: no ACLs on znodes (Kafka's
zookeeper.set.acl), no KRaft-migration checks on /controller, and a broker
id already registered fails registration at once (Kafka first waits out a
registration left by its own previous session).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from kazoo.exceptions import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
)

from moldau.cluster.controller.context import LiveBroker, TopicPartition
from moldau.cluster.zk import paths as zp
from moldau.cluster.zk.client import Op, WatchHandler, ZkClient

#: Deletes per multi-op when a topic goes: about 100 bytes each, far below
#: ZooKeeper's jute.maxbuffer of 1 MiB.
DELETE_BATCH = 500


class ZkStoreError(Exception):
    """A write refused for a reason the caller acts on."""


class ControllerMoved(ZkStoreError):
    """Another broker is (or became) the controller: stop acting as one."""


class StaleVersion(ZkStoreError):
    """A conditional write lost: the znode changed since it was read."""


class TopicExists(ZkStoreError):
    pass


class BrokerIdInUse(ZkStoreError):
    """A live broker already holds this broker.id."""


@dataclass(frozen=True)
class ControllerLease:
    """What a controller's writes are fenced with: its epoch and the version of
    /controller_epoch it wrote (Kafka: epoch and epochZkVersion)."""

    broker_id: int
    epoch: int
    epoch_zk_version: int


class ZkStore:
    """Cluster state in ZooKeeper, in Kafka 3.9's layout, over one ``ZkClient``."""

    def __init__(self, client: ZkClient) -> None:
        self.client = client

    async def create_top_level_paths(self) -> None:
        """The persistent znodes Kafka creates at startup."""
        for path in zp.PERSISTENT_PATHS:
            await self.client.ensure_path(path)

    async def _get(self, path: str, watch: WatchHandler | None = None) -> tuple[bytes, int] | None:
        try:
            data, stat = await self.client.get(path, watch)
        except NoNodeError:
            return None
        return data, stat.version

    # -- cluster id and broker ids ----------------------------------------

    async def get_or_create_cluster_id(self, proposed: Callable[[], str]) -> str:
        """The cluster's id; the first broker to ask writes ``proposed()``."""
        found = await self._get(zp.CLUSTER_ID)
        if found is not None:
            return zp.decode_cluster_id(found[0])
        cluster_id = proposed()
        try:
            await self.client.create(zp.CLUSTER_ID, zp.encode_cluster_id(cluster_id), makepath=True)
        except NodeExistsError:
            found = await self._get(zp.CLUSTER_ID)
            assert found is not None, "/cluster/id cannot be deleted"
            return zp.decode_cluster_id(found[0])
        return cluster_id

    async def generate_broker_id(self, reserved_max: int = zp.RESERVED_BROKER_MAX_ID) -> int:
        """broker.id.generation.enable: each write of /brokers/seqid bumps its
        version, which is unique; ids start above reserved.broker.max.id."""
        try:
            stat = await self.client.set(zp.BROKER_SEQID, b"")
        except NoNodeError:
            await self.client.ensure_path(zp.BROKER_SEQID)
            stat = await self.client.set(zp.BROKER_SEQID, b"")
        return int(stat.version) + reserved_max

    # -- brokers -------------------------------------------------------------

    async def register_broker(self, registration: zp.BrokerRegistration) -> int:
        """Create the ephemeral /brokers/ids/N; returns its czxid, Kafka's broker epoch."""
        path = zp.broker_path(registration.broker_id)
        try:
            stat = await self.client.create_with_stat(
                path, zp.encode_broker(registration), ephemeral=True
            )
        except NodeExistsError:
            raise BrokerIdInUse(f"broker.id {registration.broker_id} is registered") from None
        return int(stat.czxid)

    async def broker_ids(self, watch: WatchHandler | None = None) -> list[int]:
        """Live broker ids; ``watch`` fires when one arrives or leaves."""
        names = await self.client.children(zp.BROKER_IDS, watch)
        return sorted(int(name) for name in names if name.isdigit())

    async def broker(self, broker_id: int) -> zp.BrokerRegistration | None:
        found = await self._get(zp.broker_path(broker_id))
        return None if found is None else zp.decode_broker(broker_id, found[0])

    async def brokers(self) -> dict[int, zp.BrokerRegistration]:
        out = {}
        for broker_id in await self.broker_ids():
            registration = await self.broker(broker_id)
            if registration is not None:  # it left between the two reads
                out[broker_id] = registration
        return out

    async def live_brokers(self, watch: WatchHandler | None = None) -> dict[int, LiveBroker]:
        """Every registered broker with its epoch (the czxid of /brokers/ids/N,
        Kafka's broker epoch); ``watch`` fires when one arrives or leaves."""
        out = {}
        for broker_id in await self.broker_ids(watch):
            try:
                data, stat = await self.client.get(zp.broker_path(broker_id))
            except NoNodeError:  # it left between the two reads
                continue
            registration = zp.decode_broker(broker_id, data)
            out[broker_id] = LiveBroker(
                broker_id, int(stat.czxid), registration.endpoints, registration.rack
            )
        return out

    # -- controller ----------------------------------------------------------

    async def controller(
        self, watch: WatchHandler | None = None
    ) -> zp.ControllerRegistration | None:
        """The controller, or None; ``watch`` fires on creation, change or deletion."""
        stat = await self.client.exists(zp.CONTROLLER, watch)
        if stat is None:
            return None
        found = await self._get(zp.CONTROLLER)
        return None if found is None else zp.decode_controller(found[0])

    async def controller_epoch(self) -> tuple[int, int] | None:
        """(epoch, znode version) of /controller_epoch, None before any controller."""
        found = await self._get(zp.CONTROLLER_EPOCH)
        return None if found is None else (zp.decode_controller_epoch(found[0]), found[1])

    async def _epoch_or_create(self) -> tuple[int, int]:
        try:
            await self.client.create(
                zp.CONTROLLER_EPOCH, zp.encode_controller_epoch(zp.INITIAL_CONTROLLER_EPOCH)
            )
        except NodeExistsError:
            current = await self.controller_epoch()
            assert current is not None, "/controller_epoch is never deleted"
            return current
        return zp.INITIAL_CONTROLLER_EPOCH, 0

    async def elect_controller(self, broker_id: int, now_ms: int) -> ControllerLease:
        """Become the controller, or raise ControllerMoved (Kafka's
        registerControllerAndIncrementControllerEpoch)."""
        epoch, version = await self._epoch_or_create()
        registration = zp.encode_controller(zp.ControllerRegistration(broker_id, now_ms))
        results = await self.client.multi(
            [
                Op.create(zp.CONTROLLER, registration, ephemeral=True),
                Op.set(zp.CONTROLLER_EPOCH, zp.encode_controller_epoch(epoch + 1), version),
            ]
        )
        failure = _failure(results)
        if failure is None:
            return ControllerLease(broker_id, epoch + 1, int(results[1].version))
        if not isinstance(failure, NodeExistsError | BadVersionError):
            raise failure
        # The transaction may have succeeded on a connection that dropped
        # before the answer came: then /controller is ours and the epoch ours.
        current = await self.controller()
        now = await self.controller_epoch()
        if current is not None and current.broker_id == broker_id and now and now[0] == epoch + 1:
            return ControllerLease(broker_id, epoch + 1, now[1])
        raise ControllerMoved(f"broker {broker_id} lost the controller election")

    async def resign_controller(self, lease: ControllerLease) -> None:
        """Delete /controller, fenced: a deposed controller deletes nothing."""
        await self._fenced(lease, [Op.delete(zp.CONTROLLER)])

    async def release_own_controller(self) -> bool:
        """Delete /controller if this session's ephemeral holds it: a controller
        deposed by a failed fence (or a dropped connection) while its session
        lived still holds the znode, and nobody could be elected until the
        session ends. Returns whether it deleted it."""
        session = self.client.session
        stat = await self.client.exists(zp.CONTROLLER)
        if stat is None or session is None or stat.ephemeralOwner != session[0]:
            return False
        with contextlib.suppress(NoNodeError, BadVersionError):
            await self.client.delete(zp.CONTROLLER, stat.version)
        return True

    async def _fenced(self, lease: ControllerLease, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` only if /controller_epoch still has the lease's version."""
        results = await self.client.multi(
            [Op.check(zp.CONTROLLER_EPOCH, lease.epoch_zk_version), *ops]
        )
        if isinstance(results[0], BadVersionError | NoNodeError):
            raise ControllerMoved(
                f"controller epoch {lease.epoch} (znode version {lease.epoch_zk_version}) "
                "is no longer current"
            )
        failure = _failure(results)
        if failure is not None:
            raise failure
        return results[1:]

    # -- topics --------------------------------------------------------------

    async def create_topic(
        self,
        topic: str,
        assignment: zp.TopicAssignment,
        config: Mapping[str, str] | None = None,
    ) -> None:
        """What CreateTopics writes on any broker: the config overrides, then the
        assignment, which the controller watches for (Kafka's order: a
        controller that sees the topic always finds its config)."""
        if await self.client.exists(zp.topic_path(topic)) is not None:
            raise TopicExists(f"Topic '{topic}' already exists.")
        if await self.client.exists(zp.delete_topic_path(topic)) is not None:
            raise TopicExists(f"Topic '{topic}' is marked for deletion.")
        await self._set_or_create(
            zp.topic_config_path(topic), zp.encode_entity_config(config or {})
        )
        try:
            await self.client.create(
                zp.topic_path(topic), zp.encode_topic(assignment), makepath=True
            )
        except NodeExistsError:
            raise TopicExists(f"Topic '{topic}' already exists.") from None

    async def topics(self, watch: WatchHandler | None = None) -> list[str]:
        return sorted(await self.client.children(zp.TOPICS, watch))

    async def topic(
        self, topic: str, watch: WatchHandler | None = None
    ) -> zp.TopicAssignment | None:
        found = await self._get(zp.topic_path(topic), watch)
        return None if found is None else zp.decode_topic(topic, found[0])

    async def topic_with_version(self, topic: str) -> tuple[zp.TopicAssignment, int] | None:
        """The assignment and its znode version, for a conditional rewrite."""
        found = await self._get(zp.topic_path(topic))
        return None if found is None else (zp.decode_topic(topic, found[0]), found[1])

    async def set_topic_assignment(
        self, topic: str, assignment: zp.TopicAssignment, expected_version: int
    ) -> int:
        """Rewrite the assignment (CreatePartitions, reassignment) if nobody
        did since ``expected_version`` was read; returns the new version.

        Where moldau departs from Kafka: Kafka's CreatePartitions overwrites
        the znode whatever its version, so two racing requests can lose one's
        partitions; here the second gets StaleVersion and reads again.
        """
        try:
            stat = await self.client.set(
                zp.topic_path(topic), zp.encode_topic(assignment), expected_version
            )
        except BadVersionError:
            raise StaleVersion(f"topic {topic} changed since version {expected_version}") from None
        return int(stat.version)

    async def update_topic_partitions(
        self,
        topic: str,
        partitions: Mapping[int, zp.ReplicaAssignment],
        lease: ControllerLease,
    ) -> None:
        """The controller's rewrite of some partitions' replicas (a
        reassignment), fenced; the topic's other partitions stay as the znode
        has them. Read, change, write conditionally on the version read, and
        again if someone wrote in between (CreatePartitions). A topic gone
        meanwhile is left alone.

        Where moldau departs from Kafka: Kafka writes the whole assignment it
        holds in memory, so a partition added since it last read is lost."""
        while True:
            found = await self.topic_with_version(topic)
            if found is None:
                return
            current, version = found
            assignment = zp.TopicAssignment(current.topic_id, {**current.partitions, **partitions})
            try:
                await self._fenced(
                    lease,
                    [Op.set(zp.topic_path(topic), zp.encode_topic(assignment), version)],
                )
            except (BadVersionError, NoNodeError):
                continue
            return

    async def topics_marked_for_deletion(self, watch: WatchHandler | None = None) -> list[str]:
        return sorted(await self.client.children(zp.DELETE_TOPICS, watch))

    async def delete_topic(
        self, topic: str, lease: ControllerLease, batch: int = DELETE_BATCH
    ) -> None:
        """The controller's last step of a deletion, fenced: partition states,
        the topic znode, its config, and the deletion mark last, so that a
        controller failing midway leaves the mark for its successor to finish.
        Znodes already gone are skipped; batches keep each multi-op well under
        ZooKeeper's 1 MiB request limit."""
        doomed: list[str] = []
        try:
            for partition in await self.client.children(zp.partitions_path(topic)):
                base = f"{zp.partitions_path(topic)}/{partition}"
                doomed.extend([f"{base}/{child}" for child in await self.client.children(base)])
                doomed.append(base)
            doomed.append(zp.partitions_path(topic))
        except NoNodeError:
            pass
        for start in range(0, len(doomed), batch):
            await self._fenced(lease, [Op.delete(path) for path in doomed[start : start + batch]])
        for path in (
            zp.topic_path(topic),
            zp.topic_config_path(topic),
            zp.delete_topic_path(topic),
        ):
            with contextlib.suppress(NoNodeError):
                await self._fenced(lease, [Op.delete(path)])

    async def remove_deletion_marks(self, lease: ControllerLease, topics: Iterable[str]) -> None:
        """Delete /admin/delete_topics/T of topics that do not exist, fenced;
        marks already gone are skipped."""
        for topic in sorted(topics):
            with contextlib.suppress(NoNodeError):
                await self._fenced(lease, [Op.delete(zp.delete_topic_path(topic))])

    async def mark_topic_for_deletion(self, topic: str) -> None:
        """/admin/delete_topics/T: the controller deletes the topic."""
        with contextlib.suppress(NodeExistsError):
            await self.client.create(zp.delete_topic_path(topic), makepath=True)

    async def set_topic_config(self, topic: str, config: Mapping[str, str]) -> None:
        """Write the overrides and notify every broker (/config/changes)."""
        await self.set_entity_config("topics", topic, config)

    async def topic_config(self, topic: str) -> dict[str, str]:
        return await self.entity_config("topics", topic)

    async def set_entity_config(
        self, entity_type: str, name: str, config: Mapping[str, str]
    ) -> None:
        """Write /config/<type>/<name> and notify every broker (Kafka's
        AdminZkClient.changeEntityConfig)."""
        await self._set_or_create(
            zp.config_entity_path(entity_type, name), zp.encode_entity_config(config)
        )
        await self.client.create(
            zp.config_change_create_path(),
            zp.encode_config_change(entity_type, name),
            sequence=True,
            makepath=True,
        )

    async def entity_config(self, entity_type: str, name: str) -> dict[str, str]:
        found = await self._get(zp.config_entity_path(entity_type, name))
        return {} if found is None else zp.decode_entity_config(found[0])

    async def config_changes(self, watch: WatchHandler | None = None) -> list[str]:
        """The notification znodes under /config/changes, oldest first (their
        names end in ZooKeeper's sequence number, so name order is age order)."""
        return sorted(await self.client.children(zp.CONFIG_CHANGES, watch))

    async def config_change(self, name: str) -> tuple[str, str] | None:
        """(entity type, entity name) of one notification; None if purged."""
        found = await self._get(f"{zp.CONFIG_CHANGES}/{name}")
        return None if found is None else zp.decode_config_change(found[0])

    async def _set_or_create(self, path: str, data: bytes) -> None:
        try:
            await self.client.set(path, data)
        except NoNodeError:
            try:
                await self.client.create(path, data, makepath=True)
            except NodeExistsError:
                await self.client.set(path, data)

    # -- partition state -----------------------------------------------------

    async def create_partition_states(
        self, topic: str, states: Mapping[int, zp.PartitionState], lease: ControllerLease
    ) -> dict[int, int]:
        """The controller's first leader and ISR of new partitions, fenced.
        Returns each state znode's version (0)."""
        with contextlib.suppress(NodeExistsError):  # partitions added to an existing topic
            await self._fenced(lease, [Op.create(zp.partitions_path(topic))])
        versions = {}
        for partition, state in sorted(states.items()):
            await self._fenced(
                lease,
                [
                    Op.create(zp.partition_path(topic, partition)),
                    Op.create(
                        zp.partition_state_path(topic, partition),
                        zp.encode_partition_state(state),
                    ),
                ],
            )
            versions[partition] = 0
        return versions

    async def partition_state(self, topic: str, partition: int) -> zp.PartitionState | None:
        """The state with ``zk_version`` set: what the next update is conditional on."""
        found = await self._get(zp.partition_state_path(topic, partition))
        if found is None:
            return None
        return zp.decode_partition_state(found[0], zk_version=found[1])

    async def update_partition_state(
        self, topic: str, partition: int, state: zp.PartitionState, lease: ControllerLease
    ) -> zp.PartitionState:
        """Write ``state`` if the znode still has ``state.zk_version`` and the
        controller is still ``lease``'s; returns it with the new version."""
        try:
            results = await self._fenced(
                lease,
                [
                    Op.set(
                        zp.partition_state_path(topic, partition),
                        zp.encode_partition_state(state),
                        state.zk_version,
                    )
                ],
            )
        except BadVersionError:
            raise StaleVersion(
                f"{topic}-{partition}: state changed since version {state.zk_version}"
            ) from None
        return replace(state, zk_version=int(results[0].version))

    async def take_isr_changes(
        self, watch: WatchHandler | None = None
    ) -> frozenset[TopicPartition]:
        """The partitions named under /isr_change_notification, deleting the
        notifications read (Kafka's controller does the same)."""
        changed: set[TopicPartition] = set()
        for name in await self.client.children(zp.ISR_CHANGE_NOTIFICATION, watch):
            path = f"{zp.ISR_CHANGE_NOTIFICATION}/{name}"
            found = await self._get(path)
            if found is None:
                continue
            changed |= zp.decode_isr_change(found[0])
            with contextlib.suppress(NoNodeError):
                await self.client.delete(path)
        return frozenset(changed)

    # -- legacy reassignment (/admin/reassign_partitions) -----------------------

    async def partition_reassignment(
        self, watch: WatchHandler | None = None
    ) -> tuple[int, dict[TopicPartition, tuple[int, ...]]] | None:
        """The czxid of /admin/reassign_partitions (which creation of it this
        is) and its targets, or None without one; ``watch`` (an exists
        watch, as Kafka's) fires when it is created, changed or deleted."""
        stat = await self.client.exists(zp.REASSIGN_PARTITIONS, watch)
        if stat is None:
            return None
        found = await self._get(zp.REASSIGN_PARTITIONS)
        if found is None:
            return None
        return int(stat.czxid), zp.decode_reassignment(found[0])

    async def remove_partition_reassignments(
        self,
        partitions: Mapping[TopicPartition, tuple[int, ...] | None],
        lease: ControllerLease,
    ) -> None:
        """Take partitions out of /admin/reassign_partitions, each while its
        target there is the one given (any for None), fenced; delete the
        znode once empty. Read, change, write conditionally on the version
        read, and again if it changed in between; no znode, or one that
        cannot be read, is left alone."""
        while True:
            try:
                data, stat = await self.client.get(zp.REASSIGN_PARTITIONS)
                current = zp.decode_reassignment(data)
            except (NoNodeError, zp.ZkDataError):
                return
            remaining = {
                tp: replicas
                for tp, replicas in current.items()
                if tp not in partitions or partitions[tp] not in (None, replicas)
            }
            if remaining == current:
                return
            op = (
                Op.set(zp.REASSIGN_PARTITIONS, zp.encode_reassignment(remaining), stat.version)
                if remaining
                else Op.delete(zp.REASSIGN_PARTITIONS, stat.version)
            )
            try:
                await self._fenced(lease, [op])
            except (BadVersionError, NoNodeError):
                continue
            return

    # -- producer ids --------------------------------------------------------

    async def allocate_producer_id_block(
        self, broker_id: int, size: int = zp.PRODUCER_ID_BLOCK_SIZE
    ) -> zp.ProducerIdBlock:
        """The next block of producer ids for ``broker_id``, unique across the
        cluster and restarts (Kafka's ZkProducerIdManager): read, compute the
        next block, write conditionally, and start over when another broker won."""
        while True:
            found = await self._get(zp.PRODUCER_ID_BLOCK)
            if found is None:
                await self.client.ensure_path(zp.PRODUCER_ID_BLOCK)
                continue
            data, version = found
            current = zp.decode_producer_id_block(data)
            block = (
                current.next_block(broker_id, size)
                if current is not None
                else zp.ProducerIdBlock(broker_id, 0, size)
            )
            try:
                await self.client.set(
                    zp.PRODUCER_ID_BLOCK, zp.encode_producer_id_block(block), version
                )
            except BadVersionError:
                continue
            return block

    # -- reads for tools (moldau cluster status) ------------------------------

    async def cluster_id(self) -> str | None:
        """The cluster's id, None before the first broker wrote it (never writes)."""
        found = await self._get(zp.CLUSTER_ID)
        return None if found is None else zp.decode_cluster_id(found[0])


def _failure(results: Sequence[Any]) -> Exception | None:
    """The exception of the op that failed a multi-op, or None if it succeeded."""
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, RolledBackError):
            return result
    return None
