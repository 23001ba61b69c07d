"""What the controller asks its shell to do: ZooKeeper writes and broker requests.

Pure values. ``Controller.handle`` returns, in this order: the ZooKeeper
writes, then LeaderAndIsr, UpdateMetadata and StopReplica requests (Kafka's
ControllerBrokerRequestBatch sends them in that order), then replies.

The shell's contract:

- Run the writes in order, each fenced by its ``Fence`` (a multi-op that
  checks /controller_epoch's version: ``ZkStore._fenced``). If the fence
  fails, the controller is deposed: drop the rest and feed
  ``ControllerMoved``.
- A conditional ``UpdatePartitionState`` (or ``CreatePartitionStates``) that
  loses (StaleVersion / NodeExists): run the other writes, drop every broker
  request and reply of the batch (they assume all writes succeeded), re-read
  the failed partitions' states and feed ``PartitionStatesStale`` before any
  other event; the controller decides again and re-sends the batch.
- Send each broker request to its broker only (requests to brokers that are
  not live are never emitted); a StopReplica with delete is answered by
  feeding ``StopReplicaResult``.
- ``CheckReassignments`` is a note to self: once the batch has run, feed
  ``ReassignmentIsrChange`` with its partitions (Kafka queues that event).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from moldau.cluster.controller.context import LiveBroker, TopicPartition
from moldau.cluster.zk.paths import PartitionState, ReplicaAssignment
from moldau.protocol.errors import ErrorCode


@dataclass(frozen=True)
class Fence:
    """The controller's lease: writes succeed only while /controller_epoch still
    has ``epoch_zk_version`` (Kafka: epoch and epochZkVersion)."""

    epoch: int
    epoch_zk_version: int


# --------------------------------------------------------------------------- ZooKeeper


@dataclass(frozen=True)
class CreatePartitionStates:
    """Create the state znodes of new partitions (and their parents); each
    state carries the controller epoch. Fails if one exists."""

    fence: Fence
    topic: str
    states: Mapping[int, PartitionState]


@dataclass(frozen=True)
class UpdatePartitionState:
    """Set one state znode if its version is still ``state.zk_version``."""

    fence: Fence
    topic: str
    partition: int
    state: PartitionState


@dataclass(frozen=True)
class DeleteTopic:
    """The end of a deletion: partition states, the topic and config znodes,
    and the deletion mark last (``ZkStore.delete_topic``)."""

    fence: Fence
    topic: str


@dataclass(frozen=True)
class RemoveDeletionMarks:
    """Remove /admin/delete_topics/T for topics that do not exist (Kafka does so
    for marks of unknown topics)."""

    fence: Fence
    topics: frozenset[str]


@dataclass(frozen=True)
class UpdateTopicAssignment:
    """Set these partitions' replicas (with those adding and removing) in
    /brokers/topics/T, keeping its other partitions as they are there
    (Kafka: updateReplicaAssignmentForPartition)."""

    fence: Fence
    topic: str
    partitions: Mapping[int, ReplicaAssignment]


@dataclass(frozen=True)
class RemoveZkReassignments:
    """Take partitions out of /admin/reassign_partitions, each only while the
    znode's target for it is the one given (any target for None), deleting
    the znode once it is empty (Kafka: maybeRemoveFromZkReassignment). A
    missing znode is left alone."""

    fence: Fence
    partitions: Mapping[TopicPartition, tuple[int, ...] | None]


# --------------------------------------------------------------------------- brokers


@dataclass(frozen=True)
class PartitionLeadership:
    """One partition's state as the controller announces it (Kafka's
    LeaderAndIsrPartitionState / UpdateMetadataPartitionState). ``topic_id``
    is the topic's (None for a topic created without one, a zero uuid on the
    wire); LeaderAndIsr v5+ and UpdateMetadata v7+ carry it."""

    topic: str
    partition: int
    controller_epoch: int
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    partition_epoch: int
    replicas: tuple[int, ...]
    offline_replicas: tuple[int, ...] = ()
    leader_recovery_state: int = 0
    is_new: bool = False
    topic_id: uuid.UUID | None = None
    adding_replicas: tuple[int, ...] = ()
    removing_replicas: tuple[int, ...] = ()


@dataclass(frozen=True)
class LeaderAndIsr:
    """Lead or follow these partitions (API key 4). ``broker_epoch`` is the
    recipient's: a restarted broker ignores requests meant for its previous
    life; ``controller_epoch`` fences requests of a deposed controller."""

    broker_id: int
    controller_id: int
    controller_epoch: int
    broker_epoch: int
    partitions: tuple[PartitionLeadership, ...]
    leaders: tuple[LiveBroker, ...]


@dataclass(frozen=True)
class UpdateMetadata:
    """Refresh the metadata cache (API key 6): every live broker, and the given
    partitions (all of them when a broker joins or a controller starts)."""

    broker_id: int
    controller_id: int
    controller_epoch: int
    broker_epoch: int
    partitions: tuple[PartitionLeadership, ...]
    brokers: tuple[LiveBroker, ...]


@dataclass(frozen=True)
class StopReplicaPartition:
    topic: str
    partition: int
    leader_epoch: int
    delete: bool


@dataclass(frozen=True)
class StopReplica:
    """Stop serving (and with ``delete``, remove) these replicas (API key 5)."""

    broker_id: int
    controller_id: int
    controller_epoch: int
    broker_epoch: int
    partitions: tuple[StopReplicaPartition, ...]


@dataclass(frozen=True)
class ControlledShutdownReply:
    """The answer to ControlledShutdown: the partitions the broker still leads
    (it retries until none is left, or gives up after its retries)."""

    broker_id: int
    error: ErrorCode
    remaining: frozenset[TopicPartition]


@dataclass(frozen=True)
class AlterPartitionResult:
    """One partition of the answer: the state now in ZooKeeper, or an error
    (then the numbers are meaningless, as in Kafka's response)."""

    topic: str
    partition: int
    error: ErrorCode
    leader: int = -1
    leader_epoch: int = -1
    isr: tuple[int, ...] = ()
    partition_epoch: int = -1
    leader_recovery_state: int = 0


@dataclass(frozen=True)
class AlterPartitionReply:
    """The answer to AlterPartition; ``error`` is request-wide (STALE_BROKER_EPOCH)."""

    broker_id: int
    error: ErrorCode
    partitions: tuple[AlterPartitionResult, ...]


@dataclass(frozen=True)
class ElectionOutcome:
    """One partition of the answer to ElectLeaders: NONE with the leader now
    in ZooKeeper, or why nothing was elected (Kafka's ApiError per partition)."""

    topic: str
    partition: int
    error: ErrorCode
    message: str | None = None
    leader: int = -1


@dataclass(frozen=True)
class ElectLeadersReply:
    """The answer to ElectLeaders, one outcome per partition asked about."""

    results: tuple[ElectionOutcome, ...]


@dataclass(frozen=True)
class ReassignmentOutcome:
    """One partition of the answer to AlterPartitionReassignments: NONE when
    the reassignment (or its cancel) started, else why not."""

    topic: str
    partition: int
    error: ErrorCode
    message: str | None = None


@dataclass(frozen=True)
class AlterReassignmentsReply:
    results: tuple[ReassignmentOutcome, ...]


@dataclass(frozen=True)
class ListReassignmentsReply:
    """The reassignments running, of the partitions asked about."""

    reassignments: Mapping[TopicPartition, ReplicaAssignment]


# --------------------------------------------------------------------------- to self


@dataclass(frozen=True)
class CheckReassignments:
    """Feed ``ReassignmentIsrChange`` for these partitions after this batch."""

    partitions: frozenset[TopicPartition]


ZkWrite = (
    CreatePartitionStates
    | UpdatePartitionState
    | UpdateTopicAssignment
    | RemoveZkReassignments
    | DeleteTopic
    | RemoveDeletionMarks
)
BrokerRequest = LeaderAndIsr | UpdateMetadata | StopReplica
Reply = (
    ControlledShutdownReply
    | AlterPartitionReply
    | ElectLeadersReply
    | AlterReassignmentsReply
    | ListReassignmentsReply
)
Command = ZkWrite | BrokerRequest | Reply | CheckReassignments
