"""Consumer groups from the outside: list, describe, delete, offsets, history.

What ``moldau groups`` needs and what Kafka's admin client offers for groups.
Everything about one group is asked of its coordinator (found with
FindCoordinator); a coordinator that moved or is still loading its groups is
found again and asked again until the request timeout. Listing asks every
broker, since each lists only the groups it coordinates.

Member assignments of ``consumer`` groups are decoded with the consumer
protocol; the rebalance history is read from the ``__moldau_group_history``
topic that moldau brokers write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from moldau.group.consumer_protocol import PROTOCOL_TYPE, decode_assignment
from moldau.group.history import HISTORY_TOPIC, RebalanceRecord
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode, KafkaError

from .cluster import GROUP_KEY, Cluster
from .connection import BrokerConnection
from .errors import check
from .offsets import list_offsets
from .read_to_end import read_to_end
from .types import TopicPartition

__all__ = ["GroupDescription", "GroupListing", "GroupMember", "GroupsAdmin"]

T = TypeVar("T")

#: OffsetFetch v8 batches several groups: a different shape of request. One
#: group at a time is all this client needs.
_SINGLE_GROUP_OFFSET_FETCH = 7


@dataclass(frozen=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    #: Decoded for consumer groups while the group is Stable; else empty.
    assignment: tuple[TopicPartition, ...]


@dataclass(frozen=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[GroupMember, ...]
    coordinator: int


class GroupsAdmin:
    """Group administration over a :class:`Cluster`.

    >>> async with Cluster("127.0.0.1:9092") as cluster:
    ...     groups = await GroupsAdmin(cluster).list_groups()
    """

    def __init__(self, cluster: Cluster, *, timeout_ms: int = 30_000) -> None:
        self.cluster = cluster
        self.timeout_ms = timeout_ms

    # --- finding coordinators ---------------------------------------------------

    async def coordinator(self, group_id: str) -> tuple[int, BrokerConnection]:
        """The node id of ``group_id``'s coordinator and a connection to it."""
        return await self.cluster.coordinator(group_id, GROUP_KEY)

    async def _ask_coordinator(
        self,
        group_id: str,
        api_key: ApiKey,
        body: dict[str, Any],
        *,
        max_version: int | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """(coordinator id, answer) of one request about ``group_id``. Callers
        check the answer and raise its error; when that is the coordinator's
        (moved, loading), :meth:`_retry` comes back here and finds it again."""
        node_id, conn = await self.coordinator(group_id)
        version = conn.version(api_key)
        if max_version is not None:
            version = min(version, max_version)
        return node_id, await conn.request(api_key, body, version=version)

    async def _retry(self, attempt: Callable[[], Awaitable[T]]) -> T:
        return await self.cluster.retry(attempt, timeout_ms=self.timeout_ms, refresh=False)

    # --- groups -----------------------------------------------------------------

    async def list_groups(self, states: Iterable[str] = ()) -> list[GroupListing]:
        """Every group in the cluster (of ``states`` only, if given), by id."""
        await self.cluster.refresh([])
        wanted = [s.lower() for s in states]
        listings: dict[str, GroupListing] = {}

        async def ask(conn: BrokerConnection) -> None:
            answer = await conn.request(
                ApiKey.LIST_GROUPS, {"states_filter": [], "types_filter": []}
            )
            check(answer["error_code"], context=f"list groups of broker {conn}")
            for g in answer["groups"]:
                listing = GroupListing(g["group_id"], g["protocol_type"], g.get("group_state", ""))
                listings[listing.group_id] = listing

        async def attempt() -> None:
            conns = [await self.cluster.node(b.node_id) for b in self.cluster.brokers()]
            await asyncio.gather(*(ask(conn) for conn in conns))

        await self.cluster.retry(attempt, timeout_ms=self.timeout_ms)
        return [
            listings[g]
            for g in sorted(listings)
            if not wanted or listings[g].state.lower() in wanted
        ]

    async def describe_group(self, group_id: str) -> GroupDescription:
        """State, protocol and members; a group that does not exist is Dead."""

        async def attempt() -> GroupDescription:
            body = {"groups": [group_id], "include_authorized_operations": False}
            node_id, answer = await self._ask_coordinator(group_id, ApiKey.DESCRIBE_GROUPS, body)
            (group,) = answer["groups"]
            check(group["error_code"], group.get("error_message"), context=f"group '{group_id}'")
            consumer = group["protocol_type"] == PROTOCOL_TYPE
            members = tuple(
                GroupMember(
                    m["member_id"],
                    m.get("group_instance_id"),
                    m["client_id"],
                    m["client_host"],
                    _assigned(m["member_assignment"]) if consumer else (),
                )
                for m in group["members"]
            )
            return GroupDescription(
                group_id,
                group["group_state"],
                group["protocol_type"],
                group["protocol_data"],
                members,
                node_id,
            )

        return await self._retry(attempt)

    async def delete_group(self, group_id: str) -> None:
        """DeleteGroups: only a group without members can go; its offsets go too."""

        async def attempt() -> None:
            _, answer = await self._ask_coordinator(
                group_id, ApiKey.DELETE_GROUPS, {"groups_names": [group_id]}
            )
            (result,) = answer["results"]
            code = result["error_code"]
            if code == ErrorCode.GROUP_ID_NOT_FOUND:
                raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, f"group '{group_id}' does not exist")
            if code == ErrorCode.NON_EMPTY_GROUP:
                raise KafkaError(
                    ErrorCode.NON_EMPTY_GROUP,
                    f"group '{group_id}' has members, it cannot be deleted",
                )
            check(code, context=f"delete group '{group_id}'")

        await self._retry(attempt)

    # --- offsets ----------------------------------------------------------------

    async def committed_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        """Every committed offset of the group."""

        async def attempt() -> dict[TopicPartition, int]:
            body = {"group_id": group_id, "topics": None, "require_stable": False}
            _, answer = await self._ask_coordinator(
                group_id, ApiKey.OFFSET_FETCH, body, max_version=_SINGLE_GROUP_OFFSET_FETCH
            )
            check(answer.get("error_code", 0), context=f"offsets of group '{group_id}'")
            offsets = {}
            for topic in answer["topics"]:
                for p in topic["partitions"]:
                    tp = TopicPartition(topic["name"], p["partition_index"])
                    check(p["error_code"], context=f"offset of {tp.topic}-{tp.partition}")
                    if p["committed_offset"] >= 0:
                        offsets[tp] = p["committed_offset"]
            return offsets

        return await self._retry(attempt)

    async def commit_offsets(
        self,
        group_id: str,
        offsets: Mapping[TopicPartition, int],
        *,
        generation_id: int = -1,
        member_id: str = "",
    ) -> None:
        """Commit as a standalone client (no member, no generation: what a
        reset does, and what the coordinator allows only while the group has
        no members), or as ``member_id`` of generation ``generation_id``."""
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for tp, offset in sorted(offsets.items()):
            by_topic.setdefault(tp.topic, []).append(
                {
                    "partition_index": tp.partition,
                    "committed_offset": offset,
                    "committed_leader_epoch": -1,
                    "commit_timestamp": -1,
                    "committed_metadata": "",
                }
            )
        body = {
            "group_id": group_id,
            "generation_id_or_member_epoch": generation_id,
            "member_id": member_id,
            "group_instance_id": None,
            "retention_time_ms": -1,
            "topics": [{"name": t, "partitions": parts} for t, parts in by_topic.items()],
        }

        async def attempt() -> None:
            _, answer = await self._ask_coordinator(group_id, ApiKey.OFFSET_COMMIT, body)
            for topic in answer["topics"]:
                for p in topic["partitions"]:
                    where = f"commit to {topic['name']}-{p['partition_index']}"
                    check(p["error_code"], context=where)

        await self._retry(attempt)

    async def log_end_offsets(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """The log end offset of each partition that exists; a group may keep
        offsets of a topic deleted since (those are left out)."""
        wanted = list(partitions)
        meta = await self.cluster.refresh({tp.topic for tp in wanted})
        existing = [
            tp
            for tp in wanted
            if (info := meta.topics.get(tp.topic)) is not None
            and info.error == ErrorCode.NONE
            and tp.partition in info.partitions
        ]
        found = await list_offsets(
            self.cluster, dict.fromkeys(existing, "latest"), timeout_ms=self.timeout_ms
        )
        return {tp: answer.offset for tp, answer in found.items()}

    # --- history ----------------------------------------------------------------

    async def rebalance_history(self, group_id: str) -> list[RebalanceRecord]:
        """The group's rebalances the brokers recorded, oldest first.

        Reads ``__moldau_group_history`` from its start to its end as of now;
        without that topic (no broker has seen a rebalance) there are none.
        """
        meta = await self.cluster.refresh([HISTORY_TOPIC])
        info = meta.topics.get(HISTORY_TOPIC)
        if info is None or info.error != ErrorCode.NONE:
            return []
        tps = [TopicPartition(HISTORY_TOPIC, p) for p in sorted(info.partitions)]
        wanted = group_id.encode()
        found = [
            decoded
            for r in await read_to_end(self.cluster, tps, self.timeout_ms)
            if r.key == wanted
            for decoded in _decoded(r.value)
        ]
        return sorted(found, key=lambda r: r.started_ms)


def _assigned(data: bytes) -> tuple[TopicPartition, ...]:
    if not data:
        return ()
    try:
        assignment = decode_assignment(data)
    except ValueError:
        return ()
    return tuple(TopicPartition(t, p) for t, parts in assignment.partitions for p in parts)


def _decoded(value: bytes | None) -> list[RebalanceRecord]:
    """A history record, or nothing when it is not one (a newer broker's)."""
    if value is None:
        return []
    try:
        return [RebalanceRecord.from_json(value)[1]]
    except ValueError:
        return []
