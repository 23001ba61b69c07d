"""AlterConfigs (key 33): replace a topic's whole set of configs.

v1: no change. v2: flexible. Keys left out return to their defaults, which
is why Kafka deprecated this API for IncrementalAlterConfigs. Dynamic broker
configs are not supported yet: a broker resource is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles

TOPIC = 2


@handles(ApiKey.ALTER_CONFIGS, range(0, 3))
async def alter_configs(context: RequestContext, request: Message) -> Message:
    responses = []
    for resource in request["resources"]:
        configs: dict[str, str | None] = {c["name"]: c["value"] for c in resource["configs"]}

        async def change(name: str, configs: dict[str, str | None] = configs) -> None:
            await context.core.topics.alter_topic_configs(
                name, dict(configs), request["validate_only"]
            )

        responses.append(await apply_to_resource(context, resource, change))
    return {"throttle_time_ms": 0, "responses": responses}


async def apply_to_resource(
    context: RequestContext, resource: Message, change: Callable[[str], Awaitable[None]]
) -> dict[str, Any]:
    """Run ``change(topic name)`` for a topic resource; the answer for the resource."""
    answer = {
        "resource_type": resource["resource_type"],
        "resource_name": resource["resource_name"],
        "error_code": 0,
        "error_message": None,
    }
    if resource["resource_type"] != TOPIC:
        answer["error_code"] = ErrorCode.INVALID_REQUEST
        answer["error_message"] = "moldau does not change broker configs at run time yet"
        return answer
    try:
        await change(resource["resource_name"])
    except KafkaError as exc:
        answer["error_code"] = exc.code
        answer["error_message"] = exc.message
    return answer
