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
from ..capacity import check_request_size
from ..core import BrokerCore
from ..deadline import Deadline
from ..dispatch import RequestContext, handles
from ..topic_config import TOPIC_KEYS, config_source, effective_value


@handles(ApiKey.CREATE_TOPICS, range(0, 8))
async def create_topics(context: RequestContext, request: Message) -> Message:
    core = context.core
    try:
        # Kafka's cap is on the whole request: over it, every topic is refused.
        check_request_size(_requested_partitions(core, request["topics"]))
    except KafkaError as exc:
        refusal = {"error_code": exc.code, "error_message": exc.message}
        return {
            "throttle_time_ms": 0,
            "topics": [{"name": t["name"], **refusal} for t in request["topics"]],
        }
    results: list[dict[str, Any]] = []
    wait = Deadline(request["timeout_ms"])
    for topic in request["topics"]:
        name = topic["name"]
        configs = {c["name"]: c["value"] for c in topic["configs"] or []}
        try:
            info = await core.topics.create_topic_request(
                name,
                topic["num_partitions"],
                topic["replication_factor"],
                configs,
                [
                    (a["partition_index"], list(a["broker_ids"] or []))
                    for a in topic["assignments"] or []
                ],
                request.get("validate_only", False),
                wait.remaining_ms(),
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


def _requested_partitions(core: BrokerCore, topics: list[Message]) -> int:
    """Partitions the request asks for, counted as Kafka's controller counts."""
    default = int(core.config.get("num.partitions"))
    total = 0
    for topic in topics:
        if topic["assignments"]:
            total += len(topic["assignments"])
        elif topic["num_partitions"] == -1:
            total += default
        elif topic["num_partitions"] > 0:
            total += topic["num_partitions"]
    return total
