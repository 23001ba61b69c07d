"""AddPartitionsToTxn (key 24): partitions join a producer's transaction.

v0-v3 (clients): one transactional id, per-partition errors; v1 no change,
v2 PRODUCER_FENCED instead of INVALID_PRODUCER_EPOCH, v3 flexible. v4+
(brokers): several transactions at once, each possibly ``verify_only`` (the
KIP-890 check a partition leader makes before it appends a transactional
batch); v5 no change for moldau. A partition of a topic that does not exist
gets UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as
in Kafka; answers wait until the coordinator's write is replicated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ._transactions import for_version, partition_exists, transaction_service

TopicPartition = tuple[str, int]


@handles(ApiKey.ADD_PARTITIONS_TO_TXN, range(0, 6))
async def add_partitions_to_txn(context: RequestContext, request: Message) -> Message:
    if context.version < 4:
        results = await _add(
            context,
            request["v3_and_below_transactional_id"],
            request["v3_and_below_producer_id"],
            request["v3_and_below_producer_epoch"],
            False,
            request["v3_and_below_topics"],
        )
        return {"throttle_time_ms": 0, "results_by_topic_v3_and_below": _by_topic(results)}
    answers = []
    for txn in request["transactions"]:
        results = await _add(
            context,
            txn["transactional_id"],
            txn["producer_id"],
            txn["producer_epoch"],
            txn["verify_only"],
            txn["topics"],
        )
        answers.append(
            {"transactional_id": txn["transactional_id"], "topic_results": _by_topic(results)}
        )
    return {"throttle_time_ms": 0, "error_code": 0, "results_by_transaction": answers}


async def _add(
    context: RequestContext,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    verify_only: bool,
    topics: Iterable[Message],
) -> dict[TopicPartition, ErrorCode]:
    partitions = [(t["name"], p) for t in topics for p in t["partitions"]]
    service = transaction_service(context)
    if verify_only:
        return service.coordinator.verify(transactional_id, producer_id, producer_epoch, partitions)
    missing = [tp for tp in partitions if not partition_exists(context, *tp)]
    if missing:
        return {
            tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            if tp in missing
            else ErrorCode.OPERATION_NOT_ATTEMPTED
            for tp in partitions
        }
    code = service.coordinator.add_partitions(
        transactional_id, producer_id, producer_epoch, partitions
    )
    code = await service.settle(transactional_id, code)
    return dict.fromkeys(partitions, for_version(code, context.version, 2))


def _by_topic(results: dict[TopicPartition, ErrorCode]) -> list[dict[str, Any]]:
    topics: dict[str, list[dict[str, int]]] = {}
    for (topic, index), code in results.items():
        topics.setdefault(topic, []).append(
            {"partition_index": index, "partition_error_code": int(code)}
        )
    return [{"name": name, "results_by_partition": parts} for name, parts in topics.items()]
