"""moldau's asyncio Kafka client: producer, consumer, admin.

Also what brokers use to talk to each other. Everything speaks the Kafka wire
protocol through ``moldau.protocol`` and works against any Kafka broker.

The names below are imported on first use (PEP 562), so a broker that only
needs ``client.connection`` for its replica fetchers does not load the
producer, consumer and admin at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, for type checkers ("X as X": re-exported)
    from .admin import Admin as Admin
    from .admin import ConfigEntry as ConfigEntry
    from .admin import ConfigResourceType as ConfigResourceType
    from .admin import NewTopic as NewTopic
    from .cluster import Cluster as Cluster
    from .consumer import Consumer as Consumer
    from .errors import ErrorCode as ErrorCode
    from .errors import KafkaError as KafkaError
    from .producer import Producer as Producer
    from .types import ConsumerRecord as ConsumerRecord
    from .types import OffsetAndTimestamp as OffsetAndTimestamp
    from .types import RecordMetadata as RecordMetadata
    from .types import TopicPartition as TopicPartition

#: Each public name and the module it lives in.
_HOMES = {
    "Admin": "admin",
    "ConfigEntry": "admin",
    "ConfigResourceType": "admin",
    "NewTopic": "admin",
    "Cluster": "cluster",
    "Consumer": "consumer",
    "ErrorCode": "errors",
    "KafkaError": "errors",
    "Producer": "producer",
    "ConsumerRecord": "types",
    "OffsetAndTimestamp": "types",
    "RecordMetadata": "types",
    "TopicPartition": "types",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
