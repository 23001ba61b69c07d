"""ListTransactions (key 66): the transactional ids this broker coordinates.

v0: filters by state names and producer ids (state names Kafka does not know
come back in ``unknown_state_filters``); v1: ``duration_filter``, only
transactions open longer than that many ms (KIP-994).
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ...txn.state import TxnState
from ..dispatch import RequestContext, handles
from ._transactions import transaction_service


@handles(ApiKey.LIST_TRANSACTIONS, range(0, 2))
def list_transactions(context: RequestContext, request: Message) -> Message:
    coordinator = transaction_service(context).coordinator
    names = request["state_filters"]
    states = [s for s in map(TxnState.from_kafka_name, names) if s is not None]
    unknown = [n for n in names if TxnState.from_kafka_name(n) is None]
    answer: Message = {
        "throttle_time_ms": 0,
        "error_code": 0,
        "unknown_state_filters": unknown,
        "transaction_states": [],
    }
    if names and not states:
        return answer  # only unknown states asked for: none match
    try:
        found = coordinator.list_transactions(
            states, request["producer_id_filters"], request.get("duration_filter", -1)
        )
    except KafkaError as exc:
        answer["error_code"] = exc.code
        return answer
    answer["error_code"] = ErrorCode.NONE
    answer["transaction_states"] = [
        {
            "transactional_id": t.transactional_id,
            "producer_id": t.producer_id,
            "transaction_state": t.state.kafka_name,
        }
        for t in found
    ]
    return answer
