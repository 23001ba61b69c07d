"""DescribeGroups (key 15): state, protocol and members of groups.

v1: throttle time. v3: authorized operations. v4: group instance ids.
v5: flexible. v6: error message.
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._groups import group_service


@handles(ApiKey.DESCRIBE_GROUPS, range(0, 7))
def describe_groups(context: RequestContext, request: Message) -> Message:
    service = group_service(context)
    groups = []
    for group in service.coordinator.describe_groups(list(request["groups"])):
        groups.append(
            {
                "error_code": group.error_code,
                "group_id": group.group_id,
                "group_state": group.state,
                "protocol_type": group.protocol_type,
                "protocol_data": group.protocol,
                "members": [
                    {
                        "member_id": m.member_id,
                        "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                        "member_metadata": m.metadata,
                        "member_assignment": m.assignment,
                    }
                    for m in group.members
                ],
                "authorized_operations": -2147483648,
            }
        )
    return {"throttle_time_ms": 0, "groups": groups}
