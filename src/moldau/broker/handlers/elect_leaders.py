"""ElectLeaders (key 43): an operator asks for preferred or unclean leader
elections. Cluster mode only.

As in Kafka 3.9 on ZooKeeper (KafkaApis.handleElectLeaders,
KafkaController.processReplicaLeaderElection, DelayedElectLeader): the
request goes to the controller, which elects and answers per partition; a
broker that is not the controller answers NOT_CONTROLLER for every
partition (the client then asks the controller again). Null
``topic_partitions`` means every partition. A partition elected is
answered once this broker's metadata shows the new leader, or
REQUEST_TIMED_OUT after ``timeout_ms``.

v0: no election type (preferred) and no top-level error code; v1 adds
both; v2 is the flexible encoding.

Where moldau departs from Kafka: no authorization (Kafka's ALTER on the
cluster); with null ``topic_partitions`` the controller's own list of
partitions is used rather than this broker's metadata cache (the same on a
controller in step with itself).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from .. import metadata_wait
from ..dispatch import RequestContext, handles

if TYPE_CHECKING:
    from ...cluster.controller.commands import ElectionOutcome
    from ...cluster.metadata_cache import MetadataCache

TopicPartition = tuple[str, int]


@handles(ApiKey.ELECT_LEADERS, range(0, 3), cluster_only=True)
async def elect_leaders(context: RequestContext, request: Message) -> Message:
    from ...cluster.controller.commands import ElectionOutcome, ElectLeadersReply
    from ...cluster.controller.events import ElectionType, ElectLeaders
    from ...cluster.metadata_cache import MetadataCache

    asked = request["topic_partitions"]
    partitions = (
        None
        if asked is None
        else frozenset((t["topic"], p) for t in asked for p in t["partitions"])
    )
    try:
        kind = ElectionType(request.get("election_type", ElectionType.PREFERRED))
    except ValueError:
        return _response(ErrorCode.INVALID_REQUEST, [])
    node = context.core.cluster
    assert node is not None, "served in cluster mode only"
    cache = context.core.metadata
    assert isinstance(cache, MetadataCache)
    shell = node.controller
    try:
        if shell is None or not shell.is_active:
            raise KafkaError(ErrorCode.NOT_CONTROLLER)
        answer = await shell.submit(ElectLeaders(partitions, kind))
    except KafkaError as exc:
        if exc.code is not ErrorCode.NOT_CONTROLLER:
            raise
        everything = partitions if partitions is not None else _all_partitions(cache)
        failed = [ElectionOutcome(t, p, ErrorCode.NOT_CONTROLLER) for t, p in sorted(everything)]
        return _response(ErrorCode.NONE, failed)
    assert isinstance(answer, ElectLeadersReply)
    return _response(ErrorCode.NONE, await _visible(answer.results, cache, request["timeout_ms"]))


def _all_partitions(cache: MetadataCache) -> frozenset[TopicPartition]:
    """What null ``topic_partitions`` means on this broker (Kafka fills it in
    from the metadata cache before asking the controller)."""
    return frozenset(
        (name, p) for name, info in cache.topics().items() for p in range(info.partition_count)
    )


async def _visible(
    results: tuple[ElectionOutcome, ...], cache: MetadataCache, timeout_ms: int
) -> list[ElectionOutcome]:
    """Wait until this broker's metadata shows every elected leader (Kafka's
    DelayedElectLeader); those still not shown after ``timeout_ms`` become
    REQUEST_TIMED_OUT."""

    def waiting() -> list[ElectionOutcome]:
        return [r for r in results if r.error is ErrorCode.NONE and not _shown(cache, r)]

    await metadata_wait.shown(cache, lambda: not waiting(), timeout_ms)
    late = set(waiting())
    return [
        replace(r, error=ErrorCode.REQUEST_TIMED_OUT, message="not yet visible") if r in late else r
        for r in results
    ]


def _shown(cache: MetadataCache, result: ElectionOutcome) -> bool:
    view = cache.partition(result.topic, result.partition)
    return view is not None and view.leader == result.leader


def _response(error: ErrorCode, results: list[ElectionOutcome]) -> Message:
    """Kafka's response: results grouped by topic, in the order given."""
    by_topic: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_topic.setdefault(r.topic, []).append(
            {
                "partition_id": r.partition,
                "error_code": r.error,
                "error_message": r.message,
            }
        )
    return {
        "throttle_time_ms": 0,
        "error_code": error,
        "replica_election_results": [
            {"topic": topic, "partition_result": parts} for topic, parts in by_topic.items()
        ],
    }
