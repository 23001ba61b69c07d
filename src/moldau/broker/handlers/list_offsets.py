"""ListOffsets (key 2): offsets by time: earliest, latest, or a timestamp.

v0 (deprecated in Kafka 3.9, gone in 4.0): up to max_num_offsets offsets
per partition (old_style_offsets): segment boundaries and the log end, newest
first, as Kafka's legacy lookup gives them (``_old_versions``); only the
special timestamps -1 and -2. v1: one offset and its timestamp. v2: isolation
level (read_committed: the latest offset is the last stable offset, and
lookups by time stop there). v4: leader epochs: the request's current leader epoch is checked
(FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH, KIP-320) and each offset comes
with the epoch that wrote it (the latest offset with the current epoch), as
Kafka answers. v6: flexible. v7: max timestamp (-3). v8: earliest
local (-4). v9: latest tiered (-5). v10: timeout_ms. v11: no change for us.
"""

from __future__ import annotations

from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ...replication.partition import Partition
from ..dispatch import RequestContext, handles
from ._old_versions import list_offsets_v0

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
LATEST_TIERED = -5


@handles(ApiKey.LIST_OFFSETS, range(0, 12))
def list_offsets(context: RequestContext, request: Message) -> Message:
    topics = []
    for topic in request["topics"]:
        partitions = []
        for wanted in topic["partitions"]:
            if context.version == 0:
                partitions.append(
                    list_offsets_v0(context.core, request["replica_id"], topic["name"], wanted)
                )
                continue
            index = wanted["partition_index"]
            try:
                partition = context.core.replicas.leader_partition(
                    topic["name"], index, wanted.get("current_leader_epoch", -1)
                )
                read_committed = request.get("isolation_level", 0) == 1
                timestamp, offset = _lookup(partition, wanted["timestamp"], read_committed)
            except KafkaError as exc:
                partitions.append(_answer(index, exc.code, -1, -1, -1))
                continue
            epoch = _epoch_of(partition, wanted["timestamp"], offset)
            partitions.append(_answer(index, 0, timestamp, offset, epoch))
        topics.append({"name": topic["name"], "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}


def _lookup(partition: Partition, timestamp: int, read_committed: bool) -> tuple[int, int]:
    """(timestamp, offset) answering one partition's query; read_committed
    sees up to the last stable offset, as Kafka's lastFetchableOffset."""
    partition.check_online()
    fetchable = partition.last_stable_offset if read_committed else partition.high_watermark
    if timestamp == LATEST:
        return -1, fetchable
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return -1, partition.log_start_offset
    if timestamp == LATEST_TIERED:
        return -1, -1
    if timestamp == MAX_TIMESTAMP:
        found = partition.log.max_timestamp_offset()
        return found if found is not None else (-1, -1)
    if timestamp < 0:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown special timestamp {timestamp}")
    found = partition.log.offset_for_timestamp(timestamp)
    if found is None or found[0] >= fetchable:
        return -1, -1
    offset, found_timestamp = found
    return found_timestamp, offset


def _epoch_of(partition: Partition, timestamp: int, offset: int) -> int:
    """The leader epoch answered with ``offset``: the current one for the
    latest offset, else the epoch that wrote it (Kafka's epochForOffset)."""
    if timestamp == LATEST:
        return partition.leader_epoch
    return partition.log.leader_epochs.epoch_for_offset(offset)


def _answer(index: int, code: int, timestamp: int, offset: int, epoch: int) -> dict[str, Any]:
    return {
        "partition_index": index,
        "error_code": code,
        "timestamp": timestamp,
        "offset": offset,
        "leader_epoch": epoch,
    }
