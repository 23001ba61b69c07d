"""Telling a client where a partition's leader is (KIP-951).

A data-plane request that reached a broker not leading its partition gets
NOT_LEADER_OR_FOLLOWER (or FENCED_LEADER_EPOCH); from Produce v10 and Fetch
v12 on the answer also names the current leader and its epoch, and (Produce
v10, Fetch v16) that leader's endpoint, so the client can go there without a
Metadata round trip.

Where that comes from is decided here, once, as Kafka's
``KafkaApis.getCurrentLeader`` does: the hosted replica when this broker has
one (the controller told it the leader and epoch directly), otherwise the
metadata (the cluster's metadata cache, or the single node itself).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..protocol.errors import ErrorCode
from ..protocol.messages import Message
from .core import BrokerCore

__all__ = ["LEADER_ERRORS", "NO_LEADER", "current_leader", "leader_entry", "node_endpoints"]

#: Errors whose answer names the current leader (Kafka: Fetch both, Produce
#: only the first, since Produce carries no leader epoch to fence).
LEADER_ERRORS = frozenset({ErrorCode.NOT_LEADER_OR_FOLLOWER, ErrorCode.FENCED_LEADER_EPOCH})

#: ``current_leader`` of a partition whose leader is unknown, as Kafka sends it.
NO_LEADER: Message = {"leader_id": -1, "leader_epoch": -1}


def current_leader(core: BrokerCore, topic: str, index: int) -> tuple[int, int] | None:
    """(leader id, leader epoch) of the partition, or None when unknown."""
    hosted = core.replicas.get(topic, index)
    if hosted is not None and hosted.leader_id >= 0:
        return hosted.leader_id, hosted.leader_epoch
    return core.metadata.partition_leader(topic, index)


def leader_entry(core: BrokerCore, topic: str, index: int) -> Message:
    """The ``current_leader`` field of one partition's error answer."""
    leader = current_leader(core, topic, index)
    if leader is None:
        return dict(NO_LEADER)
    return {"leader_id": leader[0], "leader_epoch": leader[1]}


def node_endpoints(
    core: BrokerCore, leader_ids: Iterable[int], listener: str | None
) -> list[Message]:
    """The ``node_endpoints`` of a response: each distinct known leader once,
    in id order, with its address on ``listener`` (the request's); unknown
    ids and -1 are left out, as in Kafka."""
    endpoints = []
    for node_id in sorted({i for i in leader_ids if i >= 0}):
        broker = core.metadata.broker(node_id, listener)
        if broker is not None:
            endpoints.append(
                {
                    "node_id": broker.node_id,
                    "host": broker.host,
                    "port": broker.port,
                    "rack": broker.rack,
                }
            )
    return endpoints
