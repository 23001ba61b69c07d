"""Produce (key 0): append record batches to partition logs.

v0-v2 (deprecated in Kafka 3.9, gone in 4.0): v1 throttle time, v2 log
append time. Kafka checks the magic only from v3 on, so a record batch v2
sent at v0-v2 is appended like any other; message sets of magic 0/1 (what
these clients send) are up-converted to one v2 batch first
(``legacy_records.up_convert``), then appended like any other.
v3: record batch v2 and transactional_id. v5: log_start_offset.
v8: record_errors and error_message. v9: flexible. v10: current_leader and
node_endpoints on NOT_LEADER_OR_FOLLOWER (KIP-951, ``routing.py``).
v11-v12: no change for brokers. v13: topics named by id.
"""

from __future__ import annotations

import uuid
from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.legacy_records import is_legacy, up_convert
from ...protocol.messages import Message
from ..core import BrokerCore
from ..dispatch import RequestContext, handles
from ..internal_topics import is_internal_topic
from ..routing import leader_entry, node_endpoints

#: Kafka's AdminUtils.ADMIN_CLIENT_ID: requests with it may write internal topics.
ADMIN_CLIENT_ID = "__admin_client"


@handles(ApiKey.PRODUCE, range(0, 14))
def produce(context: RequestContext, request: Message) -> Message | None:
    core = context.core
    acks = request["acks"]
    responses = []
    leaders: list[int] = []
    for topic in request["topic_data"]:
        name = _topic_name(core, topic)
        partitions = []
        for data in topic["partition_data"]:
            if acks not in (0, 1, -1):
                partitions.append(_error(data["index"], ErrorCode.INVALID_REQUIRED_ACKS, None))
                continue
            if name is not None and _internal_refused(context, name):
                message = f"Cannot append to internal topic {name}"
                partitions.append(_error(data["index"], ErrorCode.INVALID_TOPIC_EXCEPTION, message))
                continue
            answer = _append(core, name, data, acks, context.version)
            if answer["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER and name is not None:
                answer["current_leader"] = leader = leader_entry(core, name, data["index"])
                leaders.append(leader["leader_id"])
            partitions.append(answer)
        responses.append(
            {"name": name, "topic_id": topic.get("topic_id"), "partition_responses": partitions}
        )
    if acks == 0:
        return None
    response = {"responses": responses, "throttle_time_ms": 0}
    if leaders:
        response["node_endpoints"] = node_endpoints(core, leaders)
    return response


def _internal_refused(context: RequestContext, name: str) -> bool:
    """Kafka's ReplicaManager: only its admin client id may append to an
    internal topic (a forged commit would rewind a group)."""
    return is_internal_topic(name) and context.header.client_id != ADMIN_CLIENT_ID


def _topic_name(core: BrokerCore, topic: Message) -> str | None:
    if "name" in topic:
        return str(topic["name"])
    info = core.metadata.topic_by_id(topic.get("topic_id") or uuid.UUID(int=0))
    return info.name if info is not None else None


def _append(
    core: BrokerCore, name: str | None, data: Message, acks: int, version: int
) -> dict[str, Any]:
    index = data["index"]
    if name is None:
        return _error(index, ErrorCode.UNKNOWN_TOPIC_ID, None)
    try:
        partition = core.replicas.leader_partition(name, index)
        if acks == -1 and len(partition.isr) < _min_insync(core, name):
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS)
        records = data["records"]
        if records is None or len(records) == 0:
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE, "produce request without records")
        if version <= 2 and is_legacy(records):
            records = up_convert(records)
        result = partition.append_as_leader(records)
    except KafkaError as exc:
        # Also the log's refusals: RecordBatchError and LogError are KafkaErrors.
        return _error(index, exc.code, exc.message)
    return {
        "index": index,
        "error_code": 0,
        "base_offset": result.base_offset,
        "log_append_time_ms": result.log_append_time_ms,
        "log_start_offset": partition.log_start_offset,
    }


def _min_insync(core: BrokerCore, topic: str) -> int:
    info = core.metadata.topic(topic)
    configured = info.configs.get("min.insync.replicas") if info is not None else None
    return int(configured or core.config.get("min.insync.replicas"))


def _error(index: int, code: ErrorCode, message: str | None) -> dict[str, Any]:
    return {
        "index": index,
        "error_code": code,
        "base_offset": -1,
        "log_append_time_ms": -1,
        "log_start_offset": -1,
        "error_message": message,
    }
