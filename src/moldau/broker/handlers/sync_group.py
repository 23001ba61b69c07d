"""SyncGroup (key 14): the leader hands out assignments; everyone gets theirs.

v1: throttle time. v3: group instance id. v4: flexible. v5: protocol type
and name, checked against the group's.

An assignment goes out once the group's record that holds it is on every
ISR member (``GroupService.release``): a member never works from an
assignment a new coordinator would not know. A write that fails answers
with its error (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) and the
members rejoin.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace

from ...group.results import SyncResult
from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ..groups import GroupService
from ..purgatory import FetchPurgatory
from ._groups import group_service, late_answer


@handles(ApiKey.SYNC_GROUP, range(0, 6))
def sync_group(context: RequestContext, request: Message) -> Awaitable[Message]:
    service = group_service(context)
    future, deliver = late_answer(SyncResult)
    service.coordinator.sync_group(
        request["group_id"],
        request["generation_id"],
        request["member_id"],
        request.get("group_instance_id"),
        request.get("protocol_type"),
        request.get("protocol_name"),
        [(a["member_id"], a["assignment"]) for a in request["assignments"]],
        on_done=deliver,
    )
    service.after_call()
    return _answer(future, service, context.core.purgatory, request["group_id"])


async def _answer(
    future: Awaitable[SyncResult], service: GroupService, purgatory: FetchPurgatory, group_id: str
) -> Message:
    result = await future
    if not result.error_code:

        def replicated(error: ErrorCode) -> SyncResult:
            return replace(result, error_code=error, assignment=b"") if error else result

        released = service.release(purgatory, [group_id], replicated)
        result = released if isinstance(released, SyncResult) else await released
    return {
        "throttle_time_ms": 0,
        "error_code": result.error_code,
        "protocol_type": result.protocol_type,
        "protocol_name": result.protocol_name,
        "assignment": result.assignment,
    }
