"""Find in a ``History`` what a correct Kafka-compatible cluster never does. Pure.

The kinds of violation (``KINDS``), each judged only on what the history
proves, never on timing guesses:

- ``lost``: an acknowledged value that is not in the log. With a complete
  final read of its partition: absent from it. Without one: never read by
  anyone although a read of its partition went past its offset.
- ``duplicated``: one value read at two different offsets.
- ``reordered``: for idempotent producers, two values of one producer in one
  partition whose offsets are not in the order they were sent (positions from
  the reads, else from the acknowledgements).
- ``offset_conflict``: one offset read with two different values, or read
  with a value other than the one acknowledged there.
- ``skipped``: a group member that, newly assigned a partition, first reads
  it above a value the log holds at or above every offset committed before
  the assignment (or above 0 with no commit: the topic is fresh and the
  group resets to the earliest), or that jumps over a value the log holds
  while it keeps the partition. The log holds a value where someone read
  one or a send was acknowledged (offsets of aborted transactions and of
  transaction markers hold none a read_committed consumer sees).
- ``commit_lost``: a group member that, newly assigned a partition, first
  reads it below an offset whose commit the coordinator had accepted before
  the assignment: the group forgot a committed offset (re-reading is allowed
  by at-least-once delivery, forgetting an accepted commit is not).
- ``double_owned``: member A keeps a partition from before member B's
  accepted commit of it until after A's own accepted commit of it: the
  coordinator took commits for one partition from two owners of one
  generation (a commit is accepted only from the current generation, and A
  never gave the partition up in between).

Transactional runs (sends with a ``txn``; consumers read_committed) add:

- ``aborted_read``: a value of an aborted transaction was read.
- ``torn_transaction``: the complete final read holds some values of a
  transaction and not others (judged where every partition it wrote was
  read completely): a transaction is seen whole or not at all, whatever its
  outcome. Values of committed transactions are ``ok`` sends, so one that is
  missing is also ``lost``, and one read twice ``duplicated``.

A ``failed`` or ``unknown`` send may be present or absent: neither is a
violation (a timed-out write may have been appended).
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .history import FINAL_READER, Commit, History, Read, Send

KINDS = (
    "lost",
    "duplicated",
    "reordered",
    "offset_conflict",
    "skipped",
    "commit_lost",
    "double_owned",
    "aborted_read",
    "torn_transaction",
)
#: How many examples of each kind a verdict keeps.
EXAMPLES = 5


@dataclass
class Verdict:
    """How many violations of each kind, the first ``EXAMPLES`` of each, and
    figures about the run (sends, acknowledgements, reads)."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    examples: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {kind: [] for kind in KINDS}
    )
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def add(self, kind: str, example: dict[str, Any]) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < EXAMPLES:
            examples.append(example)


def check(history: History) -> Verdict:
    """Every violation in ``history``."""
    verdict = Verdict()
    index = _Index(history)
    for kind, finder in (
        ("lost", _lost),
        ("duplicated", _duplicated),
        ("reordered", _reordered),
        ("offset_conflict", _offset_conflicts),
        ("skipped", _skipped),
        ("commit_lost", _commit_lost),
        ("double_owned", _double_owned),
        ("aborted_read", _aborted_read),
        ("torn_transaction", _torn_transactions),
    ):
        for example in finder(history, index):
            verdict.add(kind, example)
    verdict.stats = _stats(history, index)
    return verdict


class _Index:
    """The history looked at by value, by offset and by member."""

    def __init__(self, history: History) -> None:
        self.acked: list[Send] = [s for s in history.sends if s.outcome == "ok"]
        #: value -> the (partition, offset) pairs it was read at
        self.read_at: dict[str, set[tuple[int, int]]] = defaultdict(set)
        #: (partition, offset) -> the values read there
        self.values_at: dict[tuple[int, int], set[str]] = defaultdict(set)
        self.max_read: dict[int, int] = {}
        #: partition -> the values the final read found below its end
        self.final_values: dict[int, set[str]] = defaultdict(set)
        self.complete = {f.partition: f.end for f in history.final if f.complete}
        #: (consumer, partition) -> its reads in time order
        self.reads_by: dict[tuple[str, int], list[Read]] = defaultdict(list)
        for read in history.reads:
            where = (read.partition, read.offset)
            self.read_at[read.value].add(where)
            self.values_at[where].add(read.value)
            self.max_read[read.partition] = max(self.max_read.get(read.partition, -1), read.offset)
            if read.consumer == FINAL_READER:
                if read.offset < self.complete.get(read.partition, read.offset + 1):
                    self.final_values[read.partition].add(read.value)
            else:
                self.reads_by[(read.consumer, read.partition)].append(read)
        for reads in self.reads_by.values():
            reads.sort(key=lambda r: r.time)
        #: (partition, offset) where the log holds a value consumers see
        self.holds: set[tuple[int, int]] = set(self.values_at)
        self.holds.update((s.partition, s.offset) for s in self.acked if s.offset is not None)


