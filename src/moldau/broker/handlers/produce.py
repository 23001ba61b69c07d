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
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.legacy_records import is_legacy, up_convert
from ...protocol.messages import Message
from ...replication.partition import Partition
from ..core import BrokerCore
from ..dispatch import HandlerResult, RequestContext, handles
from ..internal_topics import is_internal_topic
from ..routing import leader_entry, node_endpoints

#: Kafka's AdminUtils.ADMIN_CLIENT_ID: requests with it may write internal topics.
ADMIN_CLIENT_ID = "__admin_client"


@dataclass
class _Replicating:
    """An acks=all write waiting for the ISR: its answer in the response is
    the success (``done``) once replicated, else its error."""

    partition: Partition
    answer: dict[str, Any]
    done: dict[str, Any]
    last_offset: int
    epoch: int
    min_insync: int
    outcome: ErrorCode | None = None

    def settle(self) -> bool:
        """Fill in the answer as things stand now; whether it is final."""
        if self.outcome is None:
            self.outcome = self.partition.check_replicated(
                self.last_offset, self.epoch, self.min_insync
            )
        self.answer.clear()
        if self.outcome == ErrorCode.NONE:
            self.answer.update(self.done)
        else:
            code = ErrorCode.REQUEST_TIMED_OUT if self.outcome is None else self.outcome
            self.answer.update(_error(self.done["index"], code, None))
        return self.outcome is not None


@handles(ApiKey.PRODUCE, range(0, 14))
def produce(context: RequestContext, request: Message) -> HandlerResult:
    core = context.core
    acks = request["acks"]
    responses = []
    leaders: list[int] = []
    replicating: list[_Replicating] = []
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

    def replicated() -> tuple[Message, bool]:
        settled = [waiting.settle() for waiting in replicating]
        return response, all(settled)

    answer, ready = replicated()
    if ready:
        return answer
    keys = [(w.partition.topic, w.partition.index) for w in replicating]
    return core.purgatory.read_when_ready(keys, replicated, request["timeout_ms"])


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
    replicating: list[_Replicating],
) -> dict[str, Any]:
    """Append one partition's records; its answer. An acks=all write also
    goes to ``replicating``, which edits the answer until the ISR has it."""
    index = data["index"]
    if name is None:
        return _error(index, ErrorCode.UNKNOWN_TOPIC_ID, None)
    try:
        partition = core.replicas.leader_partition(name, index)
        # Only acks=all reads it: acks=1 and 0 stay off the topic's configs.
        min_insync = _min_insync(core, name) if acks == -1 else 0
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
        return _error(index, exc.code, exc.message)
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
            _Replicating(partition, answer, dict(answer), result.last_offset, epoch, min_insync)
        )
    return answer


def _min_insync(core: BrokerCore, topic: str) -> int:
    info = core.metadata.topic(topic)
    configured = info.configs.get("min.insync.replicas") if info is not None else None
    return int(configured or core.config.get("min.insync.replicas"))


def _error(index: int, code: ErrorCode, message: str | None) -> dict[str, Any]:
    return {
        "index": index,
        "error_code": code,
        "base_offset": -1,
        "log_append_time_ms": -1,
        "log_start_offset": -1,
        "error_message": message,
    }
