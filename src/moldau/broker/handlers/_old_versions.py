"""What the versions Kafka 4.0 dropped mean, where they differ from the rest.

ListOffsets v0 answers a list of segment boundaries instead of one offset, and
Fetch v0-v3 promise the client old message formats; the handlers of those
APIs call in here for those versions only, so their common path stays as it
is. The rules are Kafka 3.9's (``KafkaApis.handleListOffsetRequestV0``,
``UnifiedLog.legacyFetchOffsetsBefore``, ``KafkaApis.maybeConvertFetchedData``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..core import BrokerCore

LATEST = -1
EARLIEST = -2
CONSUMER_REPLICA_ID = -1


def offsets_before(
    points: Sequence[tuple[int, int]], timestamp: int, max_num_offsets: int
) -> list[int]:
    """Kafka's legacy offset lookup over ``points``, (offset, time) pairs in log order.

    The points are each segment's base offset with the segment file's last
    modification time, then the log end offset with the current time if the
    last segment holds data. LATEST starts from the last point, EARLIEST from
    the first, a timestamp from the last point no newer than it; up to
    ``max_num_offsets`` offsets are returned from there backwards, newest first.
    """
    if timestamp == LATEST:
        start = len(points) - 1
    elif timestamp == EARLIEST:
        start = 0
    else:
        start = len(points) - 1
        while start >= 0 and points[start][1] > timestamp:
            start -= 1
    count = max(0, min(max_num_offsets, start + 1))
    return sorted((points[start - j][0] for j in range(count)), reverse=True)


def list_offsets_v0(
    core: BrokerCore, replica_id: int, topic: str, wanted: Message
) -> dict[str, Any]:
    """One partition of a ListOffsets v0 answer: ``old_style_offsets``."""
    index = wanted["partition_index"]
    answer: dict[str, Any] = {"partition_index": index, "error_code": 0, "old_style_offsets": []}
    timestamp = wanted["timestamp"]
    if timestamp < EARLIEST:
        # v0 knows only the two special timestamps (-1 latest, -2 earliest).
        answer["error_code"] = ErrorCode.UNSUPPORTED_VERSION
        return answer
    try:
        partition = core.leader_partition(topic, index)
    except KafkaError as exc:
        answer["error_code"] = exc.code
        return answer
    log = partition.log
    points = [
        (max(s.base_offset, log.log_start_offset), os.stat(s.path).st_mtime_ns // 1_000_000)
        for s in log.segments
    ]
    if log.segments[-1].size > 0:
        points.append((log.log_end_offset, core.clock()))
    offsets = offsets_before(points, timestamp, wanted["max_num_offsets"])
    if replica_id == CONSUMER_REPLICA_ID:
        # A consumer never sees offsets past the high watermark: those
        # become the high watermark itself, as in Kafka.
        high = partition.high_watermark
        if any(o > high for o in offsets):
            offsets = [high, *(o for o in offsets if o <= high)]
    answer["old_style_offsets"] = offsets
    return answer


def fetch_v0_to_v3(core: BrokerCore, request: Message) -> Message:
    """Fetch v0-v3: the client reads only message formats v0/v1.

    Down-conversion of the stored v2 batches is part 2 of issue 12; until
    then every partition this broker leads answers UNSUPPORTED_VERSION, which
    is what Kafka 3.9 answers when down-conversion is disabled
    (``message.downconversion.enable=false``). Partitions it cannot serve
    keep their own error (unknown topic, not leader), as in Kafka.
    """
    responses = []
    for topic in request["topics"]:
        partitions = []
        for want in topic["partitions"]:
            index = want["partition"]
            try:
                core.leader_partition(topic["topic"], index)
                code: int = ErrorCode.UNSUPPORTED_VERSION
            except KafkaError as exc:
                code = exc.code
            partitions.append(
                {"partition_index": index, "error_code": code, "high_watermark": -1, "records": b""}
            )
        responses.append({"topic": topic["topic"], "partitions": partitions})
    return {"throttle_time_ms": 0, "responses": responses}
