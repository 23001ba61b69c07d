"""OffsetForLeaderEpoch (key 23): where did a leader epoch end in this log?

For each partition: the largest epoch <= the one asked and the offset at
which the epoch after it began (the log end for the latest epoch), from the
leader-epoch cache (``log/leader_epochs.py``); -1/-1 when the cache cannot
say. Followers ask it after a leader change to find where to truncate
(KIP-101/KIP-279); consumers ask it to check their position after one
(KIP-320: librdkafka and the Java client validate positions this way).

Only the leader answers, whoever asks (Kafka 3.9's
``ReplicaManager.lastOffsetForLeaderEpoch`` reads with fetchOnlyFromLeader
for consumers and followers alike): NOT_LEADER_OR_FOLLOWER elsewhere,
UNKNOWN_TOPIC_OR_PARTITION for a partition the cluster does not have,
KAFKA_STORAGE_ERROR for an offline one, and the current leader epoch (v2+)
is checked first (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH).

v1: the answer carries the epoch found. v2: current leader epoch,
throttle time. v3: replica id (-1 consumer, -2 debug, >= 0 a follower; all
treated alike here). v4: flexible.
"""

from __future__ import annotations

from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import KafkaError
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles


@handles(ApiKey.OFFSET_FOR_LEADER_EPOCH, range(0, 5))
def offset_for_leader_epoch(context: RequestContext, request: Message) -> Message:
    replicas = context.core.replicas
    topics = []
    for topic in request["topics"]:
        partitions: list[dict[str, Any]] = []
        for wanted in topic["partitions"]:
            index = wanted["partition"]
            try:
                partition = replicas.leader_partition(
                    topic["topic"], index, wanted.get("current_leader_epoch", -1)
                )
                epoch, end_offset = partition.end_offset_for_epoch(wanted["leader_epoch"])
            except KafkaError as exc:
                partitions.append(_answer(index, exc.code, -1, -1))
                continue
            partitions.append(_answer(index, 0, epoch, end_offset))
        topics.append({"topic": topic["topic"], "partitions": partitions})
    return {"throttle_time_ms": 0, "topics": topics}


def _answer(index: int, code: int, epoch: int, end_offset: int) -> dict[str, Any]:
    return {
        "partition": index,
        "error_code": code,
        "leader_epoch": epoch,
        "end_offset": end_offset,
    }
