"""OffsetDelete (key 47): forget a group's offsets for some partitions.

v0 only. Refused with GROUP_SUBSCRIBED_TO_TOPIC while a live member of the
group subscribes to the topic. Answered once the tombstones are on every
ISR member (``GroupService.release``), else with the write's error.
"""

from __future__ import annotations

from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import HandlerResult, RequestContext, handles
from ._groups import group_service


@handles(ApiKey.OFFSET_DELETE, range(0, 1))
def offset_delete(context: RequestContext, request: Message) -> HandlerResult:
    service = group_service(context)
    wanted = [(t["name"], p["partition_index"]) for t in request["topics"] for p in t["partitions"]]
    result = service.coordinator.delete_offsets(request["group_id"], wanted)
    service.after_call()
    codes = {(p.topic, p.partition): p.error_code for p in result.partitions}

    def answer(write_error: ErrorCode) -> Message:
        if write_error:
            return {"error_code": write_error, "throttle_time_ms": 0, "topics": []}
        topics: list[dict[str, Any]] = [
            {
                "name": t["name"],
                "partitions": [
                    {
                        "partition_index": p["partition_index"],
                        "error_code": codes.get((t["name"], p["partition_index"]), 0),
                    }
                    for p in t["partitions"]
                ],
            }
            for t in request["topics"]
        ]
        return {"error_code": result.error_code, "throttle_time_ms": 0, "topics": topics}

    if result.error_code or ErrorCode.NONE not in codes.values():
        return answer(ErrorCode.NONE)
    return service.release(context.core.purgatory, [request["group_id"]], answer)
