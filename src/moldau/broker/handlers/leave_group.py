"""LeaveGroup (key 13): members leave; the group rebalances without them.

v1: throttle time. v3: several members at once, by member or instance id.
v4: flexible. v5: a reason per member.
"""

from __future__ import annotations

from ...group.results import LeavingMember
from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._groups import group_service


@handles(ApiKey.LEAVE_GROUP, range(0, 6))
def leave_group(context: RequestContext, request: Message) -> Message:
    service = group_service(context)
    if context.version < 3:
        leaving = [LeavingMember(request["member_id"])]
    else:
        leaving = [
            LeavingMember(m["member_id"], m.get("group_instance_id"), m.get("reason"))
            for m in request["members"]
        ]
    result = service.coordinator.leave_group(request["group_id"], leaving)
    service.after_call()
    error_code = result.error_code
    if context.version < 3 and not error_code and result.members:
        error_code = result.members[0].error_code
    return {
        "throttle_time_ms": 0,
        "error_code": error_code,
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "error_code": m.error_code,
            }
            for m in result.members
        ],
    }
