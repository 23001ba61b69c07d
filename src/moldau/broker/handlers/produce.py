"""Produce (key 0): append record batches to partition logs.

v0-v2 (deprecated in Kafka 3.9, gone in 4.0): v1 throttle time, v2 log
append time. Kafka checks the magic only from v3 on, so a record batch v2
sent at v0-v2 is appended like any other; message sets of magic 0/1 (what
these clients send) are up-converted to one v2 batch first
(``legacy_records.up_convert``), then appended like any other.
v3: record batch v2 and transactional_id. v5: log_start_offset.
v8: record_errors and error_message. v9: flexible. v10: current_leader and
node_endpoints on NOT_LEADER_OR_FOLLOWER (KIP-951, ``routing.py``).
v11-v12: no change for brokers. v13: topics named by id.

acks=all (-1): the leader refuses with NOT_ENOUGH_REPLICAS before the
append when its ISR is smaller than ``min.insync.replicas`` (the topic's,
else the broker's), and otherwise answers once the high watermark has
passed the batch (every ISR member has it), as Kafka's delayed produce
does: the request waits in the purgatory (``read_when_ready``, woken by
the partition's appends and high-watermark moves, no polling) and gets
REQUEST_TIMED_OUT at its ``timeout_ms``, NOT_ENOUGH_REPLICAS_AFTER_APPEND
if the ISR shrank below the minimum meanwhile, NOT_LEADER_OR_FOLLOWER if
this broker stopped leading (``Partition.check_replicated``). acks=1
answers after the leader's append.

Transactional batches (v3+) are checked before any append, and verified with
the transaction coordinator when a batch would open a transaction on a
partition (KIP-890 part 1): ``txn_produce.py``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.batch import InvalidRecordError
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.legacy_records import is_legacy, up_convert
from ...protocol.messages import Message
from ..core import BrokerCore
from ..dispatch import HandlerResult, RequestContext, handles
from ..internal_topics import is_internal_topic
from ..purgatory import ReplicatedWrite, when_replicated
from ..routing import leader_entry, node_endpoints
from ..txn_produce import TransactionalWrite, request_error, transactional_header, verify

#: Kafka's AdminUtils.ADMIN_CLIENT_ID: requests with it may write internal topics.
ADMIN_CLIENT_ID = "__admin_client"


#: Per partition, the error refusing it before any append (None: append it).
Refusals = Callable[[str | None, int], ErrorCode | None]


@handles(ApiKey.PRODUCE, range(0, 14))
def produce(context: RequestContext, request: Message) -> HandlerResult:
    if context.version >= 3:
        writes = _transactional_writes(context.core, request)
        if writes:
            return _produce_transactional(context, request, writes)
    return _produce(context, request, None)


def _transactional_writes(core: BrokerCore, request: Message) -> list[TransactionalWrite]:
    writes = []
    for topic in request["topic_data"]:
        for data in topic["partition_data"]:
            header = transactional_header(data["records"])
            if header is not None:
                name = _topic_name(core, topic)
                if name is not None:
                    writes.append(TransactionalWrite(name, data["index"], header))
    return writes


def _produce_transactional(
    context: RequestContext, request: Message, writes: list[TransactionalWrite]
) -> HandlerResult:
    """A request with transactional batches: checked (``txn_produce.py``),
    and verified with the coordinator when one is set, before the appends."""
    transactional_id = request.get("transactional_id")
    error = request_error(transactional_id, writes)
    if error is not None:
        return _produce(context, request, lambda _name, _index: error)
    if transactional_id is None:
        return _produce(context, request, None)
    return _produce_verified(context, request, transactional_id, writes)


async def _produce_verified(
    context: RequestContext,
    request: Message,
    transactional_id: str,
    writes: list[TransactionalWrite],
) -> Message | None:
    refused = await verify(context.core, transactional_id, writes)
    result = _produce(context, request, lambda name, index: refused.get((name or "", index)))
    return await result if isinstance(result, Awaitable) else result


def _produce(context: RequestContext, request: Message, refusals: Refusals | None) -> HandlerResult:
    core = context.core
    acks = request["acks"]
    responses = []
    leaders: list[int] = []
    replicating: list[ReplicatedWrite] = []
    for topic in request["topic_data"]:
        name = _topic_name(core, topic)
        partitions = []
        for data in topic["partition_data"]:
            if acks not in (0, 1, -1):
                partitions.append(_error(data["index"], ErrorCode.INVALID_REQUIRED_ACKS, None))
                continue
            if name is not None and _internal_refused(context, name):
                message = f"Cannot append to internal topic {name}"
                partitions.append(_error(data["index"], ErrorCode.INVALID_TOPIC_EXCEPTION, message))
                continue
            refused = refusals(name, data["index"]) if refusals is not None else None
            if refused is not None:
                partitions.append(_error(data["index"], refused))
                continue
            answer = _append(core, name, data, acks, context.version, replicating)
            if answer["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER and name is not None:
                answer["current_leader"] = leader = leader_entry(core, name, data["index"])
                leaders.append(leader["leader_id"])
            partitions.append(answer)
        responses.append(
            {"name": name, "topic_id": topic.get("topic_id"), "partition_responses": partitions}
        )
    if acks == 0:
        return None
    response = {"responses": responses, "throttle_time_ms": 0}
    if leaders:
        response["node_endpoints"] = node_endpoints(core, leaders, context.listener)
    if not replicating:
        return response
    return when_replicated(core.purgatory, replicating, response, request["timeout_ms"])


def _internal_refused(context: RequestContext, name: str) -> bool:
    """Kafka's ReplicaManager: only its admin client id may append to an
    internal topic (a forged commit would rewind a group)."""
    return is_internal_topic(name) and context.header.client_id != ADMIN_CLIENT_ID


def _topic_name(core: BrokerCore, topic: Message) -> str | None:
    if "name" in topic:
        return str(topic["name"])
    info = core.metadata.topic_by_id(topic.get("topic_id") or uuid.UUID(int=0))
    return info.name if info is not None else None


def _append(
    core: BrokerCore,
    name: str | None,
    data: Message,
    acks: int,
    version: int,
    replicating: list[ReplicatedWrite],
) -> dict[str, Any]:
    """Append one partition's records; its answer. An acks=all write also
    goes to ``replicating``, which edits the answer until the ISR has it."""
    index = data["index"]
    if name is None:
        return _error(index, ErrorCode.UNKNOWN_TOPIC_ID, None)
    try:
        partition = core.replicas.leader_partition(name, index)
        # Only acks=all reads it: acks=1 and 0 stay off the topic's configs.
        min_insync = min_insync_replicas(core, name) if acks == -1 else 0
        if len(partition.isr) < min_insync:
            raise KafkaError(
                ErrorCode.NOT_ENOUGH_REPLICAS,
                f"{len(partition.isr)} in-sync replicas, min.insync.replicas is {min_insync}",
            )
        records = data["records"]
        if records is None or len(records) == 0:
            raise KafkaError(ErrorCode.CORRUPT_MESSAGE, "produce request without records")
        if version <= 2 and is_legacy(records):
            records = up_convert(records)
        result = partition.append_as_leader(records)
    except KafkaError as exc:
        # Also the log's refusals: RecordBatchError and LogError are KafkaErrors.
        answer = _error(index, exc.code, exc.message)
        if isinstance(exc, InvalidRecordError) and exc.record_errors:
            answer["record_errors"] = [
                {"batch_index": i, "batch_index_error_message": why} for i, why in exc.record_errors
            ]
        return answer
    answer = {
        "index": index,
        "error_code": 0,
        "base_offset": result.base_offset,
        "log_append_time_ms": result.log_append_time_ms,
        "log_start_offset": partition.log_start_offset,
    }
    if acks == -1:
        # The epoch that wrote it (a producer's retry of a batch written
        # earlier, maybe under an older leader, is answered from the log).
        epoch = partition.log.leader_epochs.epoch_for_offset(result.last_offset)
        replicating.append(
            ReplicatedWrite(
                partition,
                answer,
                dict(answer),
                functools.partial(_error, index, message=None),
                result.last_offset,
                epoch,
                min_insync,
            )
        )
    return answer


def min_insync_replicas(core: BrokerCore, topic: str) -> int:
    """``min.insync.replicas``: the topic's, else the broker's."""
    info = core.metadata.topic(topic)
    configured = info.configs.get("min.insync.replicas") if info is not None else None
    return int(configured or core.config.get("min.insync.replicas"))


def _error(index: int, code: ErrorCode, message: str | None = None) -> dict[str, Any]:
    return {
        "index": index,
        "error_code": code,
        "base_offset": -1,
        "log_append_time_ms": -1,
        "log_start_offset": -1,
        "error_message": message,
    }
