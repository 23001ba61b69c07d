"""Topic-level configs: Kafka's keys, their broker-wide defaults, validation.

Each topic key falls back to a broker key (``segment.bytes`` to
``log.segment.bytes``...), exactly as in Kafka, and DescribeConfigs reports
where a value came from. The replication throttle's replica lists
(``leader.replication.throttled.replicas``, ``follower...``) have no broker
key: they default to "" (nothing throttled) and are read by the fetch path
(``replication/quota.py``), not by the log. ``log_config`` turns the effective values into the
``LogConfig`` the partition log runs with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..log.config import LogConfig
from ..replication.quota import FOLLOWER_REPLICAS, LEADER_REPLICAS, throttled_replicas_error
from .config import BrokerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicKey:
    name: str
    type: str
    #: The effective broker-wide default, computed from the broker config.
    broker_default: Callable[[BrokerConfig], Any]
    #: The broker key it falls back to, shown as a synonym.
    broker_key: str | None
    #: The LogConfig attribute it sets, if the log uses it.
    log_attr: str | None
    choices: tuple[str, ...] = ()
    #: Kafka's bounds on the value (its config definitions' validators).
    at_least: float | None = None
    at_most: float | None = None
    #: Broker keys of lower precedence that set the same value in other units
    #: (``log.retention.hours`` behind ``log.retention.ms``).
    also: tuple[str, ...] = ()
    #: Kafka's own validator of the value, if it has one: why a value is
    #: refused, or None.
    check: Callable[[str, str], str | None] | None = None


def _broker(key: str) -> Callable[[BrokerConfig], Any]:
    return lambda config: config.get(key)


def _timestamp_limit(config: BrokerConfig, key: str) -> Any:
    """Kafka's deprecated difference setting, when set, bounds both directions."""
    difference = config.get("log.message.timestamp.difference.max.ms")
    return difference if difference is not None else config.get(key)


TOPIC_KEYS: dict[str, TopicKey] = {
    k.name: k
    for k in [
        TopicKey(
            "segment.bytes",
            "int",
            _broker("log.segment.bytes"),
            "log.segment.bytes",
            "segment_bytes",
            at_least=14,
        ),
        TopicKey(
            "segment.ms",
            "long",
            lambda c: c.log_roll_ms,
            "log.roll.ms",
            "segment_ms",
            at_least=1,
            also=("log.roll.hours",),
        ),
        TopicKey(
            "index.interval.bytes",
            "int",
            _broker("log.index.interval.bytes"),
            "log.index.interval.bytes",
            "index_interval_bytes",
            at_least=0,
        ),
        TopicKey(
            "flush.messages",
            "long",
            _broker("log.flush.interval.messages"),
            "log.flush.interval.messages",
            "flush_interval_messages",
            at_least=1,
        ),
        TopicKey(
            "flush.ms",
            "long",
            lambda c: c.get("log.flush.interval.ms") or c.get("log.flush.scheduler.interval.ms"),
            "log.flush.interval.ms",
            "flush_interval_ms",
            at_least=0,
        ),
        TopicKey(
            "max.message.bytes",
            "int",
            _broker("message.max.bytes"),
            "message.max.bytes",
            "max_message_bytes",
            at_least=0,
        ),
        TopicKey(
            "retention.ms",
            "long",
            lambda c: c.log_retention_ms,
            "log.retention.ms",
            "retention_ms",
            at_least=-1,
            also=("log.retention.minutes", "log.retention.hours"),
        ),
        TopicKey(
            "retention.bytes",
            "long",
            _broker("log.retention.bytes"),
            "log.retention.bytes",
            "retention_bytes",
        ),
        TopicKey(
            "cleanup.policy",
            "list",
            lambda c: ",".join(c.get("log.cleanup.policy")),
            "log.cleanup.policy",
            "cleanup_policy",
            ("delete", "compact"),
        ),
        TopicKey(
            "message.timestamp.type",
            "string",
            _broker("log.message.timestamp.type"),
            "log.message.timestamp.type",
            "message_timestamp_type",
            ("CreateTime", "LogAppendTime"),
        ),
        TopicKey(
            "min.cleanable.dirty.ratio",
            "double",
            _broker("log.cleaner.min.cleanable.ratio"),
            "log.cleaner.min.cleanable.ratio",
            "min_cleanable_dirty_ratio",
            at_least=0,
            at_most=1,
        ),
        TopicKey(
            "min.compaction.lag.ms",
            "long",
            _broker("log.cleaner.min.compaction.lag.ms"),
            "log.cleaner.min.compaction.lag.ms",
            "min_compaction_lag_ms",
            at_least=0,
        ),
        TopicKey(
            "max.compaction.lag.ms",
            "long",
            _broker("log.cleaner.max.compaction.lag.ms"),
            "log.cleaner.max.compaction.lag.ms",
            "max_compaction_lag_ms",
            at_least=1,
        ),
        TopicKey(
            "delete.retention.ms",
            "long",
            _broker("log.cleaner.delete.retention.ms"),
            "log.cleaner.delete.retention.ms",
            "delete_retention_ms",
            at_least=0,
        ),
        TopicKey(
            "message.timestamp.before.max.ms",
            "long",
            lambda c: _timestamp_limit(c, "log.message.timestamp.before.max.ms"),
            "log.message.timestamp.before.max.ms",
            "message_timestamp_before_max_ms",
            at_least=0,
        ),
        TopicKey(
            "message.timestamp.after.max.ms",
            "long",
            lambda c: _timestamp_limit(c, "log.message.timestamp.after.max.ms"),
            "log.message.timestamp.after.max.ms",
            "message_timestamp_after_max_ms",
            at_least=0,
        ),
        TopicKey(
            "compression.type",
            "string",
            _broker("compression.type"),
            "compression.type",
            None,
            ("producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"),
        ),
        TopicKey(
            "message.downconversion.enable",
            "boolean",
            _broker("log.message.downconversion.enable"),
            "log.message.downconversion.enable",
            None,
            ("true", "false"),
        ),
        TopicKey(
            "message.format.version",
            "string",
            _broker("log.message.format.version"),
            "log.message.format.version",
            None,
        ),
        TopicKey(
            "min.insync.replicas",
            "int",
            _broker("min.insync.replicas"),
            "min.insync.replicas",
            None,
            at_least=1,
        ),
        *(
            TopicKey(name, "list", lambda c: "", None, None, check=throttled_replicas_error)
            for name in (LEADER_REPLICAS, FOLLOWER_REPLICAS)
        ),
    ]
}


