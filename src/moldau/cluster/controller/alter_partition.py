"""The controller's rules for a leader's AlterPartition (API key 56), as pure functions.

In Kafka 3.9's ZooKeeper mode a leader no longer writes its ISR to
ZooKeeper itself: it sends AlterPartition to the controller, which checks
the request against what it knows, writes the state conditionally and
answers with the state written (Kafka: KafkaController.processAlterPartition,
KIP-497, KIP-841). The leader epoch stays: only the leader's ISR (or its
leader recovery state) changes, the partition epoch (znode version) grows.

The checks, in Kafka's order, for one partition:

1. unknown partition (or one being deleted): UNKNOWN_TOPIC_OR_PARTITION;
2. a leader or partition epoch newer than the controller's: NOT_CONTROLLER
   (this controller is probably deposed; the leader looks for the new one);
3. an older leader epoch: FENCED_LEADER_EPOCH;
4. already the state asked for: success without a write (idempotent retries);
5. an older partition epoch: INVALID_UPDATE_VERSION;
6. RECOVERING with more than one ISR member, or back from RECOVERED to
   RECOVERING: INVALID_REQUEST;
7. an ISR member that is not a replica on a live broker that is not
   shutting down: INELIGIBLE_REPLICA (KIP-841); the leader itself may be
   shutting down (its leadership could not be moved).

Where moldau departs from Kafka: a request from a broker that is not the
partition's leader gets NOT_LEADER_OR_FOLLOWER and an ISR without the
leader INVALID_REQUEST (Kafka's ZooKeeper controller would write them).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from moldau.cluster.zk.paths import RECOVERED, RECOVERING, PartitionState
from moldau.protocol.errors import ErrorCode


@dataclass(frozen=True)
class AlterPartitionItem:
    """One partition of an AlterPartition request: the state the leader wants."""

    topic: str
    partition: int
    leader_epoch: int
    isr: tuple[int, ...]
    partition_epoch: int
    leader_recovery_state: int = RECOVERED


def is_applied(state: PartitionState, leader: int, item: AlterPartitionItem) -> bool:
    """The state already is what ``leader`` asked for (the partition epoch aside)."""
    return (state.leader, state.leader_epoch, tuple(state.isr), state.leader_recovery_state) == (
        leader,
        item.leader_epoch,
        item.isr,
        item.leader_recovery_state,
    )


def check(
    current: PartitionState | None,
    replicas: Sequence[int],
    eligible: Collection[int],
    leader: int,
    item: AlterPartitionItem,
) -> ErrorCode | None:
    """The error for ``item``, ErrorCode.NONE when the state already matches,
    or None when the controller should write it. ``eligible`` are the live
    brokers that are not shutting down."""
    if current is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    if item.partition_epoch > current.zk_version or item.leader_epoch > current.leader_epoch:
        return ErrorCode.NOT_CONTROLLER
    if item.leader_epoch < current.leader_epoch:
        return ErrorCode.FENCED_LEADER_EPOCH
    if current.leader != leader:
        return ErrorCode.NOT_LEADER_OR_FOLLOWER
    if is_applied(current, leader, item):
        return ErrorCode.NONE
    if item.partition_epoch < current.zk_version:
        return ErrorCode.INVALID_UPDATE_VERSION
    if item.leader_recovery_state == RECOVERING and len(item.isr) > 1:
        return ErrorCode.INVALID_REQUEST
    if current.leader_recovery_state == RECOVERED and item.leader_recovery_state == RECOVERING:
        return ErrorCode.INVALID_REQUEST
    if leader not in item.isr:
        return ErrorCode.INVALID_REQUEST
    if any(r not in replicas or (r not in eligible and r != leader) for r in item.isr):
        return ErrorCode.INELIGIBLE_REPLICA
    return None
