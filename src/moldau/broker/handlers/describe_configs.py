"""DescribeConfigs (key 32): topic and broker configs, with their sources.

v0 (deprecated in Kafka 3.9, gone in 4.0): is_default instead of a source,
no synonyms. moldau sets is_default for values from the defaults, as the
field is defined; Kafka 3.9's broker leaves it false (clients then guess the
source from the resource type).
v1: synonyms and config_source (instead of is_default). v2: no change.
v3: config type and documentation. v4: flexible.

A BROKER resource named with this broker's id shows its static configs and
the dynamic ones set (the replication throttles' rates, from
/config/brokers/<id> as DYNAMIC_BROKER_CONFIG or /config/brokers/<default>
as DYNAMIC_DEFAULT_BROKER_CONFIG, ``dynamic_config.py``); named "" only the
cluster-wide dynamic ones, as Kafka 3.9 does. Kafka leaves a dynamic key
out while it is unset (it has no static value) and reports the throttle
rates read-only with no type; moldau reports them writable and LONG.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..config import BROKER_KEYS, DYNAMIC_BROKER_KEYS, BrokerConfig
from ..dispatch import RequestContext, handles
from ..topic_config import TOPIC_KEYS, broker_synonyms, config_source, effective_value

if TYPE_CHECKING:
    from ..dynamic_config import Entry

TOPIC = 2
BROKER = 4
BROKER_LOGGER = 8

DYNAMIC_TOPIC_CONFIG = 1
STATIC_BROKER_CONFIG = 4
DEFAULT_CONFIG = 5

_CONFIG_TYPES = {"boolean": 1, "string": 2, "int": 3, "long": 5, "double": 6, "list": 7}


@handles(ApiKey.DESCRIBE_CONFIGS, range(0, 5))
def describe_configs(context: RequestContext, request: Message) -> Message:
    results = []
    for resource in request["resources"]:
        kind, name = resource["resource_type"], resource["resource_name"]
        keys = resource["configuration_keys"]
        if kind == TOPIC:
            info = context.core.metadata.topic(name)
            if info is None:
                results.append(_error(resource, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                continue
            configs = _topic_entries(info.configs, context.core.config, request)
        elif kind == BROKER:
            broker_id = context.core.broker_id
            if name and name != str(broker_id):
                message = (
                    f"Unexpected broker id, expected {broker_id} or empty string, "
                    f"but received {name}"
                )
                results.append(_error(resource, ErrorCode.INVALID_REQUEST, message))
                continue
            from ..dynamic_config import describe_entries  # cluster code: see alter_configs

            static = _broker_entries(context.core.config, request) if name else []
            configs = static + _dynamic_entries(describe_entries(context.core, name), request)
        else:
            results.append(_error(resource, ErrorCode.INVALID_REQUEST))
            continue
        if keys is not None:
            configs = [c for c in configs if c["name"] in keys]
        results.append(
            {
                "error_code": 0,
                "error_message": None,
                "resource_type": kind,
                "resource_name": name,
                "configs": configs,
            }
        )
    return {"throttle_time_ms": 0, "results": results}


def _topic_entries(
    topic_configs: dict[str, str], broker: BrokerConfig, request: Message
) -> list[dict[str, Any]]:
    entries = []
    for key in TOPIC_KEYS.values():
        explicit = key.name in topic_configs
        synonyms: list[dict[str, Any]] = []
        if explicit:
            synonyms.append(
                {"name": key.name, "value": topic_configs[key.name], "source": DYNAMIC_TOPIC_CONFIG}
            )
        synonyms += [
            {"name": name, "value": _text(value), "source": source}
            for name, value, source in broker_synonyms(key, broker)
        ]
        source = config_source(key, topic_configs, broker)
        entries.append(
            {
                "name": key.name,
                "value": effective_value(key, topic_configs, broker),
                "read_only": False,
                "is_default": source == DEFAULT_CONFIG,
                "config_source": source,
                "is_sensitive": False,
                "synonyms": synonyms if request.get("include_synonyms") else [],
                "config_type": _CONFIG_TYPES.get(key.type, 0),
            }
        )
    return entries


def _broker_entries(broker: BrokerConfig, request: Message) -> list[dict[str, Any]]:
    entries = []
    for name, value in broker.items():
        explicit = name in broker.explicit
        source = STATIC_BROKER_CONFIG if explicit else DEFAULT_CONFIG
        entries.append(
            {
                "name": name,
                "value": _text(value),
                "read_only": True,
                "is_default": not explicit,
                "config_source": source,
                "is_sensitive": False,
                "synonyms": (
                    [{"name": name, "value": _text(value), "source": source}]
                    if request.get("include_synonyms")
                    else []
                ),
                "config_type": _CONFIG_TYPES.get(BROKER_KEYS[name].type, 0),
                "documentation": BROKER_KEYS[name].doc
                if request.get("include_documentation")
                else None,
            }
        )
    return entries


def _dynamic_entries(entries: list[Entry], request: Message) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "value": value,
            "read_only": False,
            "is_default": False,
            "config_source": source,
            "is_sensitive": False,
            "synonyms": (
                [{"name": name, "value": v, "source": s} for v, s in synonyms]
                if request.get("include_synonyms")
                else []
            ),
            "config_type": _CONFIG_TYPES[DYNAMIC_BROKER_KEYS[name].type],
            "documentation": DYNAMIC_BROKER_KEYS[name].doc
            if request.get("include_documentation")
            else None,
        }
        for name, value, source, synonyms in entries
    ]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _error(resource: Message, code: ErrorCode, message: str | None = None) -> dict[str, Any]:
    return {
        "error_code": code,
        "error_message": message or code.name,
        "resource_type": resource["resource_type"],
        "resource_name": resource["resource_name"],
        "configs": [],
    }
