"""Kafka's classic consumer group coordinator, as a pure core (see coordinator.py)."""

from moldau.group.config import GroupConfig
from moldau.group.coordinator import GroupCoordinator
from moldau.group.history import Outcome, RebalanceRecord, Trigger
from moldau.group.model import GroupState
from moldau.group.placement import partition_for_group

__all__ = [
    "GroupConfig",
    "GroupCoordinator",
    "GroupState",
    "Outcome",
    "RebalanceRecord",
    "Trigger",
    "partition_for_group",
]
