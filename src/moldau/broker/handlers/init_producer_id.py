"""InitProducerId (key 22): a producer id and epoch for idempotent producers.

v1: no change. v2: flexible. v3: producer id and epoch in the request, so an
idempotent producer can bump its epoch after an error (KIP-360). v4:
PRODUCER_FENCED instead of INVALID_PRODUCER_EPOCH. v5: no change for
brokers. With a transactional id the transaction coordinator answers
(``moldau.txn``): a new id, or the id's producer id at a bumped epoch, which
fences the previous producer of that id.
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._transactions import for_version, transaction_service

MAX_EPOCH = 32767


@handles(ApiKey.INIT_PRODUCER_ID, range(0, 6))
async def init_producer_id(context: RequestContext, request: Message) -> Message:
    answer: Message = {
        "throttle_time_ms": 0,
        "error_code": 0,
        "producer_id": -1,
        "producer_epoch": -1,
    }
    producer_id = request.get("producer_id", -1)
    epoch = request.get("producer_epoch", -1)
    transactional_id = request.get("transactional_id")
    if transactional_id is not None:
        if (producer_id < 0) != (epoch < 0):
            answer["error_code"] = ErrorCode.INVALID_REQUEST
            return answer
        result = await transaction_service(context).init_producer_id(
            transactional_id,
            request["transaction_timeout_ms"],
            None if producer_id < 0 else (producer_id, epoch),
        )
        answer.update(
            error_code=for_version(result.error, context.version, 4),
            producer_id=result.producer_id,
            producer_epoch=result.producer_epoch,
        )
        return answer
    if producer_id >= 0 and 0 <= epoch < MAX_EPOCH - 1:
        answer.update(producer_id=producer_id, producer_epoch=epoch + 1)
    else:
        producer_id = await context.core.producer_ids.new_producer_id()
        answer.update(producer_id=producer_id, producer_epoch=0)
    return answer
