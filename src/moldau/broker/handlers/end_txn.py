"""EndTxn (key 26): commit or abort a producer's transaction.

The answer goes out once PrepareCommit/PrepareAbort is replicated; the
markers follow (``txn_markers.py``). v1 no change; v2 PRODUCER_FENCED instead
of INVALID_PRODUCER_EPOCH; v3 flexible; v4 no change for brokers. (v5, the
server-side epoch bump of KIP-890 part 2, is Kafka 4.0's.)
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._transactions import for_version, transaction_service


@handles(ApiKey.END_TXN, range(0, 5))
async def end_txn(context: RequestContext, request: Message) -> Message:
    service = transaction_service(context)
    transactional_id = request["transactional_id"]
    code = service.coordinator.end_txn(
        transactional_id, request["producer_id"], request["producer_epoch"], request["committed"]
    )
    code = await service.settle(transactional_id, code)
    return {"throttle_time_ms": 0, "error_code": for_version(code, context.version, 2)}
