"""AlterPartitionReassignments (key 45): an operator moves partitions to new
replicas, or cancels a move (null replicas). Cluster mode only.

As in Kafka 3.9 on ZooKeeper (KafkaApis.handleAlterPartitionReassignmentsRequest,
KafkaController.processApiPartitionReassignment): the request goes to the
controller, which answers per partition once the reassignments have
started (not once they are done: ListPartitionReassignments tells that); a
broker that is not the controller answers NOT_CONTROLLER in the top-level
error, with no partitions.

v1 (KIP-860) adds ``allow_replication_factor_change``: when false, a target
of another size than the partition's replicas is refused with
INVALID_REPLICATION_FACTOR; the response echoes it.

Where moldau departs from Kafka: no authorization (Kafka's ALTER on the
cluster); a topic named twice in one request has its partitions merged
(Kafka keeps the last).
"""

from __future__ import annotations

from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles


@handles(ApiKey.ALTER_PARTITION_REASSIGNMENTS, range(0, 2), cluster_only=True)
async def alter_partition_reassignments(context: RequestContext, request: Message) -> Message:
    from ...cluster.controller.commands import AlterReassignmentsReply
    from ...cluster.controller.events import AlterReassignments

    targets = {
        (topic["name"], p["partition_index"]): (
            None if p["replicas"] is None else tuple(p["replicas"])
        )
        for topic in request["topics"]
        for p in topic["partitions"]
    }
    allow = request.get("allow_replication_factor_change", True)
    node = context.core.cluster
    assert node is not None, "served in cluster mode only"
    shell = node.controller
    try:
        if shell is None or not shell.is_active:
            raise KafkaError(ErrorCode.NOT_CONTROLLER)
        answer = await shell.submit(AlterReassignments(targets, allow))
    except KafkaError as exc:
        if exc.code is not ErrorCode.NOT_CONTROLLER:
            raise
        return _response(allow, ErrorCode.NOT_CONTROLLER, exc.message, [])
    assert isinstance(answer, AlterReassignmentsReply)
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for r in answer.results:
        by_topic.setdefault(r.topic, []).append(
            {"partition_index": r.partition, "error_code": r.error, "error_message": r.message}
        )
    topics = [{"name": name, "partitions": parts} for name, parts in by_topic.items()]
    return _response(allow, ErrorCode.NONE, None, topics)


def _response(
    allow: bool, error: ErrorCode, message: str | None, topics: list[dict[str, Any]]
) -> Message:
    return {
        "throttle_time_ms": 0,
        "allow_replication_factor_change": allow,
        "error_code": error,
        "error_message": message,
        "responses": topics,
    }
