"""Leader election rules, as pure functions (Kafka: Election.scala and
PartitionLeaderElectionAlgorithms).

Every rule walks the partition's replica list in order, so the preferred
replica (the first) wins whenever it qualifies, and picks the first replica
that is live and in the ISR; they differ in which replicas they look at and
what the new ISR is. Each election bumps the leader epoch, which is what
fences a deposed leader's followers and clients (KIP-320).

Where moldau departs from Kafka: results are plain values (no controller
context, no metrics); the unclean-election meter is the ``unclean`` flag of
the result, for the caller to count.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

NO_LEADER = -1
RECOVERED = 0
RECOVERING = 1


@dataclass(frozen=True)
class LeaderAndIsr:
    """A partition's leader, leader epoch and ISR (Kafka: LeaderAndIsr).

    ``partition_epoch`` is the version of the partition-state znode this was
    read from; writes of the next state are conditional on it.
    """

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    leader_recovery_state: int = RECOVERED
    partition_epoch: int = 0

    def with_leader(self, leader: int, isr: Sequence[int] | None = None) -> LeaderAndIsr:
        """The next leader epoch: a new (or the same) leader, the ISR as given."""
        return replace(
            self,
            leader=leader,
            leader_epoch=self.leader_epoch + 1,
            isr=self.isr if isr is None else tuple(isr),
        )


@dataclass(frozen=True)
class ElectionResult:
    """The new state, or None when no replica qualifies (the partition stays
    without a leader); ``replicas`` are those the rule considered live."""

    leader_and_isr: LeaderAndIsr | None
    replicas: tuple[int, ...]
    unclean: bool = False


def _first(candidates: Sequence[int], *allowed: Collection[int]) -> int | None:
    return next((r for r in candidates if all(r in group for group in allowed)), None)


def initial(assignment: Sequence[int], live: Collection[int]) -> LeaderAndIsr | None:
    """A new partition: the first live replica leads, every live replica is in
    sync (nothing is written yet), leader epoch 0. None when none is live."""
    live_replicas = tuple(r for r in assignment if r in live)
    if not live_replicas:
        return None
    return LeaderAndIsr(live_replicas[0], 0, live_replicas)


def offline(
    assignment: Sequence[int],
    current: LeaderAndIsr,
    live: Collection[int],
    *,
    unclean_allowed: bool,
    leader_recovery_supported: bool = True,
) -> ElectionResult:
    """The leader is gone (or the partition is new without one).

    Clean: the first live replica in the ISR; the ISR keeps its live members.
    Unclean (only when allowed and no ISR member is live): the first live
    replica, alone in the ISR and marked RECOVERING, since it may lack
    acknowledged records.
    """
    live_replicas = tuple(r for r in assignment if r in live)
    leader = _first(assignment, live, current.isr)
    if leader is not None:
        isr = tuple(r for r in current.isr if r in live)
        return ElectionResult(current.with_leader(leader, isr), live_replicas)
    if not unclean_allowed or not live_replicas:
        return ElectionResult(None, live_replicas)
    leader = live_replicas[0]
    chosen = current.with_leader(leader, (leader,))
    if leader_recovery_supported:
        chosen = replace(chosen, leader_recovery_state=RECOVERING)
    return ElectionResult(chosen, live_replicas, unclean=True)


def reassigning(
    target_replicas: Sequence[int], current: LeaderAndIsr, live: Collection[int]
) -> ElectionResult:
    """A reassignment moves the leader off a replica being removed: the first
    target replica that is live and in the ISR; the ISR is unchanged."""
    leader = _first(target_replicas, live, current.isr)
    chosen = current.with_leader(leader) if leader is not None else None
    return ElectionResult(chosen, tuple(target_replicas))


def preferred(
    assignment: Sequence[int], current: LeaderAndIsr, live: Collection[int]
) -> ElectionResult:
    """Move leadership back to the first replica, only if it is live and in sync."""
    head = assignment[:1]
    leader = _first(head, live, current.isr)
    chosen = current.with_leader(leader) if leader is not None else None
    return ElectionResult(chosen, tuple(assignment))


def controlled_shutdown(
    assignment: Sequence[int],
    current: LeaderAndIsr,
    live_or_shutting_down: Collection[int],
    shutting_down: Collection[int],
) -> ElectionResult:
    """A broker asks to shut down: lead from the first live, in-sync replica
    that is not shutting down; the shutting-down brokers leave the ISR."""
    considered = tuple(r for r in assignment if r in live_or_shutting_down)
    staying = set(live_or_shutting_down) - set(shutting_down)
    leader = _first(assignment, staying, current.isr)
    if leader is None:
        return ElectionResult(None, considered)
    isr = tuple(r for r in current.isr if r not in shutting_down)
    return ElectionResult(current.with_leader(leader, isr), considered)
