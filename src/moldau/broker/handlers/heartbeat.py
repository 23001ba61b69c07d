"""Heartbeat (key 12): keep a member alive; learn that a rebalance started.

v1: throttle time. v3: group instance id. v4: flexible.
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._groups import group_service


@handles(ApiKey.HEARTBEAT, range(0, 5))
def heartbeat(context: RequestContext, request: Message) -> Message:
    service = group_service(context)
    result = service.coordinator.heartbeat(
        request["group_id"],
        request["generation_id"],
        request["member_id"],
        request.get("group_instance_id"),
    )
    service.after_call()
    return {"throttle_time_ms": 0, "error_code": result.error_code}
