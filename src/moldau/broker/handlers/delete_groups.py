"""DeleteGroups (key 42): delete empty groups and their offsets.

v1: no change. v2: flexible.
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._groups import group_service


@handles(ApiKey.DELETE_GROUPS, range(0, 3))
def delete_groups(context: RequestContext, request: Message) -> Message:
    service = group_service(context)
    results = service.coordinator.delete_groups(list(request["groups_names"]))
    service.after_call()
    return {
        "throttle_time_ms": 0,
        "results": [{"group_id": r.group_id, "error_code": r.error_code} for r in results],
    }
