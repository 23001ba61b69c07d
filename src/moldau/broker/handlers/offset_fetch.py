"""OffsetFetch (key 9): a group's committed positions.

v0 (deprecated in Kafka 3.9, gone in 4.0): as v1; Kafka 3.9 reads v0 from
ZooKeeper (and refuses it in KRaft mode), moldau from __consumer_offsets,
where commits of every version are. v0-v1 have no top-level error code: a
group error (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS...) goes to each
requested partition, as Kafka does.
v2: a null topic list means every partition, top-level error code.
v3: throttle time. v5: leader epoch. v6: flexible. v7: require_stable
(KIP-447): a partition with an offset committed in a transaction still open
answers UNSTABLE_OFFSET_COMMIT, and the client asks again. v8: several groups
in one request.

Only replicated commits are answered: a commit still waiting for the ISR
(``GroupService.release``) makes the fetch wait for it too, so a coordinator
never shows an offset its successor might not have. Kafka instead answers at
once with the last replicated offset (its pending commits are kept apart);
both never show an unreplicated offset.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from ...group.results import FetchedOffset, OffsetFetchResult
from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles
from ..groups import GroupService
from ._groups import group_service


@handles(ApiKey.OFFSET_FETCH, range(0, 10))
def offset_fetch(context: RequestContext, request: Message) -> Message | Awaitable[Message]:
    service = group_service(context)
    if context.version >= 8:
        group_ids = [group["group_id"] for group in request["groups"]]
    else:
        group_ids = [request["group_id"]]

    def answer(error: ErrorCode) -> Message:
        return _answer(context.version, service, request, error)

    return service.release(context.core.purgatory, group_ids, answer)


def _answer(version: int, service: GroupService, request: Message, error: ErrorCode) -> Message:
    """The response as the coordinator knows it now, or ``error`` for every
    group when their pending commits could not be replicated."""
    if version >= 8:
        groups = []
        for group in request["groups"]:
            result = _fetch(service, request, group["group_id"], group["topics"], error)
            groups.append(
                {
                    "group_id": group["group_id"],
                    "topics": _topics(result),
                    "error_code": result.error_code,
                }
            )
        return {"throttle_time_ms": 0, "groups": groups}
    result = _fetch(service, request, request["group_id"], request["topics"], error)
    if version < 2 and result.error_code:
        result = _error_per_partition(result.error_code, request["topics"])
    return {"throttle_time_ms": 0, "topics": _topics(result), "error_code": result.error_code}


def _fetch(
    service: GroupService,
    request: Message,
    group_id: str,
    topics: list[Message] | None,
    error: ErrorCode,
) -> OffsetFetchResult:
    if error != ErrorCode.NONE:
        return OffsetFetchResult(error, ())
    wanted = None if topics is None else [(t["name"], t["partition_indexes"]) for t in topics]
    stable = bool(request.get("require_stable", False))
    return service.coordinator.fetch_offsets(group_id, wanted, stable)


def _error_per_partition(error_code: int, topics: list[Message]) -> OffsetFetchResult:
    return OffsetFetchResult(
        error_code,
        tuple(
            FetchedOffset(t["name"], index, error_code=error_code)
            for t in topics
            for index in t["partition_indexes"]
        ),
    )


def _topics(result: OffsetFetchResult) -> list[dict[str, Any]]:
    topics: dict[str, list[dict[str, Any]]] = {}
    for fetched in result.partitions:
        topics.setdefault(fetched.topic, []).append(
            {
                "partition_index": fetched.partition,
                "committed_offset": fetched.offset,
                "committed_leader_epoch": fetched.leader_epoch,
                "metadata": fetched.metadata,
                "error_code": fetched.error_code,
            }
        )
    return [{"name": name, "partitions": partitions} for name, partitions in topics.items()]
