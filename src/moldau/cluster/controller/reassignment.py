"""Partition reassignment rules (KIP-455), as pure functions.

Kafka 3.9's ZooKeeper controller (KafkaController.onPartitionReassignment,
ReplicaAssignment.reassignTo) keeps, per partition being reassigned:

- TRS, the target replicas, and ORS, the replicas it had before;
- RS = TRS ++ ORS without repeats (target first: the first target replica
  is the preferred leader from the start), written as the partition's
  replicas in the topic znode with AR = RS - ORS as ``adding_replicas`` and
  RR = RS - TRS as ``removing_replicas``.

A reassignment is complete when every TRS member is in the ISR; then the
partition's replicas become TRS and the removed ones are deleted. A cancel
is a reassignment back to ORS, which the znode holds only as RS without the
adding replicas, in RS's order (Kafka's originReplicas): cancelling [1, 2]
-> [2, 3] leaves [2, 1], whose preferred leader is 2; a new target for a partition already being
reassigned is taken relative to its ORS (the replicas it had before the
first target), so the replicas only the old target added are removed.

The order of the checks is Kafka's validateReplicas; moldau checks first
that the partition exists (Kafka answers a target of an unknown partition
UNKNOWN_TOPIC_OR_PARTITION only after validating the replicas, and a
cancel of one NO_REASSIGNMENT_IN_PROGRESS).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from moldau.cluster.zk.paths import ReplicaAssignment
from moldau.protocol.errors import ErrorCode

Refusal = tuple[ErrorCode, str]


def reassign_to(current: ReplicaAssignment, target: Sequence[int]) -> ReplicaAssignment:
    """The assignment while moving from ``current``'s origin to ``target``
    (Kafka: ReplicaAssignment.reassignTo). Back to the origin it is a plain
    assignment, with nothing adding or removing."""
    origin = current.origin_replicas()
    full = tuple(dict.fromkeys((*target, *origin)))
    return ReplicaAssignment(
        full,
        tuple(r for r in full if r not in origin),
        tuple(r for r in full if r not in target),
    )


def validate(
    target: Sequence[int], current: ReplicaAssignment, live: Collection[int]
) -> Refusal | None:
    """Kafka's checks of a target replica list, None when it is acceptable:
    not empty, no repeats, no negative id, and every replica it adds on a
    live broker (replicas it keeps or removes may be down)."""
    if not target:
        return (
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "Empty replica list specified in partition reassignment.",
        )
    if len(set(target)) != len(target):
        return (
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"Duplicate replica ids in partition reassignment replica list: {list(target)}",
        )
    if any(r < 0 for r in target):
        return (
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"Invalid broker id in replica list: {list(target)}",
        )
    adding = reassign_to(current, target).adding
    if not set(adding) <= set(live):
        return (
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "Replica assignment has brokers that are not alive. Replica list: "
            f"{list(adding)}, live broker list: {sorted(live)}",
        )
    return None


def same_size(target: Sequence[int], current: ReplicaAssignment) -> Refusal | None:
    """AlterPartitionReassignments v1 without allow_replication_factor_change
    (KIP-860): the target must have as many replicas as the origin."""
    origin = current.origin_replicas()
    if len(target) == len(origin):
        return None
    return (
        ErrorCode.INVALID_REPLICATION_FACTOR,
        f"The replication factor is changed from {len(origin)} to {len(target)}",
    )


def is_complete(assignment: ReplicaAssignment, isr: Collection[int]) -> bool:
    """Kafka's isReassignmentComplete: nothing to do, or every target
    replica in the ISR."""
    return not assignment.is_reassigning or set(assignment.target_replicas()) <= set(isr)
