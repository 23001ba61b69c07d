"""The controller's commands and events in Kafka's wire form.

Pure. The controller (``cluster/controller``) speaks in typed values; between
brokers they travel as Kafka 3.9's requests, so that the broker side works
on the same values again: LeaderAndIsr (4), StopReplica (5) and
UpdateMetadata (6) from the controller, ControlledShutdown (7) and
AlterPartition (56) to it. Bodies are the dicts of ``protocol.messages``;
the schemas of 4-7 are ``protocol.inter_broker_schema``'s, AlterPartition's
kio's.

Requests are encoded at the versions a Kafka 3.9 controller sends at
inter.broker.protocol.version 3.9 (the ``*_VERSION`` constants). The
decoders read the topic-grouped versions too (``*_DECODABLE``), defaulting
the fields an older version lacks.

What the wire does not carry, and so comes back different from a decode:

- the recipient's broker id (the decoders take it: the broker knows its own);
- broker epochs of ``LiveBroker``s (decoded as -1, Kafka's unknown epoch);
- of a LeaderAndIsr live leader, all but one host and port: Kafka sends the
  endpoint of the inter-broker listener, moldau the broker's first endpoint
  (its registration lists the inter-broker listener first; the lead may
  change this). The decoded endpoint has no listener name, and a broker
  without endpoints is sent as host "" port -1 and decoded without one;
- of a partition, the offline replicas in LeaderAndIsr, and ``is_new``, the
  leader recovery state and the adding and removing replicas in
  UpdateMetadata (Kafka's messages have none).

Where moldau departs from Kafka: AlterPartition names topics by id (v2+);
partitions of a topic id the controller does not know are left out of the
event and so of the answer, where Kafka answers them UNKNOWN_TOPIC_ID. ISR
members' broker epochs in AlterPartition v3 are sent as -1 (unknown): only
the KRaft controller checks them (KIP-903).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from moldau.cluster.controller.alter_partition import AlterPartitionItem
from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    BrokerRequest,
    ControlledShutdownReply,
    LeaderAndIsr,
    PartitionLeadership,
    StopReplica,
    StopReplicaPartition,
    UpdateMetadata,
)
from moldau.cluster.controller.context import LiveBroker, TopicPartition
from moldau.cluster.controller.events import (
    AlterPartition,
    ControlledShutdown,
    StopReplicaResult,
)
from moldau.cluster.zk.paths import Endpoint
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode
from moldau.protocol.messages import Message

LEADER_AND_ISR_VERSION = 7
STOP_REPLICA_VERSION = 4
UPDATE_METADATA_VERSION = 8
CONTROLLED_SHUTDOWN_VERSION = 3
ALTER_PARTITION_VERSION = 3

#: The versions the decoders read (the topic-grouped ones).
LEADER_AND_ISR_DECODABLE = range(2, LEADER_AND_ISR_VERSION + 1)
STOP_REPLICA_DECODABLE = range(3, STOP_REPLICA_VERSION + 1)
UPDATE_METADATA_DECODABLE = range(5, UPDATE_METADATA_VERSION + 1)
CONTROLLED_SHUTDOWN_DECODABLE = range(1, CONTROLLED_SHUTDOWN_VERSION + 1)
ALTER_PARTITION_DECODABLE = range(2, ALTER_PARTITION_VERSION + 1)

#: Kafka's AbstractControlRequest.UNKNOWN_BROKER_EPOCH.
UNKNOWN_BROKER_EPOCH = -1

#: Kafka's SecurityProtocol ids.
_SECURITY_PROTOCOLS = {"PLAINTEXT": 0, "SSL": 1, "SASL_PLAINTEXT": 2, "SASL_SSL": 3}
_SECURITY_PROTOCOL_NAMES = {code: name for name, code in _SECURITY_PROTOCOLS.items()}

_ZERO_UUID = uuid.UUID(int=0)

_T = TypeVar("_T")


# --------------------------------------------------------------------------- requests


def encode_broker_request(command: BrokerRequest) -> tuple[ApiKey, int, Message]:
    """The API key, version and body of a controller request."""
    if isinstance(command, LeaderAndIsr):
        return ApiKey.LEADER_AND_ISR, LEADER_AND_ISR_VERSION, _leader_and_isr_body(command)
    if isinstance(command, UpdateMetadata):
        return ApiKey.UPDATE_METADATA, UPDATE_METADATA_VERSION, _update_metadata_body(command)
    return ApiKey.STOP_REPLICA, STOP_REPLICA_VERSION, _stop_replica_body(command)


def _leader_and_isr_body(command: LeaderAndIsr) -> Message:
    return {
        "controller_id": command.controller_id,
        "is_kraft_controller": False,
        "controller_epoch": command.controller_epoch,
        "broker_epoch": command.broker_epoch,
        "type": 0,  # incremental, as Kafka's ZooKeeper controller sends
        "topic_states": [
            {
                "topic_name": topic,
                "topic_id": parts[0].topic_id,
                "partition_states": [
                    {
                        "partition_index": p.partition,
                        "controller_epoch": p.controller_epoch,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "isr": list(p.isr),
                        "partition_epoch": p.partition_epoch,
                        "replicas": list(p.replicas),
                        "adding_replicas": list(p.adding_replicas),
                        "removing_replicas": list(p.removing_replicas),
                        "is_new": p.is_new,
                        "leader_recovery_state": p.leader_recovery_state,
                    }
                    for p in parts
                ],
            }
            for topic, parts in _by_topic(command.partitions, lambda p: p.topic).items()
        ],
        "live_leaders": [_live_leader(b) for b in command.leaders],
    }


def _live_leader(broker: LiveBroker) -> Message:
    if not broker.endpoints:
        return {"broker_id": broker.broker_id, "host_name": "", "port": -1}
    first = broker.endpoints[0]
    return {"broker_id": broker.broker_id, "host_name": first.host, "port": first.port}


def _update_metadata_body(command: UpdateMetadata) -> Message:
    return {
        "controller_id": command.controller_id,
        "is_kraft_controller": False,
        "type": 0,
        "controller_epoch": command.controller_epoch,
        "broker_epoch": command.broker_epoch,
        "topic_states": [
            {
                "topic_name": topic,
                "topic_id": parts[0].topic_id,
                "partition_states": [
                    {
                        "partition_index": p.partition,
                        "controller_epoch": p.controller_epoch,
                        "leader": p.leader,
                        "leader_epoch": p.leader_epoch,
                        "isr": list(p.isr),
                        "zk_version": p.partition_epoch,
                        "replicas": list(p.replicas),
                        "offline_replicas": list(p.offline_replicas),
                    }
                    for p in parts
                ],
            }
            for topic, parts in _by_topic(command.partitions, lambda p: p.topic).items()
        ],
        "live_brokers": [
            {
                "id": b.broker_id,
                "endpoints": [
                    {
                        "port": e.port,
                        "host": e.host,
                        "listener": e.listener,
                        "security_protocol": _security_protocol(e.security_protocol),
                    }
                    for e in b.endpoints
                ],
                "rack": b.rack,
            }
            for b in command.brokers
        ],
    }


def _stop_replica_body(command: StopReplica) -> Message:
    return {
        "controller_id": command.controller_id,
        "is_kraft_controller": False,
        "controller_epoch": command.controller_epoch,
        "broker_epoch": command.broker_epoch,
        "topic_states": [
            {
                "topic_name": topic,
                "partition_states": [
                    {
                        "partition_index": p.partition,
                        "leader_epoch": p.leader_epoch,
                        "delete_partition": p.delete,
                    }
                    for p in parts
                ],
            }
            for topic, parts in _by_topic(command.partitions, lambda p: p.topic).items()
        ],
    }


def decode_leader_and_isr(body: Message, broker_id: int) -> LeaderAndIsr:
    """The command a LeaderAndIsr request carries; ``broker_id`` is the
    recipient's own (not on the wire)."""
    partitions = tuple(
        PartitionLeadership(
            topic=topic["topic_name"],
            partition=p["partition_index"],
            controller_epoch=p["controller_epoch"],
            leader=p["leader"],
            leader_epoch=p["leader_epoch"],
            isr=tuple(p["isr"]),
            partition_epoch=p["partition_epoch"],
            replicas=tuple(p["replicas"]),
            leader_recovery_state=p.get("leader_recovery_state", 0),
            is_new=p["is_new"],
            topic_id=_topic_id(topic.get("topic_id")),
            adding_replicas=tuple(p.get("adding_replicas") or ()),
            removing_replicas=tuple(p.get("removing_replicas") or ()),
        )
        for topic in body["topic_states"]
        for p in topic["partition_states"]
    )
    leaders = tuple(
        LiveBroker(
            leader["broker_id"],
            UNKNOWN_BROKER_EPOCH,
            ()
            if leader["port"] < 0
            else (Endpoint(listener="", host=leader["host_name"], port=leader["port"]),),
        )
        for leader in body["live_leaders"]
    )
    return LeaderAndIsr(
        broker_id,
        body["controller_id"],
        body["controller_epoch"],
        body["broker_epoch"],
        partitions,
        leaders,
    )


