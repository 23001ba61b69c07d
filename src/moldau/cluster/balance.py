"""The plan of ``moldau cluster rebalance``: where every replica should be.

Pure: no I/O, no randomness; the same input gives the same plan whatever
the order of its mappings.

Given the brokers (ids and racks), the current replicas of every partition
considered, and the brokers to add and to remove, ``plan_rebalance`` returns
a target assignment that, in this order of priority:

1. holds no replica on a removed broker, keeps every partition's
   replication factor and never puts two replicas of a partition on one
   broker (hard rules: a plan that cannot keep them is refused);
2. is rack-aware: each partition's replicas span ``min(RF, racks)``
   distinct racks, as Kafka's rack-aware placement does (a broker without
   a rack counts as a rack of its own);
3. balances replica counts over the brokers (max - min <= 1 where the
   racks allow it);
4. balances preferred leaders (first replicas) over the brokers, by
   reordering replicas only: no data moves for it;
5. moves as few replicas as it can: a replica leaves its broker only for
   rule 1, 2 or 3; moves go from the most loaded broker to the least
   loaded one, and a replica already planned to move is moved again (free)
   before one that stays.

The brokers it balances over are those that hold a replica now plus the
added ones, minus the removed ones: a broker that registered but holds
nothing takes replicas only when named with ``add``, as Kafka's
kafka-reassign-partitions.sh uses only the brokers of ``--broker-list``.

Where moldau departs from Kafka: Kafka's tool ``--generate`` reassigns every
partition from scratch (most replicas move); this planner starts from the
current assignment and moves only what the rules need.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

TopicPartition = tuple[str, int]
Assignment = Mapping[TopicPartition, Sequence[int]]


class BalanceError(ValueError):
    """No plan can keep the hard rules; the message is one line."""


@dataclass(frozen=True)
class Plan:
    """The current and the target replicas of every partition considered,
    and the brokers involved (those balanced over and those removed)."""

    current: dict[TopicPartition, tuple[int, ...]]
    target: dict[TopicPartition, tuple[int, ...]]
    brokers: tuple[int, ...]

    @property
    def changes(self) -> dict[TopicPartition, tuple[tuple[int, ...], tuple[int, ...]]]:
        """(before, after) of each partition whose replicas or order change."""
        return {
            tp: (self.current[tp], after)
            for tp, after in sorted(self.target.items())
            if after != self.current[tp]
        }

    @property
    def replica_moves(self) -> int:
        """How many replicas are copied to a broker that did not hold them."""
        return sum(moved_replicas(self.current[tp], after) for tp, after in self.target.items())


def moved_replicas(before: Sequence[int], after: Sequence[int]) -> int:
    return len(set(after) - set(before))


def replica_counts(assignment: Assignment, brokers: Iterable[int]) -> dict[int, int]:
    """Replicas per broker (every one of ``brokers`` listed, 0 when none)."""
    counts = dict.fromkeys(sorted(brokers), 0)
    for replicas in assignment.values():
        for broker in replicas:
            counts[broker] = counts.get(broker, 0) + 1
    return counts


def leader_counts(assignment: Assignment, brokers: Iterable[int]) -> dict[int, int]:
    """Preferred leaders (first replicas) per broker."""
    counts = dict.fromkeys(sorted(brokers), 0)
    for replicas in assignment.values():
        if replicas:
            counts[replicas[0]] = counts.get(replicas[0], 0) + 1
    return counts


def plan_rebalance(
    racks: Mapping[int, str | None],
    assignment: Assignment,
    add: Collection[int] = (),
    remove: Collection[int] = (),
) -> Plan:
    """The target assignment (see the module doc). ``racks`` maps every
    live broker to its rack (None: no rack)."""
    current = {tp: tuple(replicas) for tp, replicas in sorted(assignment.items())}
    eligible = _eligible(racks, current, set(add), set(remove))
    state = _State(current, eligible, {b: racks[b] for b in eligible})
    state.place_forced_moves()
    for tp in state.partitions:
        while state.rack_count(tp) < state.racks_wanted(tp):
            state.spread_racks(tp)
    while state.balance_replicas_once():
        pass
    while state.balance_leaders_once():
        pass
    held = {r for replicas in current.values() for r in replicas}
    return Plan(current, state.target(), tuple(sorted(eligible | (held & set(remove)))))


def _eligible(
    racks: Mapping[int, str | None],
    current: Mapping[TopicPartition, tuple[int, ...]],
    add: set[int],
    remove: set[int],
) -> set[int]:
    """The brokers to balance over; BalanceError when the request cannot be met."""
    held = {r for replicas in current.values() for r in replicas}
    if both := sorted(add & remove):
        raise BalanceError(f"broker {both[0]} is both added and removed")
    if unknown := sorted(add - set(racks)):
        raise BalanceError(f"cannot add broker {unknown[0]}: it is not registered")
    if unknown := sorted(remove - set(racks) - held):
        raise BalanceError(f"cannot remove broker {unknown[0]}: it is unknown")
    if dead := sorted(held - set(racks) - remove):
        raise BalanceError(
            f"broker {dead[0]} holds replicas but is not registered: "
            f"start it again or remove it (--remove-broker {dead[0]})"
        )
    eligible = (held | add) - remove
    for tp, replicas in current.items():
        if len(set(replicas)) != len(replicas):
            raise BalanceError(f"{tp[0]}-{tp[1]} lists a broker twice: {list(replicas)}")
        if len(replicas) > len(eligible):
            raise BalanceError(
                f"{tp[0]}-{tp[1]} has {len(replicas)} replicas but only "
                f"{len(eligible)} brokers would be left"
            )
    return eligible


class _State:
    """The assignment being planned, with the counts the rules look at."""

    def __init__(
        self,
        current: Mapping[TopicPartition, tuple[int, ...]],
        eligible: set[int],
        racks: Mapping[int, str | None],
    ) -> None:
        self.partitions = sorted(current)
        self._original = {tp: frozenset(replicas) for tp, replicas in current.items()}
        self._replicas = {tp: list(replicas) for tp, replicas in current.items()}
        self.brokers = sorted(eligible)
        # A broker without a rack is a rack of its own.
        self._rack = {b: racks[b] if racks[b] is not None else f"\0{b}" for b in eligible}
        self._rack_total = len(set(self._rack.values()))
        self._count = Counter({b: 0 for b in eligible})
        for replicas in current.values():
            self._count.update(b for b in replicas if b in eligible)

    def replicas(self, tp: TopicPartition) -> list[int]:
        return list(self._replicas[tp])

    def target(self) -> dict[TopicPartition, tuple[int, ...]]:
        return {tp: tuple(self._replicas[tp]) for tp in self.partitions}

    # -- racks -------------------------------------------------------------

    def rack_count(self, tp: TopicPartition) -> int:
        return len({self._rack[b] for b in self._replicas[tp] if b in self._rack})

    def racks_wanted(self, tp: TopicPartition) -> int:
        return min(len(self._replicas[tp]), self._rack_total)

    def _keeps_racks(self, tp: TopicPartition, source: int, destination: int) -> bool:
        """True if moving ``tp``'s replica from ``source`` to ``destination``
        leaves it on enough racks (or on more than before)."""
        replicas = self._replicas[tp]
        if destination in replicas:
            return False
        after = {self._rack[b] for b in replicas if b != source and b in self._rack}
        after.add(self._rack[destination])
        return len(after) >= min(self.racks_wanted(tp), self.rack_count(tp) + 1)

    def spread_racks(self, tp: TopicPartition) -> None:
        """Move one replica of a rack holding two onto a rack holding none."""
        replicas = self._replicas[tp]
        used = Counter(self._rack[b] for b in replicas)
        doubled = [b for b in replicas if used[self._rack[b]] > 1]
        source = max(doubled, key=lambda b: (self._free(tp, b), self._count[b], -b))
        free_racks = [b for b in self.brokers if self._rack[b] not in used]
        self.move(tp, source, min(free_racks, key=lambda b: (self._count[b], b)))

    # -- replicas ----------------------------------------------------------

    def move(self, tp: TopicPartition, source: int, destination: int) -> None:
        """``tp``'s replica on ``source`` goes to ``destination``, in its place."""
        replicas = self._replicas[tp]
        replicas[replicas.index(source)] = destination
        if source in self._count:
            self._count[source] -= 1
        self._count[destination] += 1

    def _free(self, tp: TopicPartition, broker: int) -> bool:
        """True if ``broker``'s replica of ``tp`` is itself a planned move,
        so moving it again costs no extra copy."""
        return broker not in self._original[tp]

    def place_forced_moves(self) -> None:
        """Move every replica off the brokers not balanced over, each to a
        broker short of its share (a matching: a greedy choice per replica
        can fill a broker with partitions another one was the only taker
        of, and a later move would then copy a replica that could have
        stayed); one that no short broker can take goes to the least loaded."""
        forced = [
            (tp, broker)
            for tp in self.partitions
            for broker in self._replicas[tp]
            if broker not in self._rack
        ]
        total = sum(len(self._replicas[tp]) for tp in self.partitions)
        floor, extra = divmod(total, len(self.brokers))
        # First up to the floor of an even share, then up to its ceiling.
        for share in (floor, floor + (1 if extra else 0)):
            slots = {b: max(share - self._count[b], 0) for b in self.brokers}
            for (tp, source), broker in _match(forced, slots, self._takers).items():
                self.move(tp, source, broker)
            forced = [(tp, s) for tp, s in forced if s in self._replicas[tp]]
        for tp, source in forced:
            self.move(tp, source, self.least_loaded_destination(tp, source))

    def _takers(self, tp: TopicPartition, source: int) -> list[int]:
        """The brokers ``tp``'s replica on ``source`` may go to: not holding
        it, and keeping its racks where any does."""
        candidates = [b for b in self.brokers if b not in self._replicas[tp]]
        keeping = [b for b in candidates if self._keeps_racks(tp, source, b)]
        return keeping or candidates

    def least_loaded_destination(self, tp: TopicPartition, source: int) -> int:
        """Where a replica that must leave ``source`` goes: a broker not
        holding ``tp``, on a rack it lacks if the racks allow, least loaded."""
        candidates = [b for b in self.brokers if b not in self._replicas[tp]]
        keeping = [b for b in candidates if self._keeps_racks(tp, source, b)]
        return min(keeping or candidates, key=lambda b: (self._count[b], b))

    def balance_replicas_once(self) -> bool:
        """One replica from a broker holding at least two more than another
        to that one; False when no such move keeps the racks."""
        by_load = sorted(self.brokers, key=lambda b: (-self._count[b], b))
        pairs = sorted(
            (
                (self._count[s] - self._count[d], s, d)
                for s in by_load
                for d in reversed(by_load)
                if self._count[s] - self._count[d] >= 2
            ),
            key=lambda pair: (-pair[0], pair[1], pair[2]),
        )
        # A replica already planned to move moves again at no cost: look for
        # one over every pair before copying a replica that would have stayed.
        for free_only in (True, False):
            for _, source, destination in pairs:
                movable = [
                    tp
                    for tp in self.partitions
                    if source in self._replicas[tp]
                    and (self._free(tp, source) or not free_only)
                    and self._keeps_racks(tp, source, destination)
                ]
                if movable:
                    tp = min(movable, key=lambda tp: (not self._free(tp, source), tp))
                    self.move(tp, source, destination)
                    return True
        return False

    # -- leaders -----------------------------------------------------------

    def balance_leaders_once(self) -> bool:
        """Shift one preferred leadership from a broker leading at least two
        more than another to that one, along a chain of partitions (a leads
        p where b is a replica, b leads q where c is...). Reordering only."""
        leads = Counter({b: 0 for b in self.brokers})
        led: dict[int, list[TopicPartition]] = {b: [] for b in self.brokers}
        for tp in self.partitions:
            first = self._replicas[tp][0]
            leads[first] += 1
            led[first].append(tp)
        order = sorted(self.brokers, key=lambda b: (-leads[b], b))
        for source in order:
            path = self._leader_path(source, led, leads)
            if path:
                for tp, broker in path:
                    replicas = self._replicas[tp]
                    replicas.remove(broker)
                    replicas.insert(0, broker)
                return True
        return False

    def _leader_path(
        self,
        source: int,
        led: Mapping[int, list[TopicPartition]],
        leads: Mapping[int, int],
    ) -> list[tuple[TopicPartition, int]]:
        """The shortest chain of (partition, new first replica) from
        ``source`` to a broker leading at least two fewer; [] if none."""
        came_from: dict[int, tuple[int, TopicPartition] | None] = {source: None}
        queue = deque([source])
        while queue:
            broker = queue.popleft()
            for tp in led[broker]:
                for other in self._replicas[tp][1:]:
                    if other in came_from or other not in led:
                        continue
                    came_from[other] = (broker, tp)
                    if leads[source] - leads[other] >= 2:
                        return _unwind(came_from, other)
                    queue.append(other)
        return []


