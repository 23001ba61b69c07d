"""AlterConfigs (key 33): replace the whole set of configs of a topic, or the
dynamic configs of a broker.

v1: no change. v2: flexible. Keys left out return to their defaults, which
is why Kafka deprecated this API for IncrementalAlterConfigs. A BROKER
resource (this broker's id, or "" for every broker) sets the dynamic broker
configs moldau has, the replication throttles' rates (``dynamic_config.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles

if TYPE_CHECKING:
    from ..dynamic_config import Change

TOPIC = 2
BROKER = 4
_TYPE_NAMES = {TOPIC: "TOPIC", BROKER: "BROKER", 8: "BROKER_LOGGER", 16: "CLIENT_METRICS"}


@handles(ApiKey.ALTER_CONFIGS, range(0, 3))
async def alter_configs(context: RequestContext, request: Message) -> Message:
    responses = []
    for resource in request["resources"]:
        configs: dict[str, str | None] = {c["name"]: c["value"] for c in resource["configs"]}

        async def change(name: str, configs: dict[str, str | None] = configs) -> None:
            await context.core.topics.alter_topic_configs(
                name, dict(configs), request["validate_only"]
            )

        def replace(_current: dict[str, str], configs: dict[str, str | None] = configs) -> Any:
            return dict(configs)

        responses.append(
            await apply_to_resource(context, resource, change, replace, request["validate_only"])
        )
    return {"throttle_time_ms": 0, "responses": responses}


async def apply_to_resource(
    context: RequestContext,
    resource: Message,
    change: Callable[[str], Awaitable[None]],
    broker_change: Change,
    validate_only: bool,
) -> dict[str, Any]:
    """Run ``change(topic name)`` for a topic resource, or ``broker_change``
    on a broker's dynamic configs; the answer for the resource."""
    kind = resource["resource_type"]
    answer = {
        "resource_type": kind,
        "resource_name": resource["resource_name"],
        "error_code": 0,
        "error_message": None,
    }
    try:
        if kind == TOPIC:
            await change(resource["resource_name"])
        elif kind == BROKER:
            # Imported here: dynamic broker configs live in ZooKeeper, and a
            # single node loads none of the cluster code to start.
            from .. import dynamic_config

            await dynamic_config.alter(
                context.core, resource["resource_name"], broker_change, validate_only
            )
        else:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                "AlterConfigs is only supported for topics and brokers, but resource type is "
                f"{_TYPE_NAMES.get(kind, kind)}",
            )
    except KafkaError as exc:
        answer["error_code"] = exc.code
        answer["error_message"] = exc.message
    return answer