def decode_update_metadata(body: Message, broker_id: int) -> UpdateMetadata:
    """The command an UpdateMetadata request carries; ``broker_id`` is the
    recipient's own (not on the wire)."""
    partitions = tuple(
        PartitionLeadership(
            topic=topic["topic_name"],
            partition=p["partition_index"],
            controller_epoch=p["controller_epoch"],
            leader=p["leader"],
            leader_epoch=p["leader_epoch"],
            isr=tuple(p["isr"]),
            partition_epoch=p["zk_version"],
            replicas=tuple(p["replicas"]),
            offline_replicas=tuple(p["offline_replicas"]),
            topic_id=_topic_id(topic.get("topic_id")),
        )
        for topic in body["topic_states"]
        for p in topic["partition_states"]
    )
    brokers = tuple(
        LiveBroker(
            b["id"],
            UNKNOWN_BROKER_EPOCH,
            tuple(
                Endpoint(
                    e["listener"],
                    e["host"],
                    e["port"],
                    _security_protocol_name(e["security_protocol"]),
                )
                for e in b["endpoints"]
            ),
            b["rack"],
        )
        for b in body["live_brokers"]
    )
    return UpdateMetadata(
        broker_id,
        body["controller_id"],
        body["controller_epoch"],
        body["broker_epoch"],
        partitions,
        brokers,
    )


