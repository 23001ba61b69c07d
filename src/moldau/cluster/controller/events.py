"""What the controller reacts to (Kafka: the ControllerEvent subclasses).

Pure values. The shell turns ZooKeeper watches and broker responses into
these, reading what the event needs first (Kafka's controller reads
ZooKeeper inside the event handler; here the shell reads and the state
machine decides, so the machine never blocks).

Every event is handled to completion before the next one, in arrival
order (Kafka: ControllerEventManager's single queue). After a batch in which
a conditional write failed, the shell must feed ``PartitionStatesStale``
before any other event (see ``commands``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from moldau.cluster.controller.alter_partition import AlterPartitionItem
from moldau.cluster.controller.context import LiveBroker, TopicPartition
from moldau.cluster.zk.paths import PartitionState, TopicAssignment


@dataclass(frozen=True)
class ControllerElected:
    """This broker won /controller (Kafka: Startup + onControllerFailover), with
    everything it read afterwards: the lease (epoch and /controller_epoch's
    version), live brokers, topics with their assignments, partition states
    (with their znode versions), the deletion marks under
    /admin/delete_topics, and the topics whose config sets
    unclean.leader.election.enable."""

    epoch: int
    epoch_zk_version: int
    brokers: Mapping[int, LiveBroker]
    topics: Mapping[str, TopicAssignment]
    states: Mapping[TopicPartition, PartitionState]
    marked_for_deletion: frozenset[str] = frozenset()
    unclean_topics: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class ControllerMoved:
    """Another broker is the controller (Kafka: ControllerChange / Reelect with
    someone else, or a fenced write that failed): stop acting as one."""


@dataclass(frozen=True)
class BrokerChange:
    """The children of /brokers/ids changed: every registered broker now. A
    broker id whose epoch changed has restarted (Kafka: bounced brokers)."""

    brokers: Mapping[int, LiveBroker]


@dataclass(frozen=True)
class TopicChange:
    """The children of /brokers/topics changed: every topic now, and the
    assignments of those the controller does not know (``Controller.known_topics``)
    and their unclean.leader.election.enable overrides."""

    topics: frozenset[str]
    added: Mapping[str, TopicAssignment]
    unclean_topics: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class PartitionModification:
    """A topic's assignment znode changed (CreatePartitions): the whole assignment."""

    topic: str
    assignment: TopicAssignment


@dataclass(frozen=True)
class TopicDeletion:
    """The children of /admin/delete_topics: the topics marked for deletion now."""

    topics: frozenset[str]


@dataclass(frozen=True)
class IsrChangeNotification:
    """Leaders changed ISRs (/isr_change_notification): the states re-read.
    The shell deletes the notification znodes it read. This is the path of
    leaders that write ZooKeeper themselves (Kafka before 2.7); moldau's
    leaders send ``AlterPartition`` as Kafka 3.9's do, so this only serves
    a state changed behind the controller's back."""

    states: Mapping[TopicPartition, PartitionState]


@dataclass(frozen=True)
class ControlledShutdown:
    """A broker asks to shut down (ControlledShutdown request, API key 7)."""

    broker_id: int
    broker_epoch: int


@dataclass(frozen=True)
class AlterPartition:
    """A leader asks to change ISRs (AlterPartition request, API key 56);
    answered by ``AlterPartitionReply``."""

    broker_id: int
    broker_epoch: int
    partitions: tuple[AlterPartitionItem, ...]


@dataclass(frozen=True)
class PartitionStatesStale:
    """Conditional partition-state writes of the last batch failed (the znode
    changed since it was read): the states re-read, None where the znode is
    gone. The shell dropped that batch's broker requests."""

    states: Mapping[TopicPartition, PartitionState | None]


@dataclass(frozen=True)
class StopReplicaResult:
    """A broker's answer to a StopReplica with delete (Kafka:
    TopicDeletionStopReplicaResponseReceived); ``failed`` are the partitions
    it could not delete."""

    broker_id: int
    partitions: frozenset[TopicPartition]
    failed: frozenset[TopicPartition] = frozenset()


@dataclass(frozen=True)
class UncleanLeaderElectionEnable:
    """A topic's unclean.leader.election.enable changed (Kafka:
    TopicUncleanLeaderElectionEnable); None means the override was removed."""

    topic: str
    enabled: bool | None


class ElectionType(enum.IntEnum):
    """Kafka's ElectionType, as ElectLeaders carries it on the wire."""

    PREFERRED = 0
    UNCLEAN = 1


@dataclass(frozen=True)
class ElectLeaders:
    """An operator asks for leader elections (ElectLeaders request, API key
    43; Kafka: ReplicaLeaderElection); ``partitions`` None means every
    partition. Answered by ``ElectLeadersReply``."""

    partitions: frozenset[TopicPartition] | None
    election_type: ElectionType = ElectionType.PREFERRED


@dataclass(frozen=True)
class LeaderImbalanceCheck:
    """The auto-rebalance timer fired (Kafka: AutoPreferredReplicaLeaderElection).
    The shell feeds it when ``Controller.next_check_ms`` is due; the
    controller checks ``now_ms`` itself, so an early or repeated one does
    nothing."""


@dataclass(frozen=True)
class AlterReassignments:
    """An operator moves partitions to new replicas (AlterPartitionReassignments,
    API key 45; Kafka: ApiPartitionReassignment): per partition the target
    replicas, None to cancel its reassignment. Answered by
    ``AlterReassignmentsReply``. Without ``allow_replication_factor_change``
    (v1, KIP-860) a target of another size than the partition's replicas is
    refused."""

    targets: Mapping[TopicPartition, tuple[int, ...] | None]
    allow_replication_factor_change: bool = True


@dataclass(frozen=True)
class ListReassignments:
    """An operator asks which reassignments run (ListPartitionReassignments,
    API key 46; Kafka: ListPartitionReassignments); ``partitions`` None means
    all. Answered by ``ListReassignmentsReply``."""

    partitions: frozenset[TopicPartition] | None = None


@dataclass(frozen=True)
class ZkPartitionReassignment:
    """/admin/reassign_partitions was created (Kafka's legacy reassignment, as
    kafka-reassign-partitions --zookeeper wrote it; Kafka:
    ZkPartitionReassignment): the target replicas it holds. Fed too when a
    new controller finds it."""

    targets: Mapping[TopicPartition, tuple[int, ...]]


@dataclass(frozen=True)
class ReassignmentIsrChange:
    """The ISRs of partitions being reassigned changed: is any reassignment
    complete now? (Kafka: PartitionReassignmentIsrChange.) The controller
    asks for it with ``CheckReassignments``; the shell feeds it after the
    batch that asked."""

    partitions: frozenset[TopicPartition]


Event = (
    ControllerElected
    | ControllerMoved
    | BrokerChange
    | TopicChange
    | PartitionModification
    | TopicDeletion
    | IsrChangeNotification
    | ControlledShutdown
    | AlterPartition
    | PartitionStatesStale
    | StopReplicaResult
    | UncleanLeaderElectionEnable
    | ElectLeaders
    | LeaderImbalanceCheck
    | AlterReassignments
    | ListReassignments
    | ZkPartitionReassignment
    | ReassignmentIsrChange
)