def _match(
    replicas: Sequence[tuple[TopicPartition, int]],
    slots: Mapping[int, int],
    takers: Callable[[TopicPartition, int], list[int]],
) -> dict[tuple[TopicPartition, int], int]:
    """As many of ``replicas`` as can be placed on brokers with free
    ``slots`` (a broker takes at most its slots, and only replicas it is a
    taker of): a bipartite matching by augmenting paths (Kuhn's), replicas in
    order, brokers in id order, so the result is deterministic. Two replicas
    of one partition never go to one broker: the takers exclude the
    partition's brokers, and each partition appears once per replica moved."""
    held: dict[int, list[tuple[TopicPartition, int]]] = {b: [] for b in slots}
    placed: dict[tuple[TopicPartition, int], int] = {}
    options = {r: [b for b in takers(*r) if slots.get(b, 0) > 0] for r in replicas}

    def place(replica: tuple[TopicPartition, int], seen: set[int]) -> bool:
        tp = replica[0]
        for broker in options[replica]:
            if broker in seen or any(other[0] == tp for other in held[broker]):
                continue
            seen.add(broker)
            if len(held[broker]) < slots[broker]:
                held[broker].append(replica)
                placed[replica] = broker
                return True
            for other in list(held[broker]):
                if place(other, seen):
                    held[broker].remove(other)
                    held[broker].append(replica)
                    placed[replica] = broker
                    return True
        return False

    for replica in replicas:
        place(replica, set())
    return placed


def _unwind(
    came_from: Mapping[int, tuple[int, TopicPartition] | None], end: int
) -> list[tuple[TopicPartition, int]]:
    path = []
    step = came_from[end]
    broker = end
    while step is not None:
        previous, tp = step
        path.append((tp, broker))
        broker, step = previous, came_from[previous]
    return path
