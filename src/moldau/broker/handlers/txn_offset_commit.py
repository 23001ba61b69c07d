"""TxnOffsetCommit (key 28): a consumer's offsets, committed inside a
producer's transaction (consume-transform-produce, KIP-98).

Sent to the group's coordinator after AddOffsetsToTxn added the group's
offsets partition to the transaction. The offsets are written to that
partition inside the transaction (a transactional batch of the producer)
and become the group's when the transaction's commit marker is written
there; an abort drops them. Until then an OffsetFetch with require_stable
answers UNSTABLE_OFFSET_COMMIT for them.

v1: no change. v2: leader epoch per partition. v3: generation, member id and
group instance id (KIP-447), checked like a member's OffsetCommit. v4:
flexible. v5: KIP-890 (the coordinator verifies the transaction).
"""

from __future__ import annotations

from ...group.runtime import TxnProducer
from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import HandlerResult, RequestContext, handles
from ._commits import commit_and_answer
from ._groups import group_service


@handles(ApiKey.TXN_OFFSET_COMMIT, range(0, 6))
def txn_offset_commit(context: RequestContext, request: Message) -> HandlerResult:
    coordinator = group_service(context).coordinator
    producer = TxnProducer(request["producer_id"], request["producer_epoch"])
    return commit_and_answer(
        context,
        request,
        lambda partitions: coordinator.commit_offsets(
            request["group_id"],
            request.get("member_id", ""),
            request.get("group_instance_id"),
            request.get("generation_id", -1),
            partitions,
            producer,
        ),
    )
