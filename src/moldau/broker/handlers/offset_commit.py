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

from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import HandlerResult, RequestContext, handles
from ._commits import commit_and_answer
from ._groups import group_service


@handles(ApiKey.OFFSET_COMMIT, range(0, 10))
def offset_commit(context: RequestContext, request: Message) -> HandlerResult:
    coordinator = group_service(context).coordinator
    return commit_and_answer(
        context,
        request,
        lambda partitions: coordinator.commit_offsets(
            request["group_id"],
            request.get("member_id", ""),
            request.get("group_instance_id"),
            request.get("generation_id_or_member_epoch", -1),
            partitions,
        ),
    )
