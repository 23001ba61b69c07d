"""DeleteGroups (key 42): delete empty groups and their offsets.

v1: no change. v2: flexible.

A deletion is answered once its tombstones are on every ISR member
(``GroupService.release``), else with the write's error.
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import HandlerResult, RequestContext, handles
from ._groups import group_service


@handles(ApiKey.DELETE_GROUPS, range(0, 3))
def delete_groups(context: RequestContext, request: Message) -> HandlerResult:
    service = group_service(context)
    results = service.coordinator.delete_groups(list(request["groups_names"]))
    service.after_call()
    deleted = {r.group_id for r in results if r.error_code == ErrorCode.NONE}

    def answer(write_error: ErrorCode) -> Message:
        return {
            "throttle_time_ms": 0,
            "results": [
                {
                    "group_id": r.group_id,
                    "error_code": write_error if r.group_id in deleted else r.error_code,
                }
                for r in results
            ],
        }

    if not deleted:
        return answer(ErrorCode.NONE)
    return service.release(context.core.purgatory, deleted, answer)
