"""JoinGroup (key 11): join a group and wait for the rebalance to complete.

v1: rebalance timeout (v0 uses the session timeout for both). v2: throttle
time. v4: a new member first gets MEMBER_ID_REQUIRED with its id and joins
again. v5: group instance id (static membership). v6: flexible. v7: protocol
type and name in the answer. v8: reason. v9: skip_assignment for a static
leader that rejoined (older versions get an empty member list instead).
"""

from __future__ import annotations

from collections.abc import Awaitable

from ...group.results import JoinResult
from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._groups import group_service, late_answer


@handles(ApiKey.JOIN_GROUP, range(0, 10))
def join_group(context: RequestContext, request: Message) -> Awaitable[Message]:
    service = group_service(context)
    future, deliver = late_answer(JoinResult)
    service.coordinator.join_group(
        request["group_id"],
        request["member_id"],
        request.get("group_instance_id"),
        context.header.client_id or "",
        context.client_host,
        request["session_timeout_ms"],
        request["rebalance_timeout_ms" if context.version >= 1 else "session_timeout_ms"],
        request["protocol_type"],
        [(p["name"], p["metadata"]) for p in request["protocols"]],
        request.get("reason"),
        require_known_member_id=context.version >= 4,
        on_done=deliver,
    )
    service.after_call()
    return _answer(future, context.version)


async def _answer(future: Awaitable[JoinResult], version: int) -> Message:
    result = await future
    members = [
        {"member_id": m.member_id, "group_instance_id": m.group_instance_id, "metadata": m.metadata}
        for m in result.members
    ]
    leader = result.leader
    if result.skip_assignment and version < 9:
        # No way to say "skip" before v9: answer the returning static leader
        # as a follower, as Kafka does (see JoinResult).
        members, leader = [], result.replaced_leader
    legacy = version < 7
    return {
        "throttle_time_ms": 0,
        "error_code": result.error_code,
        "generation_id": result.generation_id,
        "protocol_type": result.protocol_type,
        "protocol_name": (result.protocol_name or "") if legacy else result.protocol_name,
        "leader": leader,
        "skip_assignment": result.skip_assignment,
        "member_id": result.member_id,
        "members": members,
    }
