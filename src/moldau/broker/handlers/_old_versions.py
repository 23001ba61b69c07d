"""What the versions Kafka 4.0 dropped mean, where they differ from the rest.

ListOffsets v0 answers a list of segment boundaries instead of one offset, and
Fetch v0-v3 promise the client old message formats; the handlers of those
APIs call in here for those versions only, so their common path stays as it
is (zero copy for Fetch v4+). The rules are Kafka 3.9's (``KafkaApis.handleListOffsetRequestV0``,
``UnifiedLog.legacyFetchOffsetsBefore``, ``KafkaApis.maybeConvertFetchedData``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ...log.errors import LogError
from ...protocol.batch import COMPRESSION_ZSTD, iter_batches
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.legacy_records import down_convert
from ...protocol.messages import Message
from ...protocol.records import decode_batch
from ...replication.partition import Partition
from ..core import BrokerCore
from ..dispatch import HandlerResult
from ..topic_config import TOPIC_KEYS, effective_value

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
        partition = core.replicas.leader_partition(topic, index)
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


def fetch_v0_to_v3(core: BrokerCore, request: Message, version: int) -> HandlerResult:
    """Fetch v0-v3: the client reads message format v0 (v0-v1) or v1 (v2-v3).

    Each led partition's v2 batches are down-converted batch by batch
    (``legacy_records.down_convert``) up to its ``partition_max_bytes``, the
    first batch whole whatever its size, as Kafka's lazy down-conversion
    does; a partition whose ``message.downconversion.enable`` is false
    answers UNSUPPORTED_VERSION, as in Kafka. Partitions it cannot serve
    keep their own error (unknown topic, not leader). Like v4+, a fetch that
    finds less than ``min_bytes`` waits for an append up to ``max_wait_ms``.
    """
    magic = 0 if version < 2 else 1
    response, size, errors = _read_old(core, request, magic)
    if size >= request["min_bytes"] or request["max_wait_ms"] <= 0 or errors:
        return response
    keys = [(t["topic"], p["partition"]) for t in request["topics"] for p in t["partitions"]]

    def read() -> tuple[Message, bool]:
        response, size, errors = _read_old(core, request, magic)
        return response, size >= request["min_bytes"] or errors

    return core.purgatory.read_when_ready(keys, read, request["max_wait_ms"])


def _read_old(core: BrokerCore, request: Message, magic: int) -> tuple[Message, int, bool]:
    """Read and convert every partition once: (response, bytes, any error)."""
    budget = request.get("max_bytes", 0x7FFFFFFF)
    total = 0
    errors = False
    responses = []
    for topic in request["topics"]:
        partitions = []
        for want in topic["partitions"]:
            index = want["partition"]
            answer: dict[str, Any] = {"partition_index": index, "high_watermark": -1}
            try:
                partition = core.replicas.leader_partition(topic["topic"], index)
                if not _down_conversion_enabled(core, topic["topic"]):
                    raise KafkaError(ErrorCode.UNSUPPORTED_VERSION)
                limit = min(want["partition_max_bytes"], max(budget - total, 0))
                records = _converted(partition, want["fetch_offset"], limit, magic, total == 0)
            except KafkaError as exc:
                answer.update(error_code=exc.code, records=b"")
                errors = True
            except LogError as exc:  # an offset outside the log
                answer.update(error_code=ErrorCode(exc.error_code), records=b"")
                errors = True
            else:
                total += len(records)
                answer.update(error_code=0, high_watermark=partition.high_watermark)
                answer["records"] = records
            partitions.append(answer)
        responses.append({"topic": topic["topic"], "partitions": partitions})
    return {"throttle_time_ms": 0, "responses": responses}, total, errors


def _down_conversion_enabled(core: BrokerCore, topic: str) -> bool:
    info = core.metadata.topic(topic)
    configs = info.configs if info is not None else {}
    key = TOPIC_KEYS["message.downconversion.enable"]
    return effective_value(key, configs, core.config).lower() == "true"


def _converted(partition: Partition, offset: int, limit: int, magic: int, min_one: bool) -> bytes:
    """Message sets of magic ``magic`` from ``offset`` on, at most ``limit``
    bytes unless the first batch alone is more and ``min_one`` is set.

    The log read is bounded by ``limit`` (plus the first batch), and each
    batch is converted and kept or dropped before the next, so memory stays
    within about twice that. ZSTD batches cannot be expressed in v0/v1:
    UNSUPPORTED_COMPRESSION_TYPE when the first is one, as in Kafka.
    """
    result = partition.read(offset, limit, committed_only=True, min_one_batch=min_one)
    out: list[bytes] = []
    size = 0
    for piece in result.slices:
        for header, batch in iter_batches(piece.read()):
            if header.compression == COMPRESSION_ZSTD:
                if out:
                    return b"".join(out)
                raise KafkaError(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE)
            records = decode_batch(batch)[1]
            converted = down_convert(header, records, magic, offset)
            if size + len(converted) > limit and (out or not min_one):
                return b"".join(out)
            out.append(converted)
            size += len(converted)
    return b"".join(out)