def _lost(history: History, index: _Index) -> Iterator[dict[str, Any]]:
    for send in index.acked:
        assert send.offset is not None
        if send.partition in index.complete:
            missing = send.value not in index.final_values[send.partition]
        else:
            missing = (
                send.value not in index.read_at
                and index.max_read.get(send.partition, -1) > send.offset
            )
        if missing:
            yield {"value": send.value, "partition": send.partition, "offset": send.offset}


def _duplicated(history: History, index: _Index) -> Iterator[dict[str, Any]]:
    for value, places in index.read_at.items():
        offsets = {offset for _, offset in places}
        if len(places) > 1 and (len(offsets) > 1 or len({p for p, _ in places}) > 1):
            yield {"value": value, "at": sorted(places)}


def _reordered(history: History, index: _Index) -> Iterator[dict[str, Any]]:
    if not history.idempotent:
        return
    by_producer: dict[tuple[str, int], list[tuple[int, str, int]]] = defaultdict(list)
    for send in history.sends:
        places = index.read_at.get(send.value, set())
        if len(places) == 1:
            ((partition, offset),) = places
        elif not places and send.outcome == "ok":
            assert send.offset is not None
            partition, offset = send.partition, send.offset
        else:
            continue  # absent, or duplicated (reported as such)
        by_producer[(send.producer, partition)].append((send.seq, send.value, offset))
    for (producer, partition), values in sorted(by_producer.items()):
        values.sort()
        for (_, first, first_offset), (_, then, then_offset) in itertools.pairwise(values):
            if then_offset <= first_offset:
                yield {
                    "producer": producer,
                    "partition": partition,
                    "sent_first": [first, first_offset],
                    "sent_then": [then, then_offset],
                }


def _offset_conflicts(history: History, index: _Index) -> Iterator[dict[str, Any]]:
    values_at: dict[tuple[int, int], set[str]] = defaultdict(set)
    for where, values in index.values_at.items():
        values_at[where] |= values
    for send in index.acked:
        assert send.offset is not None
        values_at[(send.partition, send.offset)].add(send.value)
    for (partition, offset), values in sorted(values_at.items()):
        if len(values) > 1:
            yield {"partition": partition, "offset": offset, "values": sorted(values)}


@dataclass(frozen=True)
class _Holding:
    """A member holding a partition from ``start`` until ``end`` (None: to the end)."""

    member: str
    partition: int
    start: float
    end: float | None

    def covers(self, time: float) -> bool:
        return self.start <= time and (self.end is None or time < self.end)


def _holdings(history: History) -> list[_Holding]:
    held: dict[str, dict[int, float]] = defaultdict(dict)
    holdings = []
    for change in sorted(history.assignments, key=lambda a: a.time):
        current = held[change.member]
        for partition in sorted(set(current) - set(change.partitions)):
            holdings.append(_Holding(change.member, partition, current.pop(partition), change.time))
        for partition in change.partitions:
            current.setdefault(partition, change.time)
    for member, current in held.items():
        holdings += [_Holding(member, p, start, None) for p, start in current.items()]
    return sorted(holdings, key=lambda h: (h.start, h.member, h.partition))


def _resumptions(
    history: History, index: _Index
) -> Iterator[tuple[_Holding, list[Read], list[Commit]]]:
    """Each time a member held a partition and read it: its reads while it
    held it, and the group's commits of that partition begun before."""
    commits = sorted(history.commits, key=lambda c: c.started)
    starts = [c.started for c in commits]
    for holding in _holdings(history):
        reads = list(_between(index.reads_by[(holding.member, holding.partition)], holding))
        if reads:
            before = commits[: bisect.bisect_left(starts, holding.start)]
            yield holding, reads, [c for c in before if c.partition == holding.partition]


