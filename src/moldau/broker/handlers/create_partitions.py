"""CreatePartitions (key 37): add partitions to existing topics.

v1: no change. v2: flexible. v3: no change.
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.errors import KafkaError
from ...protocol.messages import Message
from ..deadline import Deadline
from ..dispatch import RequestContext, handles


@handles(ApiKey.CREATE_PARTITIONS, range(0, 4))
async def create_partitions(context: RequestContext, request: Message) -> Message:
    results = []
    wait = Deadline(request["timeout_ms"])
    for topic in request["topics"]:
        # Null assignments: the broker places the new partitions; an empty
        # list is a (wrong) manual assignment of none, as in Kafka.
        assignments = topic["assignments"]
        try:
            await context.core.topics.create_partitions_request(
                topic["name"],
                topic["count"],
                None if assignments is None else [list(a["broker_ids"] or []) for a in assignments],
                request["validate_only"],
                wait.remaining_ms(),
            )
        except KafkaError as exc:
            results.append(
                {"name": topic["name"], "error_code": exc.code, "error_message": exc.message}
            )
            continue
        results.append({"name": topic["name"], "error_code": 0, "error_message": None})
    return {"throttle_time_ms": 0, "results": results}
