"""ListGroups (key 16): the groups this coordinator knows.

v1: throttle time. v3: flexible. v4: filter by state. v5: group type
(every group here is "classic").
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._groups import group_service


@handles(ApiKey.LIST_GROUPS, range(0, 6))
def list_groups(context: RequestContext, request: Message) -> Message:
    service = group_service(context)
    types = request.get("types_filter") or []
    states = request.get("states_filter") or None
    result = service.coordinator.list_groups(states)
    groups = []
    if not types or "classic" in [t.lower() for t in types]:
        groups = [
            {
                "group_id": g.group_id,
                "protocol_type": g.protocol_type,
                "group_state": g.state,
                "group_type": "classic",
            }
            for g in result.groups
        ]
    return {"throttle_time_ms": 0, "error_code": result.error_code, "groups": groups}
