"""Auto leader rebalance: which partitions to hand back to their preferred
replica (Kafka: KafkaController.checkAndTriggerAutoLeaderRebalance). Pure.

A partition's preferred leader is the first replica of its assignment.
Per broker, the imbalance is the share of the partitions it prefers that
another broker leads; above ``leader.imbalance.per.broker.percentage`` every
such partition whose preferred replica could lead now (live and in the ISR,
``election.preferred``) gets a preferred election. Partitions without a
leader yet count as balanced, as in Kafka.

The check runs ``FIRST_CHECK_DELAY_MS`` after a controller takes office and
then every ``leader.imbalance.check.interval.seconds`` (Kafka schedules the
same); the controller keeps the deadline, the shell only wakes it. An
election of the check whose write loses to a newer state is not retried
(the next check decides again); one an operator asked for is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

TopicPartition = tuple[str, int]

#: Kafka's delay of the first check after a failover (scheduleAutoLeaderRebalanceTask(5 s)).
FIRST_CHECK_DELAY_MS = 5_000


@dataclass(frozen=True)
class RebalanceConfig:
    """The broker's keys, with Kafka's defaults: auto.leader.rebalance.enable,
    leader.imbalance.check.interval.seconds (in ms here) and
    leader.imbalance.per.broker.percentage."""

    enabled: bool = True
    interval_ms: int = 300_000
    imbalance_percentage: int = 10


def partitions_to_rebalance(
    assignments: Mapping[TopicPartition, Sequence[int]],
    leaders: Mapping[TopicPartition, int],
    can_lead: Callable[[TopicPartition], bool],
    imbalance_percentage: int,
) -> list[TopicPartition]:
    """The partitions to give a preferred election: those of every broker
    whose imbalance exceeds the percentage, if their preferred replica
    ``can_lead``. ``assignments`` leaves out topics being deleted."""
    by_preferred: dict[int, list[TopicPartition]] = {}
    for tp, replicas in sorted(assignments.items()):
        if replicas:
            by_preferred.setdefault(replicas[0], []).append(tp)
    chosen: list[TopicPartition] = []
    for broker, preferred in sorted(by_preferred.items()):
        elsewhere = [tp for tp in preferred if tp in leaders and leaders[tp] != broker]
        if len(elsewhere) * 100 > imbalance_percentage * len(preferred):
            chosen.extend(tp for tp in elsewhere if can_lead(tp))
    return sorted(chosen)