def decode_stop_replica(body: Message, broker_id: int) -> StopReplica:
    """The command a StopReplica request carries; ``broker_id`` is the
    recipient's own (not on the wire)."""
    partitions = tuple(
        StopReplicaPartition(
            topic["topic_name"], p["partition_index"], p["leader_epoch"], p["delete_partition"]
        )
        for topic in body["topic_states"]
        for p in topic["partition_states"]
    )
    return StopReplica(
        broker_id, body["controller_id"], body["controller_epoch"], body["broker_epoch"], partitions
    )


# --------------------------------------------------------------------------- responses


def leader_and_isr_response(
    command: LeaderAndIsr,
    errors: Mapping[TopicPartition, ErrorCode],
    error: ErrorCode = ErrorCode.NONE,
) -> Message:
    """The answer to ``command``: each partition with its error from
    ``errors`` (NONE when absent), or, with a request-wide ``error``, every
    partition with that error (Kafka's getErrorResponse). The body encodes at
    every version: v0-v4 list partitions by name, v5+ group them by topic id."""

    def code(p: PartitionLeadership) -> ErrorCode:
        return _partition_error((p.topic, p.partition), errors, error)

    return {
        "error_code": error,
        "partition_errors": [
            {"topic_name": p.topic, "partition_index": p.partition, "error_code": code(p)}
            for p in command.partitions
        ],
        "topics": [
            {
                "topic_id": parts[0].topic_id,
                "partition_errors": [
                    {"partition_index": p.partition, "error_code": code(p)} for p in parts
                ],
            }
            for parts in _by_topic(command.partitions, lambda p: p.topic).values()
        ],
    }


