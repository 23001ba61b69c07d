"""The group coordinator: Kafka's classic consumer groups, as a pure state machine.

No sockets, no event loop, no threads. The broker (the "shell") feeds it
requests and the time, and it answers; request handlers are thin adapters
that copy fields between the wire and these calls:

- Requests that may have to wait (JoinGroup until the rebalance's join phase
  ends, SyncGroup until the leader's assignment arrives) take an ``on_done``
  callback. It is called exactly once: before the call returns, or later from
  another call or from :meth:`GroupCoordinator.tick`.
- Everything else returns its result directly.
- Time comes from the injected ``clock`` (milliseconds). The shell calls
  :meth:`~GroupCoordinator.tick` whenever :meth:`~GroupCoordinator.next_deadline`
  says something is due: sessions expiring, join phases ending.
- State changes that must survive are handed to ``persist(partition,
  records)`` as ``__consumer_offsets`` records, synchronously, before any
  answer that depends on them goes out. Loading a partition replays them.

A group lives in partition ``partition_for_group(group_id)`` of
``__consumer_offsets``; this coordinator answers NOT_COORDINATOR for groups of
partitions it does not own and COORDINATOR_LOAD_IN_PROGRESS while it is still
reading one.

The rules themselves are in :mod:`moldau.group.membership` (joining,
syncing, heartbeats, leaving: why a group rebalances) and
:mod:`moldau.group.offsets` (committed offsets).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable
from typing import Concatenate, ParamSpec, TypeVar

from moldau.group import errors
from moldau.group._codec import DecodeError
from moldau.group.config import GroupConfig
from moldau.group.history import RebalanceRecord
from moldau.group.membership import JoinCallback, JoinRequest, Membership, SyncCallback
from moldau.group.model import Group, GroupState, TopicPartition
from moldau.group.offsets import Offsets, refused_commit
from moldau.group.persistence import group_tombstone, offset_tombstone, replay
from moldau.group.results import (
    DeleteGroupResult,
    GroupDescription,
    HeartbeatResult,
    JoinResult,
    LeaveResult,
    LeavingMember,
    ListedGroup,
    ListGroupsResult,
    MemberDescription,
    OffsetCommitPartition,
    OffsetCommitResult,
    OffsetDeleteResult,
    OffsetFetchResult,
    SyncResult,
)
from moldau.group.runtime import (
    Deadline,
    LoggedRecord,
    Persist,
    RebalanceListener,
    Runtime,
    TransactionalRecord,
    TxnEnd,
    TxnProducer,
)

P = ParamSpec("P")
T = TypeVar("T")


def _delivers_answers(
    method: Callable[Concatenate[GroupCoordinator, P], T],
) -> Callable[Concatenate[GroupCoordinator, P], T]:
    """Delivers the answers a call produced for waiting requests, once it is done."""

    @functools.wraps(method)
    def wrapper(self: GroupCoordinator, *args: P.args, **kwargs: P.kwargs) -> T:
        result = method(self, *args, **kwargs)
        self._rt.flush()
        return result

    return wrapper


class GroupCoordinator:
    def __init__(
        self,
        config: GroupConfig,
        clock: Callable[[], int],
        persist: Persist,
        on_rebalance_end: RebalanceListener | None = None,
    ) -> None:
        """``on_rebalance_end`` hears of each rebalance as it ends (see
        :meth:`rebalance_history`), for a shell that keeps them longer."""
        self._rt = Runtime(config, clock, persist, on_rebalance_end)
        self._membership = Membership(self._rt)
        self._offsets = Offsets(self._rt)
        self._schedule_offset_expiry()

    # --- which groups are ours ------------------------------------------------

    @property
    def owned_partitions(self) -> frozenset[int]:
        """The loaded partitions of __consumer_offsets whose groups this coordinator serves."""
        return frozenset(self._rt.owned)

    @property
    def loading_partitions(self) -> frozenset[int]:
        """The partitions being read: their groups wait (COORDINATOR_LOAD_IN_PROGRESS)."""
        return frozenset(self._rt.loading)

    @_delivers_answers
    def mark_loading(self, partition: int) -> None:
        """This broker became leader of ``partition``; its groups are being
        read (:meth:`replay`), and their requests get
        COORDINATOR_LOAD_IN_PROGRESS until :meth:`finish_loading`. Groups
        loaded before (an earlier leadership) are dropped first."""
        if partition in self._rt.owned:
            self._drop_groups_of(partition)
            self._rt.owned.discard(partition)
        self._rt.loading.add(partition)

    def finish_loading(self, partition: int) -> None:
        """Every record of ``partition`` was replayed: serve its groups.

        Members of loaded groups must heartbeat within their session timeout
        from now."""
        self._rt.loading.discard(partition)
        self._rt.owned.add(partition)
        for group in self._groups_of(partition):
            for member in group.members.values():
                self._rt.schedule_session(group, member)

    def load_partition(self, partition: int, records: Iterable[LoggedRecord]) -> int:
        """Replays ``partition``'s records, in log order, at once, and starts
        serving its groups (:meth:`mark_loading`, :meth:`replay`,
        :meth:`finish_loading`; ``moldau.group.loading`` does it in slices).

        Returns how many records were skipped as unreadable.
        """
        self.mark_loading(partition)
        skipped = 0
        for record in records:
            try:
                self.replay(partition, record)
            except DecodeError:
                skipped += 1
        self.finish_loading(partition)
        return skipped

    def replay(self, partition: int, record: LoggedRecord) -> None:
        """Applies one entry of offsets partition ``partition``: a record
        (``value`` None: a tombstone), one written in a transaction, or a
        transaction's end."""
        if isinstance(record, TxnEnd):
            self._offsets.complete_transaction(
                self._groups_of(partition), record.producer_id, record.committed
            )
        elif isinstance(record, TransactionalRecord):
            replay(self._rt, record.key, record.value, record.producer_id)
        else:
            replay(self._rt, *record)

    @_delivers_answers
    def unload_partition(self, partition: int) -> None:
        """Another broker took ``partition`` over: forget its groups.

        Requests waiting on those groups get NOT_COORDINATOR and find the new
        coordinator.
        """
        self._drop_groups_of(partition)
        self._rt.owned.discard(partition)
        self._rt.loading.discard(partition)

    def _groups_of(self, partition: int) -> list[Group]:
        rt = self._rt
        return [g for g in rt.groups.values() if rt.partition_of(g.group_id) == partition]

    def _drop_groups_of(self, partition: int) -> None:
        for group in self._groups_of(partition):
            self._membership.answer_all(group, errors.NOT_COORDINATOR)
            self._rt.drop_group(group)

    def _route(self, group_id: str) -> int:
        """Whether this coordinator can answer for ``group_id`` now."""
        partition = self._rt.partition_of(group_id)
        if partition in self._rt.loading:
            return errors.COORDINATOR_LOAD_IN_PROGRESS
        if partition not in self._rt.owned:
            return errors.NOT_COORDINATOR
        return errors.NONE

    def _route_member_request(self, group_id: str) -> int:
        """As :meth:`_route`; group membership also needs a non-empty group id."""
        return errors.INVALID_GROUP_ID if not group_id else self._route(group_id)

    # --- group membership -----------------------------------------------------

    @_delivers_answers
    def join_group(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        reason: str | None = None,
        *,
        require_known_member_id: bool,
        on_done: JoinCallback,
    ) -> None:
        """JoinGroup. ``require_known_member_id`` is true for JoinGroup v4+;
        ``rebalance_timeout_ms`` is the session timeout for v0, which has none."""
        error = self._route_member_request(group_id)
        if error:
            return self._rt.respond(on_done, JoinResult(error, member_id))
        request = JoinRequest(
            group_instance_id=group_instance_id,
            client_id=client_id,
            client_host=client_host,
            session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            protocol_type=protocol_type,
            protocols=protocols,
            reason=reason,
            on_done=on_done,
        )
        self._membership.join(
            group_id, member_id, request, require_known_member_id=require_known_member_id
        )

    @_delivers_answers
    def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: list[tuple[str, bytes]],
        *,
        on_done: SyncCallback,
    ) -> None:
        """SyncGroup. ``protocol_type``/``protocol_name`` are None before v5."""
        error = self._route_member_request(group_id)
        if error:
            return self._rt.respond(on_done, SyncResult(error))
        self._membership.sync(
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            protocol_type,
            protocol_name,
            assignments,
            on_done,
        )

    @_delivers_answers
    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> HeartbeatResult:
        error = self._route_member_request(group_id)
        if error:
            return HeartbeatResult(error)
        return self._membership.heartbeat(group_id, generation_id, member_id, group_instance_id)

    @_delivers_answers
    def leave_group(self, group_id: str, members: list[LeavingMember]) -> LeaveResult:
        """LeaveGroup: one member for v0-2, a batch from v3."""
        error = self._route_member_request(group_id)
        if error:
            return LeaveResult(error)
        return self._membership.leave(group_id, members)

    # --- offsets --------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        partitions: list[OffsetCommitPartition],
        producer: TxnProducer | None = None,
    ) -> OffsetCommitResult:
        """OffsetCommit, or with ``producer`` TxnOffsetCommit (applied when
        the producer's transaction commits); ``generation_id`` -1 (and no
        member) for standalone consumers."""
        error = self._route(group_id)
        if error:
            return refused_commit(partitions, error)
        if producer is not None:
            return self._offsets.commit_in_transaction(
                group_id, producer, member_id, group_instance_id, generation_id, partitions
            )
        return self._offsets.commit(
            group_id, member_id, group_instance_id, generation_id, partitions
        )

    def complete_transaction(self, partition: int, producer_id: int, committed: bool) -> None:
        """A transaction's marker was written to offsets partition
        ``partition``: the offsets it committed to the partition's groups
        apply (``committed``) or are dropped."""
        self._offsets.complete_transaction(self._groups_of(partition), producer_id, committed)

    def fetch_offsets(
        self,
        group_id: str,
        topics: list[tuple[str, list[int]]] | None,
        require_stable: bool = False,
    ) -> OffsetFetchResult:
        """OffsetFetch for one group (v8+ requests name several: one call each)."""
        error = self._route(group_id)
        if error:
            return OffsetFetchResult(error)
        return self._offsets.fetch(group_id, topics, require_stable)

    def delete_offsets(self, group_id: str, partitions: list[TopicPartition]) -> OffsetDeleteResult:
        error = self._route(group_id)
        if error:
            return OffsetDeleteResult(error)
        return self._offsets.delete(group_id, partitions)

    @_delivers_answers
    def forget_topic(self, topic: str) -> None:
        """``topic`` was deleted: the committed offsets of its partitions go too."""
        served = [g for g in self._rt.groups.values() if not self._route(g.group_id)]
        self._offsets.forget_topic(served, topic)

    # --- administration -------------------------------------------------------

    def describe_groups(self, group_ids: list[str]) -> list[GroupDescription]:
        return [self._describe(group_id) for group_id in group_ids]

    def _describe(self, group_id: str) -> GroupDescription:
        error = self._route(group_id)
        if error:
            return GroupDescription(error, group_id, state="")
        group = self._rt.groups.get(group_id)
        if group is None:
            return GroupDescription(errors.NONE, group_id, GroupState.DEAD.value)
        stable = group.state is GroupState.STABLE
        protocol = group.protocol_name if stable and group.protocol_name else ""
        members = tuple(
            MemberDescription(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                metadata=m.metadata(protocol) if protocol else b"",
                assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        )
        return GroupDescription(
            error_code=errors.NONE,
            group_id=group_id,
            state=group.state.value,
            protocol_type=group.protocol_type or "",
            protocol=protocol,
            members=members,
            generation_id=group.generation,
            leader=group.leader_id or "",
        )

    def list_groups(self, states_filter: Collection[str] | None = None) -> ListGroupsResult:
        """ListGroups; ``states_filter`` (v4+) matches state names case-insensitively."""
        wanted = {s.lower() for s in states_filter} if states_filter else None
        listed = tuple(
            ListedGroup(g.group_id, g.protocol_type or "", g.state.value)
            for g in sorted(self._rt.groups.values(), key=lambda g: g.group_id)
            if self._rt.partition_of(g.group_id) in self._rt.owned
            and (wanted is None or g.state.value.lower() in wanted)
        )
        error = errors.COORDINATOR_LOAD_IN_PROGRESS if self._rt.loading else errors.NONE
        return ListGroupsResult(error, listed)

    def delete_groups(self, group_ids: list[str]) -> list[DeleteGroupResult]:
        """DeleteGroups: only groups without members; their offsets go with them."""
        return [DeleteGroupResult(gid, self._delete_group(gid)) for gid in group_ids]

    def _delete_group(self, group_id: str) -> int:
        error = self._route(group_id)
        if error:
            return error
        group = self._rt.groups.get(group_id)
        if group is None:
            return errors.GROUP_ID_NOT_FOUND
        if group.state is not GroupState.EMPTY:
            return errors.NON_EMPTY_GROUP
        records = [offset_tombstone(group_id, tp) for tp in group.offsets]
        records.append(group_tombstone(group_id))
        self._rt.write(group_id, records)
        self._rt.drop_group(group)
        return errors.NONE

    def rebalance_history(self, group_id: str) -> tuple[RebalanceRecord, ...]:
        """The group's recent rebalances, oldest first, the one under way last."""
        group = self._rt.groups.get(group_id)
        if group is None:
            return ()
        ongoing = () if group.rebalance is None else (group.rebalance,)
        return (*group.history, *ongoing)

    # --- time -----------------------------------------------------------------

    def next_deadline(self) -> int | None:
        """When :meth:`tick` next has something to do (clock milliseconds)."""
        return self._rt.timers.next_deadline()

    @_delivers_answers
    def tick(self) -> None:
        """Runs everything due at ``clock()``: expired sessions, ended join and
        sync phases, offset expiry."""
        rt = self._rt
        for key in rt.timers.pop_due(rt.clock()):
            if key.deadline is Deadline.EXPIRE_OFFSETS:
                served = [g for g in rt.groups.values() if not self._route(g.group_id)]
                self._offsets.expire(served)
                self._schedule_offset_expiry()
                continue
            group = rt.groups[key.group_id]  # a group's timers go when the group does
            if key.deadline is Deadline.JOIN:
                self._membership.on_join_deadline(group)
            elif key.deadline is Deadline.SYNC:
                self._membership.on_sync_deadline(group)
            elif key.deadline is Deadline.SESSION:
                self._membership.on_session_deadline(group, key.member_id)
            else:
                self._membership.on_pending_deadline(group, key.member_id)

    def _schedule_offset_expiry(self) -> None:
        interval = self._rt.config.offsets_retention_check_interval_ms
        self._rt.start_timer(Deadline.EXPIRE_OFFSETS, interval)