def _skipped(history: History, index: _Index) -> Iterator[dict[str, Any]]:
    for holding, reads, before in _resumptions(history, index):
        committed = max((c.offset for c in before), default=0)
        first = reads[0]
        if any((holding.partition, o) in index.holds for o in range(committed, first.offset)):
            yield {
                "member": holding.member,
                "partition": holding.partition,
                "committed": committed,
                "first_read": first.offset,
            }
        for previous, read in itertools.pairwise(reads):
            jumped = range(previous.offset + 1, read.offset)
            if any((holding.partition, offset) in index.holds for offset in jumped):
                yield {
                    "member": holding.member,
                    "partition": holding.partition,
                    "read": previous.offset,
                    "then": read.offset,
                }


def _commit_lost(history: History, index: _Index) -> Iterator[dict[str, Any]]:
    for holding, reads, before in _resumptions(history, index):
        accepted = [c for c in before if c.ok and c.done < holding.start]
        committed = max((c.offset for c in accepted), default=0)
        if reads[0].offset < committed:
            yield {
                "member": holding.member,
                "partition": holding.partition,
                "committed": committed,
                "first_read": reads[0].offset,
            }


def _between(reads: list[Read], holding: _Holding) -> Iterable[Read]:
    times = [r.time for r in reads]
    low = bisect.bisect_left(times, holding.start)
    high = len(reads) if holding.end is None else bisect.bisect_left(times, holding.end)
    return reads[low:high]


def _double_owned(history: History, index: _Index) -> Iterator[dict[str, Any]]:
    accepted: dict[int, list[Commit]] = defaultdict(list)
    for commit in history.commits:
        if commit.ok:
            accepted[commit.partition].append(commit)
    for commits in accepted.values():
        commits.sort(key=lambda c: c.started)
    for holding in _holdings(history):
        commits = accepted.get(holding.partition, [])
        own = [c for c in commits if c.member == holding.member and holding.covers(c.started)]
        if not own:
            continue
        last = own[-1]
        for other in commits:
            if other.started >= last.started:
                break
            if (
                other.member != holding.member
                and other.started > holding.start
                and other.done < last.started
            ):
                yield {
                    "partition": holding.partition,
                    "member": holding.member,
                    "held_from": holding.start,
                    "other": other.member,
                    "other_commit": [other.offset, other.done],
                    "own_commit": [last.offset, last.started],
                }
                break


def _aborted_read(history: History, index: _Index) -> Iterator[dict[str, Any]]:
    for send in history.sends:
        if send.outcome == "aborted" and send.value in index.read_at:
            places = sorted(index.read_at[send.value])
            yield {"value": send.value, "txn": send.txn, "read_at": places}


def _torn_transactions(history: History, index: _Index) -> Iterator[dict[str, Any]]:
    by_txn: dict[int, list[Send]] = defaultdict(list)
    for send in history.sends:
        if send.txn is not None:
            by_txn[send.txn].append(send)
    for txn, sends in sorted(by_txn.items()):
        if not all(s.partition in index.complete for s in sends):
            continue
        seen = [s.value for s in sends if s.value in index.final_values[s.partition]]
        if seen and len(seen) < len(sends):
            missing = [s.value for s in sends if s.value not in seen]
            outcome = sends[0].outcome
            yield {"txn": txn, "outcome": outcome, "seen": seen[:5], "missing": missing[:5]}


def _stats(history: History, index: _Index) -> dict[str, Any]:
    outcomes = {"ok": 0, "failed": 0, "unknown": 0, "aborted": 0}
    for send in history.sends:
        outcomes[send.outcome] += 1
    group_reads = sum(len(r) for r in index.reads_by.values())
    acked_done = [s.done for s in index.acked if s.done is not None]
    span = max(acked_done, default=0.0) - min((s.sent for s in history.sends), default=0.0)
    return {
        "acked_per_second": round(len(acked_done) / span, 1) if span > 0 else None,
        "sent": len(history.sends),
        "acknowledged": outcomes["ok"],
        "failed": outcomes["failed"],
        "unknown": outcomes["unknown"],
        "aborted": outcomes["aborted"],
        "transactions": len({s.txn for s in history.sends if s.txn is not None}),
        "group_reads": group_reads,
        "final_reads": len(history.reads) - group_reads,
        "distinct_values_read": len(index.read_at),
        "commits": len(history.commits),
        "rebalances": len(history.assignments),
        "partitions_fully_read": len(index.complete),
    }
