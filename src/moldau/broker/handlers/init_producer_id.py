"""InitProducerId (key 22): a producer id and epoch for idempotent producers.

v1: no change. v2: flexible. v3: producer id and epoch in the request, so an
idempotent producer can bump its epoch after an error (KIP-360). v4: no
change for brokers. v5-v6: two-phase commit fields (transactions only).
moldau has no transaction coordinator: a transactional id is refused.
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles

MAX_EPOCH = 32767


@handles(ApiKey.INIT_PRODUCER_ID, range(0, 6))
async def init_producer_id(context: RequestContext, request: Message) -> Message:
    answer: Message = {
        "throttle_time_ms": 0,
        "error_code": 0,
        "producer_id": -1,
        "producer_epoch": -1,
    }
    if request.get("transactional_id"):
        answer["error_code"] = ErrorCode.INVALID_REQUEST
        return answer
    producer_id = request.get("producer_id", -1)
    epoch = request.get("producer_epoch", -1)
    if producer_id >= 0 and 0 <= epoch < MAX_EPOCH - 1:
        answer.update(producer_id=producer_id, producer_epoch=epoch + 1)
    else:
        producer_id = await context.core.producer_ids.new_producer_id()
        answer.update(producer_id=producer_id, producer_epoch=0)
    return answer
