"""The names of the topics the broker keeps for itself.

Its own module so that the topic admin (which refuses to let clients create,
delete or produce to them) and the group service (which creates and writes
``__consumer_offsets``) both import the names without importing each other.
"""

from __future__ import annotations

from ..group.history import HISTORY_TOPIC
from ..txn.records import TRANSACTION_STATE_TOPIC

OFFSETS_TOPIC = "__consumer_offsets"
#: Clients may not produce to, create or delete these.
INTERNAL_TOPICS = frozenset({OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC, HISTORY_TOPIC})


def is_internal_topic(name: str) -> bool:
    """Kafka's internal topics (``Topic.isInternal``) and moldau's own."""
    return name in INTERNAL_TOPICS
