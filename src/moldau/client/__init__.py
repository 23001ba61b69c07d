"""moldau's asyncio Kafka client: producer, consumer, admin.

Also what brokers use to talk to each other. Everything speaks the Kafka wire
protocol through ``moldau.protocol`` and works against any Kafka broker.
"""

from .admin import Admin, ConfigEntry, ConfigResourceType, NewTopic
from .cluster import Cluster
from .consumer import Consumer
from .errors import ErrorCode, KafkaError
from .producer import Producer
from .types import ConsumerRecord, OffsetAndTimestamp, RecordMetadata, TopicPartition

__all__ = [
    "Admin",
    "Cluster",
    "ConfigEntry",
    "ConfigResourceType",
    "Consumer",
    "ConsumerRecord",
    "ErrorCode",
    "KafkaError",
    "NewTopic",
    "OffsetAndTimestamp",
    "Producer",
    "RecordMetadata",
    "TopicPartition",
]
