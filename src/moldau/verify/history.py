"""The events a ``moldau verify`` run records, and their JSON form. Pure.

Times are ``time.monotonic()`` seconds of the recording process: only their
order matters. A send's ``outcome`` is ``ok`` (acknowledged, with its
offset; in a transactional run, its transaction committed), ``failed`` (the
client gave up: the value may or may not be stored, as a timed-out write may
have been appended; in a transactional run, whether its transaction committed
is not known), ``unknown`` (no answer before the run ended) or ``aborted``
(its transaction was aborted: no read_committed consumer may see it). A
commit's ``offset`` is Kafka's: the next offset to read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["ok", "failed", "unknown", "aborted"]

#: The ``consumer`` of the reads made by the final full read.
FINAL_READER = "final"


@dataclass(frozen=True)
class Send:
    """One value handed to a producer, and what became of it. ``seq`` is the
    order in which ``producer`` sent its values."""

    producer: str
    seq: int
    value: str
    partition: int
    key: str | None
    sent: float
    outcome: Outcome = "unknown"
    offset: int | None = None
    done: float | None = None
    error: str | None = None
    #: The transaction it was sent in (transactional runs), numbered from 0.
    txn: int | None = None


@dataclass(frozen=True)
class Read:
    """One record a consumer received."""

    consumer: str
    partition: int
    offset: int
    value: str
    time: float


@dataclass(frozen=True)
class Commit:
    """One partition's offset in a group commit; ``ok`` is whether the
    coordinator accepted it (a failed commit may still have been applied)."""

    member: str
    partition: int
    offset: int
    started: float
    done: float
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class Assignment:
    """A member's whole assignment from ``time`` on (empty: it holds nothing)."""

    member: str
    time: float
    partitions: tuple[int, ...]


@dataclass(frozen=True)
class FinalRead:
    """How the final full read of one partition went: from offset 0 up to
    ``end`` (the high watermark it saw); ``complete`` when it got there."""

    partition: int
    end: int
    complete: bool


@dataclass
class History:
    """Everything one run recorded. ``idempotent`` says whether the producers
    were idempotent (only then is their order within a partition checked)."""

    topic: str
    partitions: int
    idempotent: bool = True
    sends: list[Send] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
    final: list[FinalRead] = field(default_factory=list)
    #: What the run did, for the report: start and end times, faults, settings.
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> History:
        """The history ``to_json`` gave; ValueError if it is not one."""
        try:
            return cls(
                topic=str(obj["topic"]),
                partitions=int(obj["partitions"]),
                idempotent=bool(obj.get("idempotent", True)),
                sends=[Send(**e) for e in obj.get("sends", [])],
                reads=[Read(**e) for e in obj.get("reads", [])],
                commits=[Commit(**e) for e in obj.get("commits", [])],
                assignments=[
                    Assignment(e["member"], e["time"], tuple(e["partitions"]))
                    for e in obj.get("assignments", [])
                ],
                final=[FinalRead(**e) for e in obj.get("final", [])],
                info=dict(obj.get("info", {})),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a moldau verify history: {exc!r}") from None
