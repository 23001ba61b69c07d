"""What ``moldau cluster status`` shows, read from ZooKeeper alone.

ZooKeeper holds the truth of a cluster in ZooKeeper mode, so the status
needs no broker to answer: the live brokers are the registrations under
/brokers/ids, the controller is /controller with the epoch of
/controller_epoch, and each partition's leader, leader epoch and ISR are its
state znode. A replica is alive when its broker is registered. A partition
is under-replicated when its ISR is smaller than its replicas (Kafka's
UnderReplicatedPartitions), offline when it has no leader or its leader is
not alive (Kafka's OfflinePartitionsCount); a partition whose state the
controller has not written yet counts as offline.

Balance, as ``moldau cluster rebalance`` and the preferred-leader
elections keep it: per broker the replicas it holds, the partitions it
leads and those it is the preferred leader of (first replica). The replica
counts are imbalanced when they differ by more than one over the brokers
that hold any; a live broker holding none (just added, or emptied to be
retired) is named apart; a partition is led elsewhere than its preferred replica
until an election (auto rebalance or ``elect-leaders``) moves it back.
Reassignments in progress are the partitions whose topic znode lists
replicas being added or removed (KIP-455, as Kafka's controller writes
them).

``summarize`` is pure (the tests build one from values); ``read_status``
reads a ``ZkStore``; ``fetch_status`` connects first and never writes, not
even the chroot a ZooKeeper client would create.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import NoNodeError

from moldau.cluster.zk import paths as zp
from moldau.cluster.zk.client import ZkClient
from moldau.cluster.zk.store import ZkStore

TopicPartition = tuple[str, int]


class StatusError(Exception):
    """No cluster to show; the message is one line."""


@dataclass(frozen=True)
class PartitionStatus:
    topic: str
    partition: int
    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    offline: bool
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)

    @property
    def reassigning(self) -> bool:
        return bool(self.adding or self.removing)

    @property
    def led_by_preferred(self) -> bool:
        return bool(self.replicas) and self.leader == self.replicas[0]


@dataclass(frozen=True)
class BrokerStatus:
    broker_id: int
    endpoints: tuple[str, ...]
    rack: str | None
    alive: bool
    leads: tuple[TopicPartition, ...]
    hosts: tuple[TopicPartition, ...]
    #: The partitions whose first replica (preferred leader) it is.
    preferred: tuple[TopicPartition, ...] = ()


@dataclass(frozen=True)
class ClusterStatus:
    zookeeper_connect: str
    cluster_id: str | None
    controller: int | None
    controller_epoch: int | None
    brokers: tuple[BrokerStatus, ...]
    partitions: tuple[PartitionStatus, ...]
    deleting: tuple[str, ...]

    @property
    def under_replicated(self) -> tuple[PartitionStatus, ...]:
        return tuple(p for p in self.partitions if p.under_replicated)

    @property
    def offline(self) -> tuple[PartitionStatus, ...]:
        return tuple(p for p in self.partitions if p.offline)

    @property
    def reassigning(self) -> tuple[PartitionStatus, ...]:
        return tuple(p for p in self.partitions if p.reassigning)

    @property
    def not_preferred(self) -> tuple[PartitionStatus, ...]:
        """Partitions with a leader that is not their preferred replica."""
        return tuple(p for p in self.partitions if not p.offline and not p.led_by_preferred)

    def spread(self, count: str) -> int:
        """max - min of ``len(broker.<count>)`` over the brokers holding
        replicas (``hosts``, ``leads`` or ``preferred``); 0 with none."""
        values = [len(getattr(b, count)) for b in self.brokers if b.hosts]
        return max(values) - min(values) if values else 0

    @property
    def replicas_imbalanced(self) -> bool:
        return self.spread("hosts") > 1

    @property
    def empty_brokers(self) -> tuple[int, ...]:
        """Live brokers holding no replica while there are partitions: just
        added, or emptied to be retired."""
        if not self.partitions:
            return ()
        return tuple(b.broker_id for b in self.brokers if b.alive and not b.hosts)

    def to_json(self) -> dict[str, Any]:
        def names(items: tuple[TopicPartition, ...]) -> list[dict[str, Any]]:
            return [{"topic": t, "partition": p} for t, p in items]

        def partition(p: PartitionStatus) -> dict[str, Any]:
            return {
                "topic": p.topic,
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": list(p.replicas),
                "isr": list(p.isr),
                "under_replicated": p.under_replicated,
                "offline": p.offline,
                "adding_replicas": list(p.adding),
                "removing_replicas": list(p.removing),
            }

        return {
            "zookeeper_connect": self.zookeeper_connect,
            "cluster_id": self.cluster_id,
            "controller": self.controller,
            "controller_epoch": self.controller_epoch,
            "brokers": [
                {
                    "id": b.broker_id,
                    "endpoints": list(b.endpoints),
                    "rack": b.rack,
                    "alive": b.alive,
                    "leads": names(b.leads),
                    "hosts": names(b.hosts),
                    "preferred_leader_of": names(b.preferred),
                }
                for b in self.brokers
            ],
            "partitions": [partition(p) for p in self.partitions],
            "under_replicated": names(tuple((p.topic, p.partition) for p in self.under_replicated)),
            "offline": names(tuple((p.topic, p.partition) for p in self.offline)),
            "reassigning": names(tuple((p.topic, p.partition) for p in self.reassigning)),
            "not_led_by_preferred": names(
                tuple((p.topic, p.partition) for p in self.not_preferred)
            ),
            "replicas_imbalanced": self.replicas_imbalanced,
            "brokers_without_replicas": list(self.empty_brokers),
            "topics_being_deleted": list(self.deleting),
        }


def summarize(
    zookeeper_connect: str,
    cluster_id: str | None,
    controller: int | None,
    controller_epoch: int | None,
    registrations: Mapping[int, zp.BrokerRegistration],
    assignments: Mapping[str, zp.TopicAssignment],
    states: Mapping[TopicPartition, zp.PartitionState],
    deleting: tuple[str, ...] = (),
) -> ClusterStatus:
    """The status from what ZooKeeper holds. Brokers named in an assignment
    but not registered are listed as not alive."""
    partitions = []
    for topic in sorted(assignments):
        for index, assignment in sorted(assignments[topic].partitions.items()):
            state = states.get((topic, index))
            leader = state.leader if state is not None else zp.NO_LEADER
            partitions.append(
                PartitionStatus(
                    topic=topic,
                    partition=index,
                    replicas=assignment.replicas,
                    leader=leader,
                    leader_epoch=state.leader_epoch if state is not None else -1,
                    isr=state.isr if state is not None else (),
                    offline=leader < 0 or leader not in registrations,
                    adding=assignment.adding,
                    removing=assignment.removing,
                )
            )
    known = set(registrations) | {r for p in partitions for r in p.replicas}
    brokers = []
    for broker_id in sorted(known):
        registration = registrations.get(broker_id)
        brokers.append(
            BrokerStatus(
                broker_id=broker_id,
                endpoints=tuple(e.connection_string() for e in registration.endpoints)
                if registration
                else (),
                rack=registration.rack if registration else None,
                alive=registration is not None,
                leads=tuple((p.topic, p.partition) for p in partitions if p.leader == broker_id),
                hosts=tuple((p.topic, p.partition) for p in partitions if broker_id in p.replicas),
                preferred=tuple(
                    (p.topic, p.partition) for p in partitions if p.replicas[:1] == (broker_id,)
                ),
            )
        )
    return ClusterStatus(
        zookeeper_connect=zookeeper_connect,
        cluster_id=cluster_id,
        controller=controller,
        controller_epoch=controller_epoch,
        brokers=tuple(brokers),
        partitions=tuple(partitions),
        deleting=deleting,
    )


async def read_status(store: ZkStore, zookeeper_connect: str) -> ClusterStatus:
    """Read everything ``summarize`` needs from ``store``."""
    try:
        registrations = await store.brokers()
    except NoNodeError:  # no broker has started under this chroot yet
        registrations = {}
    try:
        topics = await store.topics()
        deleting = tuple(await store.topics_marked_for_deletion())
    except NoNodeError:
        topics, deleting = [], ()
    assignments: dict[str, zp.TopicAssignment] = {}
    states: dict[TopicPartition, zp.PartitionState] = {}
    for topic in topics:
        assignment = await store.topic(topic)
        if assignment is None:  # deleted between the two reads
            continue
        assignments[topic] = assignment
        for index in assignment.partitions:
            state = await store.partition_state(topic, index)
            if state is not None:
                states[(topic, index)] = state
    controller = await store.controller()
    epoch = await store.controller_epoch()
    return summarize(
        zookeeper_connect,
        await store.cluster_id(),
        controller.broker_id if controller is not None else None,
        epoch[0] if epoch is not None else None,
        registrations,
        assignments,
        states,
        deleting,
    )


async def fetch_status(zookeeper_connect: str, timeout_ms: int = 5_000) -> ClusterStatus:
    """Connect to ``zookeeper_connect`` and read the status; StatusError when
    ZooKeeper does not answer or holds no cluster under the chroot."""
    hosts, chroot = zp.parse_connect(zookeeper_connect)
    if chroot:
        # ZkClient creates a missing chroot; a status must not, so look first.
        root = await _connect(hosts, timeout_ms)
        try:
            if await root.exists(chroot) is None:
                raise StatusError(
                    f"no cluster in ZooKeeper at {zookeeper_connect}: {chroot} does not exist"
                )
        finally:
            await root.close()
    client = await _connect(zookeeper_connect, timeout_ms)
    try:
        return await read_status(ZkStore(client), zookeeper_connect)
    finally:
        await client.close()


async def _connect(connect: str, timeout_ms: int) -> ZkClient:
    client = ZkClient(connect, connection_timeout_ms=timeout_ms)
    try:
        await client.start()
    except Exception as exc:
        await client.close()
        raise StatusError(
            f"cannot reach ZooKeeper at {connect} within {timeout_ms} ms ({type(exc).__name__})"
        ) from None
    return client
