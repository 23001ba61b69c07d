"""Consuming as a member of a consumer group: the classic rebalance protocol.

:class:`GroupConsumer` wraps a :class:`Consumer`: it joins the group
(JoinGroup, then SyncGroup; the leader assigns with Kafka's range assignor),
hands the assigned partitions to the consumer starting at the group's
committed offsets, heartbeats in the background, and rejoins when a
heartbeat, a commit or the coordinator says the group is rebalancing. Offsets
are committed when the caller says so (``commit``), as ``moldau consume
--group`` does after printing each batch; ``close`` leaves the group so that
the others take over at once instead of after the session timeout.

Only the range assignor and the ``consumer`` protocol are offered, so any
Kafka client using "range" can share a group with this one. Not done: static
membership, the cooperative protocol, KIP-848's ConsumerGroupHeartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, Self

from moldau.group.consumer_protocol import (
    PROTOCOL_TYPE,
    Assignment,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode, KafkaError

from .consumer import Consumer
from .errors import check
from .groups_admin import GroupsAdmin
from .types import ConsumerRecord, TopicPartition

__all__ = ["RANGE", "GroupConsumer", "range_assign"]

RANGE = "range"

#: Answers that mean "join again": the group moved on without this member.
_REJOIN = frozenset(
    {ErrorCode.REBALANCE_IN_PROGRESS, ErrorCode.ILLEGAL_GENERATION, ErrorCode.UNKNOWN_MEMBER_ID}
)
#: Answers that mean "find the coordinator again and retry".
_COORDINATOR = frozenset(
    {
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


def range_assign(
    subscriptions: Mapping[str, Iterable[str]], partitions: Mapping[str, int]
) -> dict[str, dict[str, list[int]]]:
    """Kafka's RangeAssignor: per topic, its members sorted by id get
    contiguous ranges, the first ``count % members`` one partition more.
    Topics missing from ``partitions`` (unknown to the leader) are skipped."""
    out: dict[str, dict[str, list[int]]] = {member: {} for member in subscriptions}
    members_of: dict[str, list[str]] = {}
    for member, topics in subscriptions.items():
        for topic in set(topics):
            members_of.setdefault(topic, []).append(member)
    for topic, members in sorted(members_of.items()):
        count = partitions.get(topic, 0)
        members.sort()
        share, extra = divmod(count, len(members))
        start = 0
        for i, member in enumerate(members):
            size = share + (1 if i < extra else 0)
            if size:
                out[member][topic] = list(range(start, start + size))
            start += size
    return out


class GroupConsumer:
    """A consumer whose partitions the group ``group_id`` assigns.

    >>> async with GroupConsumer("127.0.0.1:9092", "billing", ["orders"]) as c:
    ...     batches = await c.getmany(timeout_ms=1000)
    ...     await c.commit(batches)
    """

    def __init__(
        self,
        bootstrap_servers: str,
        group_id: str,
        topics: Iterable[str],
        *,
        client_id: str = "moldau-consumer",
        auto_offset_reset: str = "latest",
        session_timeout_ms: int = 10_000,
        rebalance_timeout_ms: int = 30_000,
        heartbeat_interval_ms: int = 3_000,
        request_timeout_ms: int = 30_000,
    ) -> None:
        self.group_id = group_id
        self.topics = tuple(topics)
        self.consumer = Consumer(
            bootstrap_servers,
            client_id=client_id,
            auto_offset_reset=auto_offset_reset,
            request_timeout_ms=request_timeout_ms,
        )
        self.admin = GroupsAdmin(self.consumer.cluster, timeout_ms=request_timeout_ms)
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.heartbeat_interval = heartbeat_interval_ms / 1000
        self.member_id = ""
        self.generation_id = -1
        self._rejoin = True
        self._heartbeat: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        await self.consumer.start()

    def assignment(self) -> set[TopicPartition]:
        return self.consumer.assignment()

    async def getmany(
        self, *, timeout_ms: float = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Records of the partitions assigned now, (re)joining first if needed."""
        if self._rejoin:
            await self._join()
        return await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)

    async def commit(self, batches: Mapping[TopicPartition, list[ConsumerRecord]]) -> bool:
        """Commit the offset after the last record of each batch. False (and a
        rejoin on the next ``getmany``) when the group has moved on: the new
        owner of those partitions starts from the previous commit."""
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items() if records}
        if not offsets:
            return True
        try:
            await self.admin.commit_offsets(
                self.group_id, offsets, generation_id=self.generation_id, member_id=self.member_id
            )
        except KafkaError as exc:
            if exc.code not in _REJOIN:
                raise
            self._must_rejoin(exc.code)
            return False
        return True

    async def close(self) -> None:
        """Stop heartbeating, leave the group, close the consumer."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        try:
            if self.member_id:
                with contextlib.suppress(KafkaError):
                    await self._leave()
        finally:
            await self.consumer.close()

    # --- the protocol ----------------------------------------------------------

    def _must_rejoin(self, code: ErrorCode) -> None:
        self._rejoin = True
        if code == ErrorCode.UNKNOWN_MEMBER_ID:
            self.member_id = ""
            self.generation_id = -1

    async def _join(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.rebalance_timeout_ms + self.session_timeout_ms) / 1000
        while True:
            try:
                if await self._join_once():
                    break
            except KafkaError as exc:
                if exc.code not in _COORDINATOR or loop.time() >= deadline:
                    raise
                await asyncio.sleep(self.consumer.retry_backoff)
        self._rejoin = False
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name="moldau-group-heartbeat")

    async def _join_once(self) -> bool:
        """One JoinGroup + SyncGroup; True when the assignment is in place."""
        _, conn = await self.admin.coordinator(self.group_id)
        subscription = encode_subscription(Subscription(self.topics))
        joined = await conn.request(
            ApiKey.JOIN_GROUP,
            {
                "group_id": self.group_id,
                "session_timeout_ms": self.session_timeout_ms,
                "rebalance_timeout_ms": self.rebalance_timeout_ms,
                "member_id": self.member_id,
                "group_instance_id": None,
                "protocol_type": PROTOCOL_TYPE,
                "protocols": [{"name": RANGE, "metadata": subscription}],
                "reason": None,
            },
            # The coordinator holds a JoinGroup until every member rejoined.
            timeout_ms=self.rebalance_timeout_ms + 5_000,
        )
        code = ErrorCode(joined["error_code"])
        if code == ErrorCode.MEMBER_ID_REQUIRED:
            self.member_id = joined["member_id"]
            return False
        if code in _REJOIN:
            self._must_rejoin(code)
            return False
        check(code, joined.get("error_message"), context=f"join group '{self.group_id}'")
        self.member_id = joined["member_id"]
        self.generation_id = joined["generation_id"]
        assignments = []
        if joined["leader"] == self.member_id:
            assignments = await self._assign(joined["members"])
        synced = await conn.request(
            ApiKey.SYNC_GROUP,
            {
                "group_id": self.group_id,
                "generation_id": self.generation_id,
                "member_id": self.member_id,
                "group_instance_id": None,
                "protocol_type": PROTOCOL_TYPE,
                "protocol_name": RANGE,
                "assignments": assignments,
            },
            timeout_ms=self.rebalance_timeout_ms + 5_000,
        )
        code = ErrorCode(synced["error_code"])
        if code in _REJOIN:
            self._must_rejoin(code)
            return False
        check(code, context=f"sync group '{self.group_id}'")
        await self._take(synced["assignment"])
        return True

    async def _assign(self, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The leader's job: every member's share, by the range assignor."""
        subscriptions = {m["member_id"]: decode_subscription(m["metadata"]).topics for m in members}
        topics = sorted({t for wanted in subscriptions.values() for t in wanted})
        meta = await self.consumer.cluster.refresh(topics)
        counts = {
            t: len(meta.topics[t].partitions)
            for t in topics
            if t in meta.topics and meta.topics[t].error == ErrorCode.NONE
        }
        shares = range_assign(subscriptions, counts)
        return [
            {
                "member_id": member,
                "assignment": encode_assignment(
                    Assignment(tuple((t, tuple(p)) for t, p in sorted(share.items())))
                ),
            }
            for member, share in shares.items()
        ]

    async def _take(self, data: bytes | None) -> None:
        """Consume what SyncGroup gave us, from the group's committed offsets."""
        partitions = decode_assignment(data).partitions if data else ()
        tps = [TopicPartition(t, p) for t, ps in partitions for p in ps]
        self.consumer.assign(tps)
        committed = await self.admin.committed_offsets(self.group_id)
        for tp in tps:
            if tp in committed:
                self.consumer.seek(tp, committed[tp])

    async def _beat(self) -> None:
        """Heartbeat every interval; a rebalance answer makes the next
        ``getmany`` rejoin. Network trouble is retried at the next beat: the
        session timeout decides when the coordinator gives up on us."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self._rejoin:
                continue
            try:
                _, conn = await self.admin.coordinator(self.group_id)
                answer = await conn.request(
                    ApiKey.HEARTBEAT,
                    {
                        "group_id": self.group_id,
                        "generation_id": self.generation_id,
                        "member_id": self.member_id,
                        "group_instance_id": None,
                    },
                )
            except KafkaError:
                continue
            code = ErrorCode(answer["error_code"])
            if code in _REJOIN:
                self._must_rejoin(code)

    async def _leave(self) -> None:
        _, conn = await self.admin.coordinator(self.group_id)
        answer = await conn.request(
            ApiKey.LEAVE_GROUP,
            {
                "group_id": self.group_id,
                "member_id": self.member_id,
                "members": [
                    {"member_id": self.member_id, "group_instance_id": None, "reason": None}
                ],
            },
        )
        check(answer["error_code"], context=f"leave group '{self.group_id}'")
