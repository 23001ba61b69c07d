"""FindCoordinator (key 10): which broker coordinates a group.

v0: groups only (no key type), no error message, no throttle time.
v1: key type (0 group, 1 transaction), error message, throttle time.
v2: no change. v3: flexible. v4: several keys at once (coordinator_keys).
v5-v6: no change for groups (v6 adds share-group keys).
The coordinator of a group is the leader of its partition of
``__consumer_offsets``, that of a transactional id the leader of its
partition of ``__transaction_state``; asking creates the topic, as in Kafka.
"""

from __future__ import annotations

from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._groups import group_service
from ._transactions import transaction_service

GROUP = 0
TRANSACTION = 1


@handles(ApiKey.FIND_COORDINATOR, range(0, 7))
def find_coordinator(context: RequestContext, request: Message) -> Message:
    key_type = request.get("key_type", GROUP)
    if context.version >= 4:
        keys = request["coordinator_keys"]
        return {
            "throttle_time_ms": 0,
            "coordinators": [_find(context, key, key_type) for key in keys],
        }
    answer = _find(context, request["key"], key_type)
    answer.pop("key")
    answer["throttle_time_ms"] = 0
    return answer


def _find(context: RequestContext, key: str, key_type: int) -> dict[str, Any]:
    answer: dict[str, Any] = {"key": key, "node_id": -1, "host": "", "port": -1}
    if key_type not in (GROUP, TRANSACTION):
        answer["error_code"] = ErrorCode.INVALID_REQUEST
        answer["error_message"] = f"unknown coordinator key type {key_type}"
        return answer
    try:
        if key_type == GROUP:
            node_id = group_service(context).coordinator_for(key)
        else:
            node_id = transaction_service(context).coordinator_for(key)
    except KafkaError as exc:
        answer["error_code"] = exc.code
        answer["error_message"] = exc.message
        return answer
    broker = context.core.metadata.broker(node_id, context.listener)
    if broker is None:
        answer["error_code"] = ErrorCode.COORDINATOR_NOT_AVAILABLE
        return answer
    answer.update(node_id=node_id, host=broker.host, port=broker.port, error_code=0)
    return answer
