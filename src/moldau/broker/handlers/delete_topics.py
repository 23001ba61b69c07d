"""DeleteTopics (key 20): delete topics and their data.

v0 (deprecated in Kafka 3.9, gone in 4.0): as v1 without throttle time.
v1: throttle time. v4: flexible. v5: error messages. v6: topics by name or id.
"""

from __future__ import annotations

import uuid
from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..deadline import Deadline
from ..dispatch import RequestContext, handles

_NO_ID = uuid.UUID(int=0)


@handles(ApiKey.DELETE_TOPICS, range(0, 7))
async def delete_topics(context: RequestContext, request: Message) -> Message:
    core = context.core
    if context.version >= 6:
        wanted = [(t.get("name"), t.get("topic_id") or _NO_ID) for t in request["topics"]]
    else:
        wanted = [(name, _NO_ID) for name in request["topic_names"]]
    responses: list[dict[str, Any]] = []
    wait = Deadline(request["timeout_ms"])
    for name, topic_id in wanted:
        if not name and topic_id != _NO_ID:
            info = core.metadata.topic_by_id(topic_id)
            if info is None:
                responses.append(
                    {"name": None, "topic_id": topic_id, "error_code": ErrorCode.UNKNOWN_TOPIC_ID}
                )
                continue
            name = info.name
        info = core.metadata.topic(name) if name else None
        try:
            await core.topics.delete_topic_request(name or "", wait.remaining_ms())
        except KafkaError as exc:
            responses.append(
                {
                    "name": name,
                    "topic_id": topic_id,
                    "error_code": exc.code,
                    "error_message": exc.message,
                }
            )
            continue
        responses.append(
            {"name": name, "topic_id": info.topic_id if info else topic_id, "error_code": 0}
        )
    return {"throttle_time_ms": 0, "responses": responses}