class InvalidTopicConfig(ValueError):
    """A topic config key is unknown or its value does not parse."""


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Check every key and value; return the ones that are set (not None)."""
    checked: dict[str, str] = {}
    for name, value in configs.items():
        key = TOPIC_KEYS.get(name)
        if key is None:
            raise InvalidTopicConfig(f"Unknown topic config name: {name}")
        if value is None:
            continue
        _parse(key, value)
        if name == "message.format.version":
            log.warning("topic config %s is deprecated and has no effect (Kafka 3.x)", name)
        checked[name] = value
    return checked


def _parse(key: TopicKey, value: str) -> Any:
    refused = key.check(key.name, value) if key.check else None
    if refused is not None:
        raise InvalidTopicConfig(f"Invalid value {value} for configuration {key.name}: {refused}")
    try:
        if key.type in ("int", "long"):
            parsed: Any = int(value)
        elif key.type == "double":
            parsed = float(value)
        elif key.type == "list":
            parsed = [item.strip() for item in value.split(",") if item.strip()]
            bad = [item for item in parsed if key.choices and item not in key.choices]
            if bad:
                raise ValueError(bad[0])
        else:
            parsed = value
            if key.choices and value not in key.choices:
                raise ValueError(value)
    except ValueError:
        raise InvalidTopicConfig(f"Invalid value {value} for configuration {key.name}") from None
    if key.type == "int" and not -(1 << 31) <= parsed < 1 << 31:
        raise InvalidTopicConfig(f"Invalid value {value} for configuration {key.name}: not an int")
    if key.at_least is not None and parsed < key.at_least:
        raise InvalidTopicConfig(
            f"Invalid value {value} for configuration {key.name}: must be at least {key.at_least:g}"
        )
    if key.at_most is not None and parsed > key.at_most:
        raise InvalidTopicConfig(
            f"Invalid value {value} for configuration {key.name}: must be at most {key.at_most:g}"
        )
    return parsed


#: DescribeConfigs' config sources that a topic config can have.
DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG, DEFAULT_CONFIG = 1, 4, 5


def broker_synonyms(key: TopicKey, broker: BrokerConfig) -> list[tuple[str, Any, int]]:
    """The broker keys behind a topic config as (name, value, source), most
    precedent first: those set in the broker's config, else the default."""
    if key.broker_key is None:
        return []

    def value(name: str) -> Any:
        # The main key shows the effective value (a list joined, a default
        # computed); the others in their own units, as they were set.
        return key.broker_default(broker) if name == key.broker_key else broker.get(name)

    set_here = [name for name in (key.broker_key, *key.also) if name in broker.explicit]
    if not set_here:
        return [(key.broker_key, value(key.broker_key), DEFAULT_CONFIG)]
    return [(name, value(name), STATIC_BROKER_CONFIG) for name in set_here]


def config_source(key: TopicKey, topic_configs: Mapping[str, str], broker: BrokerConfig) -> int:
    """Where a topic's effective value comes from: its own setting, a broker
    key set in the broker's config, or the default (Kafka's order)."""
    if key.name in topic_configs:
        return DYNAMIC_TOPIC_CONFIG
    synonyms = broker_synonyms(key, broker)
    return synonyms[0][2] if synonyms else DEFAULT_CONFIG


def effective_value(key: TopicKey, topic_configs: Mapping[str, str], broker: BrokerConfig) -> str:
    if key.name in topic_configs:
        return topic_configs[key.name]
    value = key.broker_default(broker)
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def log_config(topic_configs: Mapping[str, str], broker: BrokerConfig) -> LogConfig:
    """The LogConfig of a topic: its own configs over the broker's defaults."""
    values: dict[str, Any] = {}
    for key in TOPIC_KEYS.values():
        if key.log_attr is None:
            continue
        if key.name in topic_configs:
            values[key.log_attr] = _parse(key, topic_configs[key.name])
        else:
            values[key.log_attr] = key.broker_default(broker)
    if isinstance(values.get("cleanup_policy"), list):
        values["cleanup_policy"] = ",".join(values["cleanup_policy"])
    return LogConfig(**values)