def stop_replica_response(
    command: StopReplica,
    errors: Mapping[TopicPartition, ErrorCode],
    error: ErrorCode = ErrorCode.NONE,
) -> Message:
    """The answer to ``command``, built as ``leader_and_isr_response``'s."""
    return {
        "error_code": error,
        "partition_errors": [
            {
                "topic_name": p.topic,
                "partition_index": p.partition,
                "error_code": _partition_error((p.topic, p.partition), errors, error),
            }
            for p in command.partitions
        ],
    }


def _partition_error(
    tp: TopicPartition, errors: Mapping[TopicPartition, ErrorCode], error: ErrorCode
) -> ErrorCode:
    """A request-wide error is every partition's (Kafka's getErrorResponse)."""
    return error if error is not ErrorCode.NONE else errors.get(tp, ErrorCode.NONE)


def update_metadata_response(error: ErrorCode) -> Message:
    return {"error_code": error}


def stop_replica_result(command: StopReplica, response: Message) -> StopReplicaResult:
    """The event for the controller from a broker's answer: the partitions
    ``command`` deletes that the answer names, ``failed`` those with an
    error; a request-wide error fails them all (Kafka:
    TopicDeletionStopReplicaResponseReceived). Partitions only stopped are
    left out: the controller waits for deletions only."""
    deleted = {(p.topic, p.partition) for p in command.partitions if p.delete}
    if response["error_code"] != ErrorCode.NONE:
        return StopReplicaResult(command.broker_id, frozenset(deleted), frozenset(deleted))
    answered = {
        (e["topic_name"], e["partition_index"]): e["error_code"]
        for e in response["partition_errors"]
    }
    partitions = frozenset(tp for tp in deleted if tp in answered)
    failed = frozenset(tp for tp in partitions if answered[tp] != ErrorCode.NONE)
    return StopReplicaResult(command.broker_id, partitions, failed)


# --------------------------------------------------------------------------- ControlledShutdown


def controlled_shutdown_request(broker_id: int, broker_epoch: int) -> tuple[ApiKey, int, Message]:
    body = {"broker_id": broker_id, "broker_epoch": broker_epoch}
    return ApiKey.CONTROLLED_SHUTDOWN, CONTROLLED_SHUTDOWN_VERSION, body


def decode_controlled_shutdown(body: Message) -> ControlledShutdown:
    """v1 has no broker epoch: it decodes as unknown, which the controller
    does not check."""
    return ControlledShutdown(body["broker_id"], body.get("broker_epoch", UNKNOWN_BROKER_EPOCH))


def controlled_shutdown_response(reply: ControlledShutdownReply) -> Message:
    return {
        "error_code": reply.error,
        "remaining_partitions": [
            {"topic_name": topic, "partition_index": partition}
            for topic, partition in sorted(reply.remaining)
        ],
    }


def decode_controlled_shutdown_response(
    body: Message,
) -> tuple[ErrorCode, frozenset[TopicPartition]]:
    """The error and the partitions the broker still leads."""
    remaining = frozenset(
        (p["topic_name"], p["partition_index"]) for p in body["remaining_partitions"]
    )
    return _error_code(body["error_code"]), remaining


# --------------------------------------------------------------------------- AlterPartition


