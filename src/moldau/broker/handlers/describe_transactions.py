"""DescribeTransactions (key 65, v0): the state of transactional ids this
broker coordinates, for tools (``kafka-transactions.sh describe``)."""

from __future__ import annotations

from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._transactions import transaction_service


@handles(ApiKey.DESCRIBE_TRANSACTIONS, range(0, 1))
def describe_transactions(context: RequestContext, request: Message) -> Message:
    coordinator = transaction_service(context).coordinator
    states = []
    for transactional_id in request["transactional_ids"]:
        state: dict[str, Any] = {
            "error_code": 0,
            "transactional_id": transactional_id,
            "transaction_state": "",
            "transaction_timeout_ms": 0,
            "transaction_start_time_ms": -1,
            "producer_id": -1,
            "producer_epoch": -1,
            "topics": [],
        }
        try:
            txn = coordinator.describe(transactional_id)
        except KafkaError as exc:
            state["error_code"] = exc.code
            states.append(state)
            continue
        topics: dict[str, list[int]] = {}
        for topic, index in sorted(txn.partitions):
            topics.setdefault(topic, []).append(index)
        state.update(
            error_code=ErrorCode.NONE,
            transaction_state=txn.state.kafka_name,
            transaction_timeout_ms=txn.timeout_ms,
            transaction_start_time_ms=txn.start_ms,
            producer_id=txn.producer_id,
            producer_epoch=txn.producer_epoch,
            topics=[{"topic": t, "partitions": p} for t, p in topics.items()],
        )
        states.append(state)
    return {"throttle_time_ms": 0, "transaction_states": states}
