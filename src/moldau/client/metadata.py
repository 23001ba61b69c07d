"""What the client knows about the cluster: brokers, topics, leaders.

A pure snapshot built from Metadata responses; ``Cluster`` keeps the current
one and replaces it on refresh. Kept apart from the I/O so that leader lookup
and merging of partial refreshes are tested without a broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from moldau.protocol.errors import ErrorCode

from .errors import error_code

__all__ = ["BrokerInfo", "ClusterMetadata", "PartitionInfo", "TopicInfo", "parse_address"]


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    topic: str
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...]
    error: ErrorCode = ErrorCode.NONE


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    error: ErrorCode
    partitions: dict[int, PartitionInfo]
    topic_id: uuid.UUID | None = None
    is_internal: bool = False

    @property
    def replication_factor(self) -> int:
        return max((len(p.replicas) for p in self.partitions.values()), default=0)


@dataclass(frozen=True, slots=True)
class ClusterMetadata:
    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    cluster_id: str | None = None
    controller_id: int = -1

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> ClusterMetadata:
        brokers = {
            b["node_id"]: BrokerInfo(b["node_id"], b["host"], b["port"], b.get("rack"))
            for b in body["brokers"]
        }
        topics = {}
        for t in body["topics"]:
            name = t["name"]
            if name is None:
                continue
            partitions = {
                p["partition_index"]: PartitionInfo(
                    topic=name,
                    partition=p["partition_index"],
                    leader=p["leader_id"],
                    leader_epoch=p.get("leader_epoch", -1),
                    replicas=tuple(p["replica_nodes"]),
                    isr=tuple(p["isr_nodes"]),
                    offline_replicas=tuple(p.get("offline_replicas", ())),
                    error=error_code(p["error_code"]),
                )
                for p in t["partitions"]
            }
            topic_id = t.get("topic_id")
            topics[name] = TopicInfo(
                name=name,
                error=error_code(t["error_code"]),
                partitions=partitions,
                topic_id=topic_id if topic_id and topic_id.int else None,
                is_internal=t.get("is_internal", False),
            )
        return cls(brokers, topics, body.get("cluster_id"), body.get("controller_id", -1))

    def merged(self, newer: ClusterMetadata, requested: Iterable[str] | None) -> ClusterMetadata:
        """``newer`` (an answer about ``requested`` topics, None = all) laid over
        this snapshot: brokers are always taken from the newer answer; topics it
        was not asked about are kept, the asked-about ones replaced or dropped."""
        if requested is None:
            return newer
        topics = dict(self.topics)
        for name in requested:
            topics.pop(name, None)
        topics.update(newer.topics)
        return ClusterMetadata(newer.brokers, topics, newer.cluster_id, newer.controller_id)

    def leader(self, topic: str, partition: int) -> int | None:
        """The leader's node id if known and reachable, else None."""
        info = self.topics.get(topic)
        if info is None:
            return None
        p = info.partitions.get(partition)
        if p is None or p.leader < 0 or p.leader not in self.brokers:
            return None
        return p.leader

    def partition_count(self, topic: str) -> int | None:
        """Partitions of a topic the cluster answered for without error."""
        info = self.topics.get(topic)
        if info is None or info.error != ErrorCode.NONE or not info.partitions:
            return None
        return len(info.partitions)


def parse_address(address: str, default_port: int = 9092) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare host."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = address.rpartition(":")
    if not sep or ":" in host:
        return address, default_port
    return host, int(port)
