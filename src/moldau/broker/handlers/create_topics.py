"""CreateTopics (key 19): create topics with partitions, replicas, configs.

v0 (deprecated in Kafka 3.9, gone in 4.0): no validate_only, no error
messages. v1: validate_only and error messages. v2-v4: no change for brokers (v4 lets
num_partitions and replication_factor be -1 for the broker defaults).
v5: flexible; the answer carries the topic's partitions, replication factor
and configs. v6: no change. v7: topic ids.
"""

from __future__ import annotations

from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ..topic_config import TOPIC_KEYS, config_source, effective_value


@handles(ApiKey.CREATE_TOPICS, range(0, 8))
def create_topics(context: RequestContext, request: Message) -> Message:
    core = context.core
    results: list[dict[str, Any]] = []
    for topic in request["topics"]:
        name = topic["name"]
        configs = {c["name"]: c["value"] for c in topic["configs"] or []}
        assignments = sorted(topic["assignments"] or [], key=lambda a: a["partition_index"])
        try:
            info = core.create_topic(
                name,
                topic["num_partitions"],
                topic["replication_factor"],
                configs,
                assignments=[a["broker_ids"] for a in assignments] or None,
                validate_only=request.get("validate_only", False),
            )
        except KafkaError as exc:
            results.append({"name": name, "error_code": exc.code, "error_message": exc.message})
            continue
        results.append(
            {
                "name": name,
                "topic_id": info.topic_id,
                "error_code": 0,
                "num_partitions": info.partition_count,
                "replication_factor": len(info.replicas[0]) if info.replicas else -1,
                "configs": [
                    {
                        "name": key.name,
                        "value": effective_value(key, info.configs, core.config),
                        "read_only": False,
                        "config_source": config_source(key, info.configs, core.config),
                        "is_sensitive": False,
                    }
                    for key in TOPIC_KEYS.values()
                ],
            }
        )
    return {"throttle_time_ms": 0, "topics": results}
