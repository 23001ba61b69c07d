"""DescribeLogDirs (key 35): per log dir of this broker, the partitions it
holds with their size, so that tools (``moldau cluster rebalance``'s
progress, Kafka's kafka-log-dirs.sh) can see how much data sits where.

As in Kafka 3.9 (ReplicaManager.describeLogDirs): null ``topics`` asks for
every partition; a named partition this broker does not hold is left out,
not refused. ``offset_lag`` is Kafka's ``max(HW - LEO, 0)`` of the local
replica: 0 for a leader and, since a follower's high watermark never passes
its own log end, 0 for an in-step follower too; -1 (Kafka's
INVALID_OFFSET_LAG) for a log on disk that no hosted partition owns, or an
offline one.
``is_future_key`` is always false: moldau has no future replicas
(AlterReplicaLogDirs). A log dir that cannot be read answers
KAFKA_STORAGE_ERROR with no partitions, as Kafka's offline log dirs do.

v1 is v0's schema; v2 the flexible encoding; v3 adds the top-level
``error_code`` (only ever an authorization failure in Kafka; 0 here); v4
the dir's ``total_bytes`` and ``usable_bytes`` (statvfs, Kafka's
FileStore.getTotalSpace/getUsableSpace, -1 when unknown).

Where moldau departs from Kafka: a failed write takes one partition offline,
not its whole dir (see ``moldau.log.partition_log``), so a dir is offline
only when the dir itself cannot be read; an offline partition in a readable
dir is still listed, with the size of its segments and lag -1. No authorization
(Kafka's DESCRIBE on the cluster).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles

#: Kafka's DescribeLogDirsResponse.INVALID_OFFSET_LAG.
INVALID_OFFSET_LAG = -1


@handles(ApiKey.DESCRIBE_LOG_DIRS, range(0, 6))
def describe_log_dirs(context: RequestContext, request: Message) -> Message:
    asked = request["topics"]
    wanted = None if asked is None else {(t["topic"], p) for t in asked for p in t["partitions"]}
    core = context.core
    by_dir: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for log in core.logs.partitions():
        key = (log.topic, log.partition)
        if wanted is not None and key not in wanted:
            continue
        hosted = core.replicas.get(*key)
        lag = (
            INVALID_OFFSET_LAG
            if hosted is None or log.offline is not None
            else max(hosted.high_watermark - log.log_end_offset, 0)
        )
        by_dir[os.path.dirname(log.directory)][log.topic].append(
            {
                "partition_index": log.partition,
                "partition_size": log.size_in_bytes,
                "offset_lag": lag,
                "is_future_key": False,
            }
        )
    return {
        "throttle_time_ms": 0,
        "error_code": 0,
        "results": [_dir_result(d, by_dir.get(d, {})) for d in core.logs.log_dirs],
    }


def _dir_result(log_dir: str, topics: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    try:
        if not os.path.isdir(log_dir):
            raise FileNotFoundError(log_dir)
        stats = os.statvfs(log_dir)
    except OSError:
        return {
            "error_code": ErrorCode.KAFKA_STORAGE_ERROR,
            "log_dir": log_dir,
            "topics": [],
            "total_bytes": -1,
            "usable_bytes": -1,
        }
    return {
        "error_code": 0,
        "log_dir": log_dir,
        "topics": [
            {"name": name, "partitions": sorted(ps, key=lambda p: p["partition_index"])}
            for name, ps in sorted(topics.items())
        ],
        "total_bytes": stats.f_blocks * stats.f_frsize,
        "usable_bytes": stats.f_bavail * stats.f_frsize,
    }
