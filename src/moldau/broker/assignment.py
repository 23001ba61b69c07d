"""Replica lists for new partitions: placed by the broker, or given by the
client and checked, as Kafka's CreateTopics and CreatePartitions do.

Placement itself is ``cluster/placement.py`` (Kafka's algorithm, pure); this
module adds what a request brings to it: the broker's defaults for -1
counts, the request-size cap, the live brokers from the metadata, and
Kafka's checks (with Kafka's messages) of a manual assignment.

Where moldau departs from Kafka: the round robin starts at the number of
partitions this broker hosts (Kafka draws it at random), so placement is
reproducible. On a single node every replica list is that node, as before;
a manual assignment is still checked by ``check_replica_list`` rather than
``placement.validate_assignment``, whose messages and order of checks differ
from what clients of the single node see today.
"""

from __future__ import annotations

from ..cluster.metadata import MetadataStore
from ..cluster.placement import BrokerSlot, PlacementError
from ..cluster.placement import assign_replicas as place
from ..protocol.errors import ErrorCode, KafkaError
from .capacity import check_request_size
from .config import BrokerConfig


def check_replica_list(replicas: list[int], brokers: set[int], replication: int | None) -> None:
    """Kafka's checks of one manual replica list (INVALID_REPLICA_ASSIGNMENT):
    not empty, known brokers named once each, as long as the others."""
    if not replicas:
        raise KafkaError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "The manual partition assignment includes an empty replica list.",
        )
    previous: int | None = None
    for broker in sorted(replicas):
        if broker not in brokers:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes broker {broker}, but no such "
                "broker is registered.",
            )
        if broker == previous:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"The manual partition assignment includes the broker {broker} more than once.",
            )
        previous = broker
    if replication is not None and len(replicas) != replication:
        raise KafkaError(
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            f"The manual partition assignment includes a partition with {len(replicas)} "
            f"replica(s), but this is not consistent with previous partitions, which have "
            f"{replication} replica(s).",
        )


class ReplicaAssigner:
    """Replica lists for a topic's new partitions, from the live brokers."""

    def __init__(self, config: BrokerConfig, metadata: MetadataStore) -> None:
        self.config = config
        self.metadata = metadata
        #: Every broker has it, so its brokers are all the live ones.
        self._inter_broker = config.inter_broker_listener

    def automatic(
        self, num_partitions: int, replication_factor: int, start: int
    ) -> list[list[int]]:
        """Kafka's checks of the counts (-1: the broker's default), then placement."""
        if replication_factor < -1 or replication_factor == 0:
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                "Replication factor was set to an invalid non-positive value.",
            )
        if num_partitions < -1 or num_partitions == 0:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                "Number of partitions was set to an invalid non-positive value.",
            )
        if num_partitions == -1:
            num_partitions = int(self.config.get("num.partitions"))
        if replication_factor == -1:
            replication_factor = int(self.config.get("default.replication.factor"))
        check_request_size(num_partitions)
        return self.assign(num_partitions, replication_factor, start)

    def assign(self, num_partitions: int, replication_factor: int, start: int) -> list[list[int]]:
        """Spread partitions and their leaders evenly over the live brokers,
        the round robin starting at ``start``."""
        brokers = [BrokerSlot(b.node_id, b.rack) for b in self.metadata.brokers(self._inter_broker)]
        try:
            placed = place(brokers, num_partitions, replication_factor, start_index=start)
        except PlacementError as exc:
            raise KafkaError(ErrorCode(exc.error_code), str(exc)) from None
        return [list(placed[p]) for p in range(num_partitions)]

    def manual(self, assignments: list[tuple[int, list[int]]]) -> list[list[int]]:
        """A request's own replica lists, checked as Kafka's controller checks
        them: each valid, all of one size, indexes 0, 1, 2... once each."""
        check_request_size(len(assignments))
        brokers = self.broker_ids()
        by_index: dict[int, list[int]] = {}
        replication: int | None = None
        for index, replicas in assignments:
            if index in by_index:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Found multiple manual partition assignments for partition {index}",
                )
            check_replica_list(replicas, brokers, replication)
            replication = len(replicas)
            by_index[index] = list(replicas)
        if any(i not in by_index for i in range(len(by_index))):
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                "partitions should be a consecutive 0-based integer sequence",
            )
        return [by_index[i] for i in range(len(by_index))]

    def broker_ids(self) -> set[int]:
        return {b.node_id for b in self.metadata.brokers(self._inter_broker)}