def alter_partition_request(
    broker_id: int,
    broker_epoch: int,
    partitions: Sequence[AlterPartitionItem],
    topic_ids: Mapping[str, uuid.UUID | None],
) -> tuple[ApiKey, int, Message]:
    """A leader's AlterPartition v3; ``topic_ids`` names each topic's id."""
    body = {
        "broker_id": broker_id,
        "broker_epoch": broker_epoch,
        "topics": [
            {
                "topic_id": topic_ids[topic],
                "partitions": [
                    {
                        "partition_index": item.partition,
                        "leader_epoch": item.leader_epoch,
                        "new_isr_with_epochs": [
                            {"broker_id": r, "broker_epoch": UNKNOWN_BROKER_EPOCH} for r in item.isr
                        ],
                        "leader_recovery_state": item.leader_recovery_state,
                        "partition_epoch": item.partition_epoch,
                    }
                    for item in items
                ],
            }
            for topic, items in _by_topic(partitions, lambda i: i.topic).items()
        ],
    }
    return ApiKey.ALTER_PARTITION, ALTER_PARTITION_VERSION, body


def decode_alter_partition(body: Message, topic_names: Mapping[uuid.UUID, str]) -> AlterPartition:
    """The event of an AlterPartition request (v2 or v3); ``topic_names``
    maps ids to names. Topics whose id is not there are left out."""
    items = tuple(
        AlterPartitionItem(
            topic_names[topic["topic_id"]],
            p["partition_index"],
            p["leader_epoch"],
            _isr_of(p),
            p["partition_epoch"],
            p["leader_recovery_state"],
        )
        for topic in body["topics"]
        if topic["topic_id"] in topic_names
        for p in topic["partitions"]
    )
    return AlterPartition(body["broker_id"], body["broker_epoch"], items)


def _isr_of(partition: Message) -> tuple[int, ...]:
    """v3 lists ISR members with their broker epochs, v2 their ids only."""
    if "new_isr_with_epochs" in partition:
        return tuple(m["broker_id"] for m in partition["new_isr_with_epochs"])
    return tuple(partition["new_isr"])


def alter_partition_response(
    reply: AlterPartitionReply, topic_ids: Mapping[str, uuid.UUID | None]
) -> Message:
    """The answer to an AlterPartition (v2 and v3 alike)."""
    return {
        "throttle_time_ms": 0,
        "error_code": reply.error,
        "topics": [
            {
                "topic_id": topic_ids.get(topic),
                "partitions": [
                    {
                        "partition_index": r.partition,
                        "error_code": r.error,
                        "leader_id": r.leader,
                        "leader_epoch": r.leader_epoch,
                        "isr": list(r.isr),
                        "leader_recovery_state": r.leader_recovery_state,
                        "partition_epoch": r.partition_epoch,
                    }
                    for r in results
                ],
            }
            for topic, results in _by_topic(reply.partitions, lambda r: r.topic).items()
        ],
    }


# --------------------------------------------------------------------------- helpers


def _by_topic(items: Iterable[_T], topic_of: Callable[[_T], str]) -> dict[str, list[_T]]:
    """Items grouped by topic, topics in order of first appearance (v2+ of
    these requests list each topic once)."""
    grouped: dict[str, list[_T]] = {}
    for item in items:
        grouped.setdefault(topic_of(item), []).append(item)
    return grouped


def _topic_id(value: Any) -> uuid.UUID | None:
    """The zero uuid (and an absent id, before v5/v7) mean none."""
    return None if value is None or value == _ZERO_UUID else value


def _security_protocol(name: str) -> int:
    try:
        return _SECURITY_PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"Kafka has no security protocol {name!r}") from None


def _security_protocol_name(code: int) -> str:
    try:
        return _SECURITY_PROTOCOL_NAMES[code]
    except KeyError:
        raise ValueError(f"unknown security protocol id {code}") from None


def _error_code(code: int) -> ErrorCode:
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR
