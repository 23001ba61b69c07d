"""OffsetCommit (key 8): store a group's consumed positions.

v0 (deprecated in Kafka 3.9, gone in 4.0): no generation or member, so a
commit as a standalone consumer's; Kafka 3.9 stores v0 commits in ZooKeeper
(and refuses them in KRaft mode), moldau stores them in __consumer_offsets
like every other version, where OffsetFetch of any version finds them.
v1: generation and member; a commit timestamp per partition, stored as the
offset's commit time (-1: now), from which offsets.retention.minutes counts.
v2: retention time (ignored since Kafka 2.1: offsets.retention.minutes
governs). v3: throttle time. v5: no retention time. v6: leader epoch per
partition. v7: group instance id. v8: flexible. v9: member epoch for the new
consumer protocol (a classic group reads it as the generation).
Offsets of topics or partitions that do not exist are refused per partition.

The answer goes out once the offsets partition's high watermark has passed
the commit's records (``GroupService.release``), so an acknowledged commit
survives the coordinator's death; partitions whose commit was not
replicated get the write's error instead.
"""

from __future__ import annotations

from typing import Any

from ...group.results import OffsetCommitPartition
from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import HandlerResult, RequestContext, handles
from ._groups import group_service


@handles(ApiKey.OFFSET_COMMIT, range(0, 10))
def offset_commit(context: RequestContext, request: Message) -> HandlerResult:
    service = group_service(context)
    metadata = context.core.metadata
    accepted: list[OffsetCommitPartition] = []
    refused: dict[tuple[str, int], int] = {}
    for topic in request["topics"]:
        info = metadata.topic(topic["name"])
        for p in topic["partitions"]:
            index = p["partition_index"]
            if info is None or not 0 <= index < info.partition_count:
                refused[(topic["name"], index)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                continue
            accepted.append(
                OffsetCommitPartition(
                    topic["name"],
                    index,
                    p["committed_offset"],
                    p.get("committed_leader_epoch", -1),
                    p.get("committed_metadata"),
                    p.get("commit_timestamp", -1),
                )
            )
    codes: dict[tuple[str, int], int] = dict(refused)
    if accepted:
        result = service.coordinator.commit_offsets(
            request["group_id"],
            request.get("member_id", ""),
            request.get("group_instance_id"),
            request.get("generation_id_or_member_epoch", -1),
            accepted,
        )
        for partition in result.partitions:
            codes[(partition.topic, partition.partition)] = (
                partition.error_code or result.error_code
            )
        for p in accepted:
            codes.setdefault((p.topic, p.partition), result.error_code)
    service.after_call()
    written = {tp for tp, code in codes.items() if code == ErrorCode.NONE and tp not in refused}

    def answer(write_error: ErrorCode) -> Message:
        topics: list[dict[str, Any]] = []
        for topic in request["topics"]:
            partitions = []
            for p in topic["partitions"]:
                tp = (topic["name"], p["partition_index"])
                code = write_error if tp in written else codes[tp]
                partitions.append({"partition_index": p["partition_index"], "error_code": code})
            topics.append({"name": topic["name"], "partitions": partitions})
        return {"throttle_time_ms": 0, "topics": topics}

    if not written:
        return answer(ErrorCode.NONE)
    return service.release(context.core.purgatory, [request["group_id"]], answer)
