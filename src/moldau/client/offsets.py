"""ListOffsets: where a partition starts, ends, or reaches a timestamp.

Shared by the admin client (``list_offsets``) and the consumer (resetting a
position to earliest/latest). Each partition is asked of its leader; the
partitions whose leader moved are asked again after a metadata refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode, KafkaError

from .cluster import Cluster
from .errors import make_error, topic_error
from .types import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
    OffsetAndTimestamp,
    TopicPartition,
)

__all__ = ["list_offsets", "offset_spec"]

_NAMED = {"earliest": EARLIEST_TIMESTAMP, "latest": LATEST_TIMESTAMP, "max": MAX_TIMESTAMP}


def offset_spec(spec: int | str) -> int:
    """``earliest``, ``latest``, ``max`` (the record with the highest
    timestamp) or a timestamp in ms, as the ListOffsets timestamp to send."""
    if isinstance(spec, str):
        try:
            return _NAMED[spec]
        except KeyError:
            raise ValueError(f"unknown offset spec {spec!r}") from None
    return spec


async def list_offsets(
    cluster: Cluster,
    specs: Mapping[TopicPartition, int | str],
    *,
    isolation_level: int = 0,
    timeout_ms: int = 30_000,
) -> dict[TopicPartition, OffsetAndTimestamp]:
    """Answer of each partition's leader for its spec (see ``offset_spec``)."""
    wanted = {tp: offset_spec(spec) for tp, spec in specs.items()}
    results: dict[TopicPartition, OffsetAndTimestamp] = {}
    topics = sorted({tp.topic for tp in wanted})

    async def attempt() -> None:
        remaining = {tp: ts for tp, ts in wanted.items() if tp not in results}
        meta = cluster.metadata
        if any(meta.leader(*tp) is None for tp in remaining):
            meta = await cluster.refresh(topics)
        by_node: dict[int, dict[TopicPartition, int]] = {}
        retriable: KafkaError | None = None
        for tp, ts in remaining.items():
            leader = meta.leader(*tp)
            if leader is not None:
                by_node.setdefault(leader, {})[tp] = ts
                continue
            info = meta.topics.get(tp.topic)
            if info is None or info.error != ErrorCode.NONE:
                code = info.error if info is not None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                error = topic_error(tp.topic, code)
            elif tp.partition not in info.partitions:
                error = KafkaError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    f"partition {tp.partition} of topic '{tp.topic}' does not exist",
                )
            else:
                error = KafkaError(
                    ErrorCode.LEADER_NOT_AVAILABLE, f"no leader for {tp.topic}-{tp.partition}"
                )
            if not error.code.retriable:
                raise error
            retriable = error
        answers = await asyncio.gather(
            *(_ask(cluster, node, asks, isolation_level) for node, asks in by_node.items()),
            return_exceptions=True,
        )
        for answer in answers:
            if isinstance(answer, BaseException):
                if not isinstance(answer, KafkaError) or not answer.code.retriable:
                    raise answer
                retriable = answer
                continue
            for tp, part in answer.items():
                code = part["error_code"]
                if code == ErrorCode.NONE:
                    results[tp] = OffsetAndTimestamp(
                        part["offset"], part["timestamp"], part.get("leader_epoch", -1)
                    )
                    continue
                error = make_error(code, context=f"list offsets of {tp.topic}-{tp.partition}")
                if code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                    error = topic_error(tp.topic, code)
                if not error.code.retriable:
                    raise error
                retriable = error
        if retriable is not None:
            raise retriable

    await cluster.retry(attempt, timeout_ms=timeout_ms, topics=topics)
    return results


async def _ask(
    cluster: Cluster, node_id: int, asks: dict[TopicPartition, int], isolation_level: int
) -> dict[TopicPartition, dict[str, Any]]:
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for tp, ts in asks.items():
        by_topic.setdefault(tp.topic, []).append(
            {"partition_index": tp.partition, "current_leader_epoch": -1, "timestamp": ts}
        )
    body = {
        "replica_id": -1,
        "isolation_level": isolation_level,
        "topics": [{"name": name, "partitions": parts} for name, parts in by_topic.items()],
    }
    conn = await cluster.node(node_id)
    response = await conn.request(ApiKey.LIST_OFFSETS, body)
    return {
        TopicPartition(topic["name"], part["partition_index"]): part
        for topic in response["topics"]
        for part in topic["partitions"]
    }
