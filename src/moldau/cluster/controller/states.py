"""The controller's partition and replica state tables, with Kafka's legal moves.

Pure. Kafka's controller (PartitionStateMachine, ReplicaStateMachine) keeps
one state per partition and one per replica and refuses a move whose
current state is not among the target's valid previous states. The tables
here do the same and raise ``IllegalStateTransition``, so a controller bug
shows up as an exception in a unit test rather than as a partition in a
state it cannot leave.

A key never seen is NonExistent; moving to NonExistent forgets the key (Kafka
removes it from its map too).

Where moldau departs from Kafka: Kafka logs an illegal move and skips that
partition; moldau raises, and ``move_all`` checks every key before changing
any, so a batch is all or nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from enum import Enum
from typing import Generic, TypeVar


class PartitionState(Enum):
    """Kafka's partition states, with their byte values."""

    NEW = 0
    ONLINE = 1
    OFFLINE = 2
    NON_EXISTENT = 3


class ReplicaState(Enum):
    """Kafka's replica states, with their byte values."""

    NEW = 1
    ONLINE = 2
    OFFLINE = 3
    DELETION_STARTED = 4
    DELETION_SUCCESSFUL = 5
    DELETION_INELIGIBLE = 6
    NON_EXISTENT = 7


_P = PartitionState
#: target -> the states it may be entered from.
PARTITION_PREVIOUS: Mapping[PartitionState, frozenset[PartitionState]] = {
    _P.NEW: frozenset({_P.NON_EXISTENT}),
    _P.ONLINE: frozenset({_P.NEW, _P.ONLINE, _P.OFFLINE}),
    _P.OFFLINE: frozenset({_P.NEW, _P.ONLINE, _P.OFFLINE}),
    _P.NON_EXISTENT: frozenset({_P.OFFLINE}),
}

_R = ReplicaState
REPLICA_PREVIOUS: Mapping[ReplicaState, frozenset[ReplicaState]] = {
    _R.NEW: frozenset({_R.NON_EXISTENT}),
    _R.ONLINE: frozenset({_R.NEW, _R.ONLINE, _R.OFFLINE, _R.DELETION_INELIGIBLE}),
    _R.OFFLINE: frozenset({_R.NEW, _R.ONLINE, _R.OFFLINE, _R.DELETION_INELIGIBLE}),
    _R.DELETION_STARTED: frozenset({_R.OFFLINE}),
    _R.DELETION_SUCCESSFUL: frozenset({_R.DELETION_STARTED}),
    _R.DELETION_INELIGIBLE: frozenset({_R.OFFLINE, _R.DELETION_STARTED}),
    _R.NON_EXISTENT: frozenset({_R.DELETION_SUCCESSFUL}),
}


class IllegalStateTransition(RuntimeError):
    """A move Kafka's state machines do not allow."""


K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=Enum)


class StateTable(Generic[K, S]):
    """States by key, moved only along legal transitions."""

    def __init__(self, previous: Mapping[S, frozenset[S]], absent: S) -> None:
        self._previous = previous
        self._absent = absent
        self._states: dict[K, S] = {}

    def get(self, key: K) -> S:
        return self._states.get(key, self._absent)

    def keys_in(self, *states: S) -> list[K]:
        return [key for key, state in self._states.items() if state in states]

    def __len__(self) -> int:
        return len(self._states)

    def check(self, key: K, target: S) -> None:
        current = self.get(key)
        if current not in self._previous[target]:
            raise IllegalStateTransition(
                f"{key!r}: illegal move from {current.name} to {target.name}"
            )

    def move(self, key: K, target: S) -> S:
        """Move one key; returns the state it left."""
        self.check(key, target)
        current = self.get(key)
        if target is self._absent:
            self._states.pop(key, None)
        else:
            self._states[key] = target
        return current

    def forget(self, key: K) -> None:
        """Drop a key without a move: its object vanished outside the state
        machine (Kafka's ControllerContext.removeTopic does the same when a
        topic znode is deleted behind the controller's back)."""
        self._states.pop(key, None)

    def move_all(self, keys: Iterable[K], target: S) -> None:
        """Move every key, or none of them if any move is illegal."""
        keys = list(keys)
        for key in keys:
            self.check(key, target)
        for key in keys:
            self.move(key, target)


def partition_table() -> StateTable[tuple[str, int], PartitionState]:
    """Partitions keyed by (topic, partition)."""
    return StateTable(PARTITION_PREVIOUS, PartitionState.NON_EXISTENT)


def replica_table() -> StateTable[tuple[str, int, int], ReplicaState]:
    """Replicas keyed by (topic, partition, broker id)."""
    return StateTable(REPLICA_PREVIOUS, ReplicaState.NON_EXISTENT)
