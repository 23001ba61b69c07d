"""WriteTxnMarkers (key 27): the transaction coordinator's COMMIT or ABORT
markers, written by the partitions' leaders.

v1: flexible (v0 is not served: Kafka 3.9 coordinators send v1). v2: the
transaction version (KIP-890 part 2, Kafka 4.0), ignored here.

Each marker (one producer, one outcome, many partitions) is appended as
leader with ``Partition.append_control`` and answered once the ISR has it,
as Kafka appends markers (acks=-1, the broker's request timeout): the wait
is produce's acks=all wait (``purgatory.when_replicated``), so the errors
are produce's: NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
NOT_ENOUGH_REPLICAS (before the append) and NOT_ENOUGH_REPLICAS_AFTER_APPEND,
REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR; and the log's refusals of the marker,
INVALID_PRODUCER_EPOCH (older than the producer's epoch) and
TRANSACTION_COORDINATOR_FENCED (older than the last marker's coordinator
epoch). Internal topics take markers too (``__consumer_offsets`` holds
transactional offset commits).

:func:`write_txn_markers` is what the coordinator calls for the partitions
this broker leads (no request on the wire); the handler wraps it for
remote coordinators. After each marker appended here, every listener in
``core.txn_marker_listeners`` is told (Kafka calls the group coordinator's
``onTransactionCompleted`` there); a listener that fails turns the
partition's answer into UNKNOWN_SERVER_ERROR, as in Kafka, so the
coordinator writes the marker again. Where moldau departs from Kafka: the
listeners hear of the marker once it is appended, not once it is
replicated.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..core import BrokerCore
from ..dispatch import RequestContext, handles
from ..purgatory import ReplicatedWrite, when_replicated
from .produce import min_insync_replicas

log = logging.getLogger(__name__)

#: How long markers wait for the ISR: Kafka's broker request.timeout.ms
#: default (moldau has no such key).
REPLICATION_TIMEOUT_MS = 30_000


@handles(ApiKey.WRITE_TXN_MARKERS, range(1, 3))
def write_txn_markers_request(context: RequestContext, request: Message) -> Awaitable[Message]:
    return _respond(context.core, request["markers"])


async def _respond(core: BrokerCore, markers: Sequence[Message]) -> Message:
    return {"markers": await write_txn_markers(core, markers)}


async def write_txn_markers(core: BrokerCore, markers: Sequence[Message]) -> list[Message]:
    """Append ``markers`` (the request's ``markers`` list) as leader and wait
    for the ISR; the response's ``markers`` list, an error code per partition."""
    writes: list[ReplicatedWrite] = []
    results: list[Message] = []
    for marker in markers:
        topics = []
        for topic in marker["topics"]:
            partitions = [
                _append(core, marker, topic["name"], index, writes)
                for index in topic["partition_indexes"]
            ]
            topics.append({"name": topic["name"], "partitions": partitions})
        results.append({"producer_id": marker["producer_id"], "topics": topics})
    waiting = when_replicated(core.purgatory, writes, results, REPLICATION_TIMEOUT_MS)
    if isinstance(waiting, Awaitable):
        return await waiting
    return waiting


def _append(
    core: BrokerCore, marker: Message, topic: str, index: int, writes: list[ReplicatedWrite]
) -> dict[str, Any]:
    """Append one partition's marker; its answer, which ``writes`` edits
    until the ISR has the marker."""
    producer_id, producer_epoch = marker["producer_id"], marker["producer_epoch"]
    committed = bool(marker["transaction_result"])
    try:
        partition = core.replicas.leader_partition(topic, index)
        min_insync = min_insync_replicas(core, topic)
        if len(partition.isr) < min_insync:
            raise KafkaError(
                ErrorCode.NOT_ENOUGH_REPLICAS,
                f"{len(partition.isr)} in-sync replicas, min.insync.replicas is {min_insync}",
            )
        result = partition.append_control(
            producer_id, producer_epoch, committed, marker["coordinator_epoch"]
        )
    except KafkaError as exc:  # the log's refusals are KafkaErrors too
        return _answer(index, exc.code)
    code = _tell_listeners(core, topic, index, producer_id, producer_epoch, committed)
    answer = _answer(index, code)
    if code == ErrorCode.NONE:
        writes.append(
            ReplicatedWrite(
                partition,
                answer,
                dict(answer),
                lambda failure: _answer(index, failure),
                result.last_offset,
                partition.leader_epoch,
                min_insync,
            )
        )
    return answer


def _tell_listeners(
    core: BrokerCore, topic: str, index: int, producer_id: int, epoch: int, committed: bool
) -> ErrorCode:
    for listener in core.txn_marker_listeners:
        try:
            listener(topic, index, producer_id, epoch, committed)
        except Exception:
            log.exception(
                "%s-%d: a listener failed on the marker of producer %d", topic, index, producer_id
            )
            return ErrorCode.UNKNOWN_SERVER_ERROR
    return ErrorCode.NONE


def _answer(index: int, code: ErrorCode) -> dict[str, Any]:
    return {"partition_index": index, "error_code": code}
