"""The recent rebalances of a group: what started each, what it cost.

A rebalance stops the whole group (with the eager protocol every consumer
gives up its partitions) until the new assignment arrives. Unnecessary ones are
what users fight, and the cause is usually a single member: one that restarted
without static membership, one whose poll loop took longer than
max.poll.interval.ms, one whose heartbeats stopped. Each record names that
member and the event, the members before and after, and how long the group
could not consume, so ``moldau groups describe GROUP --history`` can answer
"why did my group rebalance?".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: Where brokers keep ended rebalances for ``moldau groups describe --history``:
#: one JSON record (:meth:`RebalanceRecord.to_json`) per rebalance, keyed by group id.
HISTORY_TOPIC = "__moldau_group_history"


class Trigger(StrEnum):
    """What started a rebalance."""

    MEMBER_JOIN = "member joined"
    MEMBER_LEAVE = "member left"
    SESSION_TIMEOUT = "member's session timed out"
    METADATA_CHANGE = "member rejoined with changed metadata"
    LEADER_REJOIN = "leader rejoined"
    STATIC_MEMBER_REJOIN = "static member rejoined"
    SYNC_TIMEOUT = "members did not SyncGroup within the rebalance timeout"


class Outcome(StrEnum):
    """How a rebalance ended."""

    #: The leader's assignment arrived; the group consumes again.
    STABLE = "stable"
    #: No member was left; the group is Empty.
    EMPTY = "empty"
    #: Another rebalance began before the assignment arrived.
    RESTARTED = "restarted"


@dataclass(frozen=True)
class RebalanceRecord:
    trigger: Trigger
    #: The members whose join, leave, timeout or rejoin started it.
    member_ids: tuple[str, ...]
    #: The reason the client gave (JoinGroup v8+, LeaveGroup v5+), if any.
    reason: str | None
    generation_before: int
    #: Members of ``generation_before``.
    members_before: tuple[str, ...]
    started_ms: int
    #: The generation the join phase produced (None while joining).
    generation: int | None = None
    members_after: tuple[str, ...] = ()
    #: Dynamic members dropped because they did not rejoin in time.
    dropped: tuple[str, ...] = ()
    joined_ms: int | None = None
    ended_ms: int | None = None
    outcome: Outcome | None = None

    @property
    def paused_ms(self) -> int | None:
        """How long the group could not consume: start to stable again."""
        return None if self.ended_ms is None else self.ended_ms - self.started_ms

    def dropping(self, members: tuple[str, ...]) -> RebalanceRecord:
        return dataclasses.replace(self, dropped=self.dropped + members)

    def joined(self, now: int, generation: int, members: tuple[str, ...]) -> RebalanceRecord:
        return dataclasses.replace(
            self, generation=generation, members_after=members, joined_ms=now
        )

    def ended(self, now: int, outcome: Outcome) -> RebalanceRecord:
        return dataclasses.replace(self, ended_ms=now, outcome=outcome)

    def to_json(self, group_id: str) -> bytes:
        """The record as the broker appends it to ``__moldau_group_history``.

        Enums go by name, which stays put when their prose changes; a reader
        that finds a name it does not know (a newer broker) skips the record.
        """
        fields: dict[str, Any] = {"group_id": group_id, **dataclasses.asdict(self)}
        fields["trigger"] = self.trigger.name
        fields["outcome"] = None if self.outcome is None else self.outcome.name
        fields["paused_ms"] = self.paused_ms
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> tuple[str, RebalanceRecord]:
        """(group id, record) from :meth:`to_json`'s bytes; ValueError if unreadable."""
        try:
            fields = json.loads(data)
            outcome = fields["outcome"]
            record = cls(
                trigger=Trigger[fields["trigger"]],
                member_ids=tuple(fields["member_ids"]),
                reason=fields["reason"],
                generation_before=fields["generation_before"],
                members_before=tuple(fields["members_before"]),
                started_ms=fields["started_ms"],
                generation=fields["generation"],
                members_after=tuple(fields["members_after"]),
                dropped=tuple(fields["dropped"]),
                joined_ms=fields["joined_ms"],
                ended_ms=fields["ended_ms"],
                outcome=None if outcome is None else Outcome[outcome],
            )
            return str(fields["group_id"]), record
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a rebalance record: {exc!r}") from None

    def cause(self) -> str:
        """What started it, who, and the reason the client gave."""
        cause = self.trigger.value
        if self.member_ids:
            cause += f" ({', '.join(self.member_ids)})"
        if self.reason:
            cause += f": {self.reason}"
        return cause

    def summary(self) -> str:
        """One line for a human: cause, membership change, cost."""
        cause = self.cause()
        if self.generation is None:
            generation = members = "?"
        else:
            generation, members = str(self.generation), str(len(self.members_after))
        line = (
            f"generation {self.generation_before} -> {generation}: {cause}; "
            f"members {len(self.members_before)} -> {members}"
        )
        if self.dropped:
            line += f", dropped for not rejoining: {', '.join(self.dropped)}"
        if self.outcome is None:
            return line + "; in progress"
        return line + f"; {self.outcome.value} after {self.paused_ms} ms"
