"""ListPartitionReassignments (key 46): which partitions are being
reassigned, with their replicas and those being added and removed.
Cluster mode only.

As in Kafka 3.9 on ZooKeeper (KafkaController.processListPartitionReassignments):
the controller answers from what it holds; null ``topics`` means every
reassignment, otherwise the partitions named that are being reassigned
(the others are left out, without an error). A broker that is not the
controller answers NOT_CONTROLLER in the top-level error.

Where moldau departs from Kafka: no authorization (Kafka's DESCRIBE on the
cluster).
"""

from __future__ import annotations

from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles


@handles(ApiKey.LIST_PARTITION_REASSIGNMENTS, range(0, 1), cluster_only=True)
async def list_partition_reassignments(context: RequestContext, request: Message) -> Message:
    from ...cluster.controller.commands import ListReassignmentsReply
    from ...cluster.controller.events import ListReassignments

    asked = request["topics"]
    partitions = (
        None
        if asked is None
        else frozenset((t["name"], p) for t in asked for p in t["partition_indexes"])
    )
    node = context.core.cluster
    assert node is not None, "served in cluster mode only"
    shell = node.controller
    try:
        if shell is None or not shell.is_active:
            raise KafkaError(ErrorCode.NOT_CONTROLLER)
        answer = await shell.submit(ListReassignments(partitions))
    except KafkaError as exc:
        if exc.code is not ErrorCode.NOT_CONTROLLER:
            raise
        return _response(ErrorCode.NOT_CONTROLLER, exc.message, [])
    assert isinstance(answer, ListReassignmentsReply)
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for (topic, partition), moving in sorted(answer.reassignments.items()):
        by_topic.setdefault(topic, []).append(
            {
                "partition_index": partition,
                "replicas": list(moving.replicas),
                "adding_replicas": list(moving.adding),
                "removing_replicas": list(moving.removing),
            }
        )
    topics = [{"name": name, "partitions": parts} for name, parts in by_topic.items()]
    return _response(ErrorCode.NONE, None, topics)


def _response(error: ErrorCode, message: str | None, topics: list[dict[str, Any]]) -> Message:
    return {
        "throttle_time_ms": 0,
        "error_code": error,
        "error_message": message,
        "topics": topics,
    }
