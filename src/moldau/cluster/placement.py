"""Where a new topic's replicas go: Kafka's replica assignment, and the checks
on an assignment a client gives explicitly.

Pure: no I/O, randomness only from the ``random.Random`` passed in.

The rules are Kafka's ``AdminUtils.assignReplicasToBrokers`` (3.9):

- Rack-unaware (no broker has a rack): the first replica of partition p goes
  to broker ``(p + start) % n``; the others follow it at a shift that grows
  by one after every n partitions, so that the followers of one broker's
  partitions spread over the others.
- Rack-aware (every broker has a rack): the same round robin over a broker
  list that alternates racks (``rack_alternated``); each follower skips a
  broker whose rack already holds a replica while some rack holds none, and
  a broker that already holds one while some broker holds none.
- Some brokers with a rack and some without: refused, as Kafka does.

Where moldau departs from Kafka: the broker list is always sorted by id
before placement (Kafka's CreateTopics takes the metadata cache's order), so
the same start index always gives the same assignment. Errors carry the
Kafka error code the request handler answers with.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

#: Kafka error codes these checks answer with.
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REPLICA_ASSIGNMENT = 39


class PlacementError(ValueError):
    """A placement request Kafka refuses; ``error_code`` is what goes on the wire."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


@dataclass(frozen=True)
class BrokerSlot:
    """A live broker as placement sees it."""

    broker_id: int
    rack: str | None = None


def rack_alternated(broker_racks: Mapping[int, str]) -> list[int]:
    """Brokers ordered so that consecutive ones sit in different racks.

    Racks in name order, each rack's brokers in id order, taken one per rack
    in turn: racks {a: 0,1,2; b: 3,4,5; c: 6,7,8} give 0,3,6,1,4,7,2,5,8.
    """
    by_rack: dict[str, list[int]] = {}
    for broker, rack in broker_racks.items():
        by_rack.setdefault(rack, []).append(broker)
    columns = [sorted(by_rack[rack]) for rack in sorted(by_rack)]
    out: list[int] = []
    depth = 0
    while len(out) < len(broker_racks):
        out.extend(column[depth] for column in columns if depth < len(column))
        depth += 1
    return out


def _replica_index(first: int, shift: int, index: int, n: int) -> int:
    """Kafka's follower position: never the first replica's own slot."""
    return (first + 1 + (shift + index) % (n - 1)) % n


def assign_replicas(
    brokers: Collection[BrokerSlot],
    partitions: int,
    replication_factor: int,
    *,
    start_index: int | None = None,
    start_partition: int = 0,
    rng: random.Random | None = None,
) -> dict[int, tuple[int, ...]]:
    """Replicas for partitions ``start_partition .. start_partition + partitions - 1``.

    ``start_index`` fixes both the first broker and the follower shift (as
    Kafka's fixedStartIndex does); without it both are drawn from ``rng``.
    ``start_partition`` is for adding partitions to a topic: the round robin
    goes on where the existing partitions left it.
    """
    if partitions <= 0:
        raise PlacementError(INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
    if replication_factor <= 0:
        raise PlacementError(
            INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0."
        )
    if replication_factor > len(brokers):
        raise PlacementError(
            INVALID_REPLICATION_FACTOR,
            f"Replication factor: {replication_factor} larger than available brokers: "
            f"{len(brokers)}.",
        )
    ordered = sorted(brokers, key=lambda b: b.broker_id)
    racks = {b.broker_id: b.rack for b in ordered if b.rack is not None}
    if racks and len(racks) < len(ordered):
        raise PlacementError(
            INVALID_REPLICA_ASSIGNMENT,
            "Not all brokers have rack information for replica rack aware assignment.",
        )
    rng = rng or random.Random()
    n = len(ordered)
    start = start_index if start_index is not None else rng.randrange(n)
    shift = start_index if start_index is not None else rng.randrange(n)
    if racks:
        return _rack_aware(racks, partitions, replication_factor, start, shift, start_partition)
    ids = [b.broker_id for b in ordered]
    out: dict[int, tuple[int, ...]] = {}
    for partition in range(max(0, start_partition), max(0, start_partition) + partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start) % n
        followers = (ids[_replica_index(first, shift, j, n)] for j in range(replication_factor - 1))
        out[partition] = (ids[first], *followers)
    return out


def _rack_aware(
    racks: Mapping[int, str],
    partitions: int,
    replication_factor: int,
    start: int,
    shift: int,
    start_partition: int,
) -> dict[int, tuple[int, ...]]:
    arranged = rack_alternated(racks)
    n, rack_count = len(arranged), len(set(racks.values()))
    out: dict[int, tuple[int, ...]] = {}
    for partition in range(max(0, start_partition), max(0, start_partition) + partitions):
        if partition > 0 and partition % n == 0:
            shift += 1
        first = (partition + start) % n
        leader = arranged[first]
        replicas = [leader]
        used_racks, used_brokers = {racks[leader]}, {leader}
        k = 0
        while len(replicas) < replication_factor:
            broker = arranged[_replica_index(first, shift * rack_count, k, n)]
            k += 1
            rack = racks[broker]
            if (rack not in used_racks or len(used_racks) == rack_count) and (
                broker not in used_brokers or len(used_brokers) == n
            ):
                replicas.append(broker)
                used_racks.add(rack)
                used_brokers.add(broker)
        out[partition] = tuple(replicas)
    return out


def validate_assignment(
    assignment: Mapping[int, Sequence[int]],
    live_brokers: Collection[int] | None = None,
    *,
    first_partition: int = 0,
    replication_factor: int | None = None,
) -> None:
    """Refuse an explicit assignment as Kafka's CreateTopics/CreatePartitions do.

    Partitions must be ``first_partition, first_partition + 1, ...`` without a
    gap, each with the same number (``replication_factor`` when given) of
    distinct replicas. ``live_brokers``, when given, must hold every replica:
    Kafka checks that for added partitions only; moldau checks it whenever
    the caller passes the live set, since a replica on an unknown broker can
    never come online.
    """
    if not assignment:
        raise PlacementError(INVALID_REPLICA_ASSIGNMENT, "The assignment names no partition.")
    expected = list(range(first_partition, first_partition + len(assignment)))
    if sorted(assignment) != expected:
        raise PlacementError(
            INVALID_REPLICA_ASSIGNMENT,
            f"partitions should be a consecutive integer sequence from {first_partition}",
        )
    sizes = {len(replicas) for replicas in assignment.values()}
    if replication_factor is not None:
        sizes.add(replication_factor)
    if len(sizes) != 1:
        raise PlacementError(
            INVALID_REPLICA_ASSIGNMENT, "All partitions should have the same number of replicas"
        )
    for partition, replicas in sorted(assignment.items()):
        if not replicas:
            raise PlacementError(
                INVALID_REPLICA_ASSIGNMENT,
                f"Cannot have replication factor of 0 for partition id {partition}.",
            )
        if len(set(replicas)) != len(replicas):
            raise PlacementError(
                INVALID_REPLICA_ASSIGNMENT,
                f"Duplicate brokers not allowed in replica assignment: "
                f"{', '.join(map(str, replicas))} for partition id {partition}.",
            )
        if live_brokers is not None and not set(replicas) <= set(live_brokers):
            raise PlacementError(
                INVALID_REPLICA_ASSIGNMENT,
                f"Some brokers specified for partition id {partition} are not available. "
                f"Specified brokers: {', '.join(map(str, replicas))}, "
                f"available brokers: {', '.join(map(str, sorted(live_brokers)))}.",
            )
