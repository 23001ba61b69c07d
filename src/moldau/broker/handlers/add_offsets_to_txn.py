"""AddOffsetsToTxn (key 25): a group's offsets partition joins a transaction,
so that TxnOffsetCommit may commit in it (``sendOffsetsToTransaction``).

v1 no change; v2 PRODUCER_FENCED instead of INVALID_PRODUCER_EPOCH; v3
flexible; v4 no change for brokers.
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._transactions import for_version, transaction_service


@handles(ApiKey.ADD_OFFSETS_TO_TXN, range(0, 5))
async def add_offsets_to_txn(context: RequestContext, request: Message) -> Message:
    service = transaction_service(context)
    transactional_id = request["transactional_id"]
    code = service.coordinator.add_offsets(
        transactional_id, request["producer_id"], request["producer_epoch"], request["group_id"]
    )
    code = await service.settle(transactional_id, code)
    return {"throttle_time_ms": 0, "error_code": for_version(code, context.version, 2)}
