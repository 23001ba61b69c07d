"""IncrementalAlterConfigs (key 44): set, delete, append to or subtract from
single topic configs, or set and delete a broker's dynamic configs (the
replication throttles' rates, ``dynamic_config.py``), leaving the others as
they are.

v1: flexible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..config import BrokerConfig
from ..dispatch import RequestContext, handles
from ..topic_config import TOPIC_KEYS, effective_value
from .alter_configs import apply_to_resource

if TYPE_CHECKING:
    from ..dynamic_config import Change

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


@handles(ApiKey.INCREMENTAL_ALTER_CONFIGS, range(0, 2))
async def incremental_alter_configs(context: RequestContext, request: Message) -> Message:
    core = context.core
    responses = []
    for resource in request["resources"]:

        async def change(name: str, operations: list[Message] = resource["configs"]) -> None:
            info = core.metadata.topic(name)
            if info is None:
                raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' not found")
            configs: dict[str, str | None] = dict(info.configs)
            for op in operations:
                _apply(configs, op, core.config, info.configs)
            await core.topics.alter_topic_configs(name, configs, request["validate_only"])

        responses.append(
            await apply_to_resource(
                context,
                resource,
                change,
                _broker_operations(resource["configs"]),
                request["validate_only"],
            )
        )
    return {"throttle_time_ms": 0, "responses": responses}


def _broker_operations(operations: list[Message]) -> Change:
    """The change of a broker's dynamic configs: SET and DELETE (none of them is
    a list, so APPEND and SUBTRACT are refused as Kafka does)."""

    def change(current: dict[str, str]) -> dict[str, str | None]:
        configs: dict[str, str | None] = dict(current)
        for op in operations:
            name, operation = op["name"], op["config_operation"]
            if operation == SET:
                configs[name] = op["value"]
            elif operation == DELETE:
                configs.pop(name, None)
            elif operation in (APPEND, SUBTRACT):
                verb = "append" if operation == APPEND else "subtract"
                raise KafkaError(
                    ErrorCode.INVALID_CONFIG,
                    f"Config value {verb} is not allowed for config key: {name}",
                )
            else:
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown operations type {operation}")
        return configs

    return change


def _apply(
    configs: dict[str, str | None], op: Message, broker: BrokerConfig, current: dict[str, str]
) -> None:
    name, operation, value = op["name"], op["config_operation"], op["value"]
    key = TOPIC_KEYS.get(name)
    if key is None:
        raise KafkaError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {name}")
    if operation == SET:
        configs[name] = value
    elif operation == DELETE:
        configs.pop(name, None)
    elif operation in (APPEND, SUBTRACT):
        if key.type != "list":
            raise KafkaError(
                ErrorCode.INVALID_CONFIG, f"Config {name} is not a list: cannot append/subtract"
            )
        items = [i for i in effective_value(key, current, broker).split(",") if i]
        for item in (value or "").split(","):
            if operation == APPEND and item and item not in items:
                items.append(item)
            if operation == SUBTRACT and item in items:
                items.remove(item)
        configs[name] = ",".join(items)
    else:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown config operation {operation}")
