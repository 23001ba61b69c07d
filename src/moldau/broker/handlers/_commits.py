"""What OffsetCommit and TxnOffsetCommit share: their requests and answers
have the same topics and partitions, and both are answered once the offsets
partition's high watermark has passed the commit's records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...group.results import OffsetCommitPartition, OffsetCommitResult
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import HandlerResult, RequestContext
from ._groups import group_service

Commit = Callable[[list[OffsetCommitPartition]], OffsetCommitResult]


def commit_and_answer(context: RequestContext, request: Message, commit: Commit) -> HandlerResult:
    """Refuses partitions of unknown topics, hands the rest to ``commit`` (the
    coordinator's), and answers per partition once the write is replicated
    (``GroupService.release``); partitions whose write was not replicated
    get the write's error."""
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
        result = commit(accepted)
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
