"""DeleteRecords (key 21): move partitions' log start offsets forward.

v1: no change. v2: flexible. Records below the new start can no longer be
read (OFFSET_OUT_OF_RANGE); whole segments below it are removed. An offset
of -1 means the high watermark: delete everything consumers can see.
"""

from __future__ import annotations

import logging
from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ..internal_topics import is_internal_topic

log = logging.getLogger(__name__)

HIGH_WATERMARK = -1


@handles(ApiKey.DELETE_RECORDS, range(0, 3))
def delete_records(context: RequestContext, request: Message) -> Message:
    core = context.core
    topics = []
    for topic in request["topics"]:
        partitions: list[dict[str, Any]] = []
        for wanted in topic["partitions"]:
            index = wanted["partition_index"]
            answer = {"partition_index": index, "low_watermark": -1, "error_code": 0}
            try:
                if is_internal_topic(topic["name"]):
                    # Kafka's ReplicaManager: committed offsets are not the
                    # client's to delete.
                    raise KafkaError(
                        ErrorCode.INVALID_TOPIC_EXCEPTION,
                        f"Cannot delete records of internal topic {topic['name']}",
                    )
                partition = core.replicas.leader_partition(topic["name"], index)
                offset = wanted["offset"]
                if offset == HIGH_WATERMARK:
                    offset = partition.high_watermark
                if offset < 0 or offset > partition.high_watermark:
                    raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE)
                answer["low_watermark"] = core.logs.delete_records(topic["name"], index, offset)
            except KafkaError as exc:
                answer["error_code"] = exc.code
            except OSError as exc:
                # The new log start offset could not be made durable: nothing
                # was deleted (LogManager.delete_records).
                log.error("DeleteRecords on %s-%d failed: %s", topic["name"], index, exc)
                answer["error_code"] = ErrorCode.KAFKA_STORAGE_ERROR
            partitions.append(answer)
        topics.append({"name": topic["name"], "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}
