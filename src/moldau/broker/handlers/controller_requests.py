"""The controller's requests to brokers: LeaderAndIsr (4), StopReplica (5),
UpdateMetadata (6); and the brokers' requests to the controller:
ControlledShutdown (7), AlterPartition (56). Cluster mode only.

Decoding and encoding are ``cluster/wire.py``'s (the controller's typed
commands and events), imported on first use so that a single node loads no
cluster code; the version ranges below are the ones it decodes (a unit test
holds them equal). Fencing and applying are ``ClusterNode``'s and
``ControllerShell``'s. A request the broker refuses as a whole (an older
controller epoch, an earlier broker epoch) is answered with that error in
its top-level field, as Kafka does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles

if TYPE_CHECKING:
    from ..cluster_node import ClusterNode

#: What ``cluster/wire.py`` decodes (``*_DECODABLE``).
LEADER_AND_ISR_VERSIONS = range(2, 8)
STOP_REPLICA_VERSIONS = range(3, 5)
UPDATE_METADATA_VERSIONS = range(5, 9)
CONTROLLED_SHUTDOWN_VERSIONS = range(1, 4)
ALTER_PARTITION_VERSIONS = range(2, 4)


def _node(context: RequestContext) -> ClusterNode:
    node = context.core.cluster
    assert node is not None, "served in cluster mode only"
    return node


@handles(ApiKey.LEADER_AND_ISR, LEADER_AND_ISR_VERSIONS, cluster_only=True)
async def leader_and_isr(context: RequestContext, request: Message) -> Message:
    from ...cluster import wire

    node = _node(context)
    command = wire.decode_leader_and_isr(request, node.broker_id)
    try:
        errors = await node.leader_and_isr(command)
    except KafkaError as exc:
        return wire.leader_and_isr_response(command, {}, exc.code)
    return wire.leader_and_isr_response(command, errors)


@handles(ApiKey.STOP_REPLICA, STOP_REPLICA_VERSIONS, cluster_only=True)
def stop_replica(context: RequestContext, request: Message) -> Message:
    from ...cluster import wire

    node = _node(context)
    command = wire.decode_stop_replica(request, node.broker_id)
    try:
        errors = node.stop_replica(command)
    except KafkaError as exc:
        return wire.stop_replica_response(command, {}, exc.code)
    return wire.stop_replica_response(command, errors)


@handles(ApiKey.UPDATE_METADATA, UPDATE_METADATA_VERSIONS, cluster_only=True)
def update_metadata(context: RequestContext, request: Message) -> Message:
    from ...cluster import wire

    node = _node(context)
    try:
        node.update_metadata(wire.decode_update_metadata(request, node.broker_id))
    except KafkaError as exc:
        return wire.update_metadata_response(exc.code)
    return wire.update_metadata_response(ErrorCode.NONE)


@handles(ApiKey.CONTROLLED_SHUTDOWN, CONTROLLED_SHUTDOWN_VERSIONS, cluster_only=True)
async def controlled_shutdown(context: RequestContext, request: Message) -> Message:
    from ...cluster import wire
    from ...cluster.controller.commands import ControlledShutdownReply

    event = wire.decode_controlled_shutdown(request)
    shell = _node(context).controller
    if shell is None or not shell.is_active:
        reply = ControlledShutdownReply(event.broker_id, ErrorCode.NOT_CONTROLLER, frozenset())
        return wire.controlled_shutdown_response(reply)
    answer = await shell.submit(event)
    assert isinstance(answer, ControlledShutdownReply)
    return wire.controlled_shutdown_response(answer)


@handles(ApiKey.ALTER_PARTITION, ALTER_PARTITION_VERSIONS, cluster_only=True)
async def alter_partition(context: RequestContext, request: Message) -> Message:
    from ...cluster import wire
    from ...cluster.controller.commands import AlterPartitionReply

    shell = _node(context).controller
    metadata = context.core.metadata
    topic_ids = {name: info.topic_id for name, info in metadata.topics().items()}
    names = {topic_id: name for name, topic_id in topic_ids.items()}
    event = wire.decode_alter_partition(request, names)
    if shell is None or not shell.is_active:
        reply = AlterPartitionReply(event.broker_id, ErrorCode.NOT_CONTROLLER, ())
        return wire.alter_partition_response(reply, topic_ids)
    answer = await shell.submit(event)
    assert isinstance(answer, AlterPartitionReply)
    return wire.alter_partition_response(answer, dict(topic_ids))
