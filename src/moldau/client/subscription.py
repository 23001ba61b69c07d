"""Which partitions a consumer reads, and where it is in each.

Pure bookkeeping, no I/O. The user fills it with ``assign``, or a group
member (``group_member.GroupConsumer``) does from the group's assignment;
the fetch loop is the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .types import TopicPartition

__all__ = ["RESET_STRATEGIES", "PartitionState", "SubscriptionState"]

#: ``auto_offset_reset`` values: Kafka's names.
RESET_STRATEGIES = ("earliest", "latest", "none")


@dataclass(slots=True)
class PartitionState:
    #: Offset of the next record to hand out; None until known.
    position: int | None = None
    #: "earliest"/"latest" while the position must be looked up.
    reset: str | None = None
    paused: bool = False


class SubscriptionState:
    """Assigned partitions with their positions and pending resets."""

    def __init__(self, default_reset: str = "latest") -> None:
        if default_reset not in RESET_STRATEGIES:
            raise ValueError(
                f"auto_offset_reset must be one of {', '.join(RESET_STRATEGIES)}, "
                f"not {default_reset!r}"
            )
        self.default_reset = default_reset
        self._parts: dict[TopicPartition, PartitionState] = {}

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Replace the assignment; partitions kept from before keep their position."""
        wanted = list(dict.fromkeys(partitions))
        self._parts = {tp: self._parts.get(tp) or self._new_state() for tp in wanted}

    def _new_state(self) -> PartitionState:
        reset = self.default_reset if self.default_reset != "none" else None
        return PartitionState(reset=reset)

    def assignment(self) -> set[TopicPartition]:
        return set(self._parts)

    def is_assigned(self, tp: TopicPartition) -> bool:
        return tp in self._parts

    def state(self, tp: TopicPartition) -> PartitionState:
        try:
            return self._parts[tp]
        except KeyError:
            raise ValueError(f"{tp.topic}-{tp.partition} is not assigned") from None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        state = self.state(tp)
        state.position = offset
        state.reset = None

    def request_reset(self, tp: TopicPartition, strategy: str) -> None:
        """Look the position up again with ``strategy`` (earliest/latest)."""
        state = self.state(tp)
        state.position = None
        state.reset = strategy

    def position(self, tp: TopicPartition) -> int | None:
        return self.state(tp).position

    def needs_reset(self) -> dict[TopicPartition, str]:
        return {tp: s.reset for tp, s in self._parts.items() if s.reset is not None}

    def missing_position(self) -> list[TopicPartition]:
        """Partitions without position or reset strategy (auto_offset_reset=none)."""
        return [tp for tp, s in self._parts.items() if s.position is None and s.reset is None]

    def fetchable(self) -> list[TopicPartition]:
        return [tp for tp, s in self._parts.items() if s.position is not None and not s.paused]

    def pause(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.state(tp).paused = True

    def resume(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.state(tp).paused = False
