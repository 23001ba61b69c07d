"""The classic rebalance protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup.

How a group moves, in one place::

    Empty --member joins--> PreparingRebalance --all rejoined / timeout-->
    CompletingRebalance --leader's SyncGroup--> Stable
    Stable/CompletingRebalance --join, leave, timeout, changed metadata-->
    PreparingRebalance
    PreparingRebalance --nobody left--> Empty

A rebalance begins when membership or what members ask for changes: a new
member joins, a member leaves or its session expires, a member rejoins with
different protocol metadata (or the leader rejoins: it does so when it sees
topic metadata change). Members learn about it from the REBALANCE_IN_PROGRESS
answer to their heartbeat and rejoin.

The join phase ends when every member has rejoined, or when the rebalance
timeout (the longest max.poll.interval.ms among members) runs out; dynamic
members that did not make it are dropped, static ones keep their place until
their session expires. The first rebalance of an Empty group instead waits
group.initial.rebalance.delay.ms, again each time another member arrives
during the wait, within the rebalance timeout, so that a fleet of consumers
starting together produces one rebalance rather than one per consumer.

Then the generation number increases, a protocol is chosen, every member gets
its JoinGroup answer, and the leader alone gets the member list. The leader
computes the assignment and sends it with its SyncGroup; the others' SyncGroup
calls wait for it. The assignment is persisted and the group is Stable.

Rejoining without a rebalance: a member that rejoins with unchanged metadata
just gets the current generation back, and a static member
(group.instance.id) that restarts asking for the same subscription (see
``Group.asks_the_same``) takes its place and assignment back under its new
member id; its old member id is fenced.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from moldau.group import errors
from moldau.group.history import Outcome, RebalanceRecord, Trigger
from moldau.group.model import Group, GroupState, Member, Protocols
from moldau.group.persistence import group_metadata_record
from moldau.group.results import (
    HeartbeatResult,
    JoinResult,
    LeaveMemberResult,
    LeaveResult,
    LeavingMember,
    SyncResult,
)
from moldau.group.runtime import Deadline, Runtime

UNKNOWN_MEMBER_ID = ""

JoinCallback = Callable[[JoinResult], None]
SyncCallback = Callable[[SyncResult], None]


@dataclass(frozen=True)
class JoinRequest:
    """What a JoinGroup carries besides the group and the member id."""

    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: Protocols
    reason: str | None
    on_done: JoinCallback


class Membership:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # --- JoinGroup ------------------------------------------------------------

    def join(
        self, group_id: str, member_id: str, req: JoinRequest, *, require_known_member_id: bool
    ) -> None:
        config = self.rt.config
        low, high = config.group_min_session_timeout_ms, config.group_max_session_timeout_ms
        if not low <= req.session_timeout_ms <= high:
            return self._fail_join(req, member_id, errors.INVALID_SESSION_TIMEOUT)
        group = self.rt.groups.get(group_id)
        if group is None:
            if member_id != UNKNOWN_MEMBER_ID:
                return self._fail_join(req, member_id, errors.UNKNOWN_MEMBER_ID)
            group = self.rt.new_group(group_id)
        # A member's own current protocols do not count against its new ones.
        self_id = member_id
        if not self_id and req.group_instance_id is not None:
            self_id = group.static_members.get(req.group_instance_id, "")
        if not group.supports_protocols(req.protocol_type, req.protocols, self_id):
            return self._fail_join(req, member_id, errors.INCONSISTENT_GROUP_PROTOCOL)
        self.rt.groups.setdefault(group_id, group)

        if member_id != UNKNOWN_MEMBER_ID:
            return self._join_known(group, member_id, req)
        new_id = f"{req.client_id}-{uuid.uuid4()}"
        if req.group_instance_id is not None and req.group_instance_id in group.static_members:
            return self._rejoin_static(group, new_id, req)
        if self._is_full(group):
            return self._fail_join(req, member_id, errors.GROUP_MAX_SIZE_REACHED)
        if req.group_instance_id is None and require_known_member_id:
            # JoinGroup v4+: hand out the id first, so that a client whose join
            # times out retries with it instead of leaving a ghost member behind.
            group.pending_members.add(new_id)
            self.rt.start_timer(Deadline.PENDING, req.session_timeout_ms, group.group_id, new_id)
            return self._fail_join(req, new_id, errors.MEMBER_ID_REQUIRED)
        self._add_member(group, new_id, req)

    def _fail_join(self, req: JoinRequest, member_id: str, error: int) -> None:
        self.rt.respond(req.on_done, JoinResult(error, member_id))

    def _is_full(self, group: Group) -> bool:
        size = len(group.members) + len(group.pending_members)
        return size >= self.rt.config.group_max_size

    def _join_known(self, group: Group, member_id: str, req: JoinRequest) -> None:
        if member_id in group.pending_members:
            group.pending_members.discard(member_id)
            self.rt.stop_timer(Deadline.PENDING, group.group_id, member_id)
            return self._add_member(group, member_id, req)
        error = group.validate_member(member_id, req.group_instance_id)
        if error:
            return self._fail_join(req, member_id, error)
        member = group.members[member_id]
        if group.state is GroupState.PREPARING_REBALANCE:
            self._update_member(member, req, req.on_done)
            return self._maybe_complete_join(group)
        unchanged = member.matches(req.protocols)
        leader_in_stable = group.state is GroupState.STABLE and group.is_leader(member_id)
        if unchanged and not leader_in_stable:
            # Probably a retry after a lost JoinGroup answer: nothing to redo.
            return self.rt.respond(req.on_done, self._generation_answer(group, member))
        self._update_member(member, req, req.on_done)
        trigger = Trigger.METADATA_CHANGE if not unchanged else Trigger.LEADER_REJOIN
        self._prepare_rebalance(group, trigger, (member_id,), req.reason)

    def _add_member(self, group: Group, member_id: str, req: JoinRequest) -> None:
        member = Member(
            member_id=member_id,
            group_instance_id=req.group_instance_id,
            client_id=req.client_id,
            client_host=req.client_host,
            rebalance_timeout_ms=req.rebalance_timeout_ms,
            session_timeout_ms=req.session_timeout_ms,
            protocols=list(req.protocols),
            is_new=True,
            awaiting_join=req.on_done,
        )
        if group.in_initial_delay:
            group.new_member_added = True
        group.add(member, req.protocol_type)
        # A new member cannot heartbeat before its first answer; if its client
        # gave up, expire it after a while rather than a whole rebalance timeout.
        self.rt.schedule_session(group, member, self.rt.config.new_member_join_timeout_ms)
        if group.state is GroupState.PREPARING_REBALANCE:
            self._maybe_complete_join(group)
        else:
            self._prepare_rebalance(group, Trigger.MEMBER_JOIN, (member_id,), req.reason)

    def _rejoin_static(self, group: Group, new_id: str, req: JoinRequest) -> None:
        """A static member came back under a new member id (typically a restart)."""
        assert req.group_instance_id is not None
        old_id = group.static_members[req.group_instance_id]
        old = group.members[old_id]
        self._answer_waiting(old, errors.FENCED_INSTANCE_ID)
        unchanged = group.asks_the_same(old, req.protocols)
        member = group.replace_static_member(old_id, new_id)
        member.client_id, member.client_host = req.client_id, req.client_host
        self.rt.stop_timer(Deadline.SESSION, group.group_id, old_id)
        self.rt.schedule_session(group, member, req.session_timeout_ms)
        self._update_member(member, req, None)
        # As in Kafka, also: the group would still choose the protocol it uses.
        if (
            group.state is GroupState.STABLE
            and unchanged
            and group.select_protocol() == group.protocol_name
        ):
            self.rt.write(group.group_id, [group_metadata_record(group)])
            leader = group.is_leader(new_id)
            answer = self._generation_answer(group, member, skip_assignment=leader)
            if leader:
                answer = dataclasses.replace(answer, replaced_leader=old_id)
            return self.rt.respond(req.on_done, answer)
        self._update_member(member, req, req.on_done)
        if group.state is GroupState.PREPARING_REBALANCE:
            return self._maybe_complete_join(group)
        # Stable with a changed subscription needs a new assignment. During
        # CompletingRebalance the leader may already be assigning to the old
        # member id, which would leave the new id without partitions.
        self._prepare_rebalance(group, Trigger.STATIC_MEMBER_REJOIN, (new_id,), req.reason)

    def _update_member(
        self, member: Member, req: JoinRequest, on_done: JoinCallback | None
    ) -> None:
        if member.awaiting_join is not None:  # superseded by this newer JoinGroup
            self.rt.respond(
                member.awaiting_join, JoinResult(errors.REBALANCE_IN_PROGRESS, member.member_id)
            )
        member.protocols = list(req.protocols)
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.session_timeout_ms = req.session_timeout_ms
        member.awaiting_join = on_done

    def _generation_answer(
        self, group: Group, member: Member, *, skip_assignment: bool = False
    ) -> JoinResult:
        """The JoinGroup answer describing the current generation to ``member``."""
        leader = group.is_leader(member.member_id)
        return JoinResult(
            error_code=errors.NONE,
            member_id=member.member_id,
            generation_id=group.generation,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=group.leader_id or "",
            skip_assignment=skip_assignment,
            members=group.join_members() if leader else (),
        )

    # --- the join phase -------------------------------------------------------

    def _prepare_rebalance(
        self, group: Group, trigger: Trigger, member_ids: tuple[str, ...], reason: str | None
    ) -> None:
        now = self.rt.clock()
        if group.state is GroupState.COMPLETING_REBALANCE:
            for member in group.members.values():
                if member.awaiting_sync is not None:
                    self._answer_sync(member, SyncResult(errors.REBALANCE_IN_PROGRESS))
                    # Its session was on hold while it waited; it has a full
                    # session to rejoin now.
                    self.rt.schedule_session(group, member)
            self._end_rebalance(group, Outcome.RESTARTED)
        group.pending_sync.clear()
        self.rt.stop_timer(Deadline.SYNC, group.group_id)
        initial = (
            group.state is GroupState.EMPTY and self.rt.config.group_initial_rebalance_delay_ms > 0
        )
        group.state = GroupState.PREPARING_REBALANCE
        group.rebalance = RebalanceRecord(
            trigger, member_ids, reason, group.generation, group.generation_members, now
        )
        timeout = group.rebalance_timeout_ms
        if initial:
            delay = min(self.rt.config.group_initial_rebalance_delay_ms, timeout)
            group.in_initial_delay = True
            group.new_member_added = False
            group.initial_delay_budget_ms = timeout - delay
            self.rt.start_timer(Deadline.JOIN, delay, group.group_id)
        else:
            self.rt.start_timer(Deadline.JOIN, timeout, group.group_id)
            self._maybe_complete_join(group)

    def _maybe_complete_join(self, group: Group) -> None:
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and not group.in_initial_delay
            and group.all_members_joined()
        ):
            self._complete_join(group)

    def on_join_deadline(self, group: Group) -> None:
        """The initial delay or the rebalance timeout has run out."""
        delay = self.rt.config.group_initial_rebalance_delay_ms
        if group.in_initial_delay and group.new_member_added and group.initial_delay_budget_ms > 0:
            wait = min(delay, group.initial_delay_budget_ms)
            group.initial_delay_budget_ms -= wait
            group.new_member_added = False
            self.rt.start_timer(Deadline.JOIN, wait, group.group_id)
            return
        self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        now = self.rt.clock()
        self.rt.stop_timer(Deadline.JOIN, group.group_id)
        group.in_initial_delay = False
        late = tuple(
            m.member_id
            for m in group.members.values()
            if m.awaiting_join is None and m.group_instance_id is None
        )
        for member_id in late:
            self._remove(group, member_id)
        assert group.rebalance is not None
        group.rebalance = group.rebalance.dropping(late)
        if group.members and not group.elect_joined_leader():
            # Only static members that have not rejoined remain. They keep their
            # place until their session expires; wait for them once more.
            self.rt.start_timer(Deadline.JOIN, group.rebalance_timeout_ms, group.group_id)
            return

        group.generation += 1
        group.state_timestamp = now
        group.generation_members = tuple(group.members)
        group.rebalance = group.rebalance.joined(now, group.generation, group.generation_members)
        if not group.members:
            group.state = GroupState.EMPTY
            group.protocol_name = None
            group.leader_id = None
            self.rt.write(group.group_id, [group_metadata_record(group)])
            self._end_rebalance(group, Outcome.EMPTY)
            return

        group.protocol_name = group.select_protocol()
        group.state = GroupState.COMPLETING_REBALANCE
        group.pending_sync = {m.member_id for m in group.members.values() if m.awaiting_join}
        self.rt.start_timer(Deadline.SYNC, group.rebalance_timeout_ms, group.group_id)
        for member in group.members.values():
            if member.awaiting_join is not None:
                self.rt.respond(member.awaiting_join, self._generation_answer(group, member))
                member.awaiting_join = None
            member.is_new = False
            self.rt.schedule_session(group, member)

    def _end_rebalance(self, group: Group, outcome: Outcome) -> None:
        assert group.rebalance is not None
        self.rt.end_rebalance(group, group.rebalance.ended(self.rt.clock(), outcome))

    # --- SyncGroup ------------------------------------------------------------

    def sync(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: list[tuple[str, bytes]],
        on_done: SyncCallback,
    ) -> None:
        group = self.rt.groups.get(group_id)
        if group is None:
            return self.rt.respond(on_done, SyncResult(errors.UNKNOWN_MEMBER_ID))
        error = group.validate_member(member_id, group_instance_id)
        if not error and generation_id != group.generation:
            error = errors.ILLEGAL_GENERATION
        if not error and (
            (protocol_type is not None and protocol_type != group.protocol_type)
            or (protocol_name is not None and protocol_name != group.protocol_name)
        ):
            error = errors.INCONSISTENT_GROUP_PROTOCOL
        if not error and group.state is GroupState.PREPARING_REBALANCE:
            error = errors.REBALANCE_IN_PROGRESS
        if error:
            return self.rt.respond(on_done, SyncResult(error))

        member = group.members[member_id]
        self._synced(group, member_id)
        if group.state is GroupState.STABLE:
            self.rt.schedule_session(group, member)
            return self.rt.respond(on_done, self._assignment_answer(group, member))
        # CompletingRebalance: wait for the leader's assignment.
        self._answer_sync(member, SyncResult(errors.REBALANCE_IN_PROGRESS))
        member.awaiting_sync = on_done
        if group.is_leader(member_id):
            self._install_assignment(group, dict(assignments))

    def _synced(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            self.rt.stop_timer(Deadline.SYNC, group.group_id)

    def _install_assignment(self, group: Group, assignments: dict[str, bytes]) -> None:
        """The leader's assignment arrived: persist it, hand it out, and go Stable.

        Members the leader left out get an empty assignment; ids it invented
        are ignored.
        """
        for member in group.members.values():
            member.assignment = assignments.get(member.member_id, b"")
        self.rt.write(group.group_id, [group_metadata_record(group)])
        group.state = GroupState.STABLE
        self._end_rebalance(group, Outcome.STABLE)
        for member in group.members.values():
            if member.awaiting_sync is not None:
                self._answer_sync(member, self._assignment_answer(group, member))
                self.rt.schedule_session(group, member)

    def _assignment_answer(self, group: Group, member: Member) -> SyncResult:
        return SyncResult(errors.NONE, group.protocol_type, group.protocol_name, member.assignment)

    def _answer_sync(self, member: Member, result: SyncResult) -> None:
        if member.awaiting_sync is not None:
            self.rt.respond(member.awaiting_sync, result)
            member.awaiting_sync = None

    def on_sync_deadline(self, group: Group) -> None:
        """Members given a generation did not SyncGroup within the rebalance timeout.

        Without this a leader that died between JoinGroup and SyncGroup would
        leave the group waiting forever. The laggards are removed and the
        group rebalances without them.
        """
        laggards = tuple(m for m in group.members if m in group.pending_sync)
        if not laggards:
            return
        for member_id in laggards:
            self._remove(group, member_id)
        self._prepare_rebalance(group, Trigger.SYNC_TIMEOUT, laggards, None)

    # --- Heartbeat ------------------------------------------------------------

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> HeartbeatResult:
        group = self.rt.groups.get(group_id)
        if group is None:
            return HeartbeatResult(errors.UNKNOWN_MEMBER_ID)
        error = group.validate_member(member_id, group_instance_id)
        if error:
            return HeartbeatResult(error)
        if generation_id != group.generation:
            return HeartbeatResult(errors.ILLEGAL_GENERATION)
        self.rt.schedule_session(group, group.members[member_id])
        if group.state is GroupState.PREPARING_REBALANCE:
            return HeartbeatResult(errors.REBALANCE_IN_PROGRESS)
        return HeartbeatResult(errors.NONE)

    def on_session_deadline(self, group: Group, member_id: str) -> None:
        member = group.members.get(member_id)
        if member is None:
            return
        if not member.is_new and (member.awaiting_join or member.awaiting_sync):
            # Waiting for a JoinGroup or SyncGroup answer counts as alive; the
            # session restarts when the answer goes out.
            return
        self._remove(group, member_id)
        self._after_removal(group, Trigger.SESSION_TIMEOUT, (member_id,), None)

    def on_pending_deadline(self, group: Group, member_id: str) -> None:
        """An id handed out with MEMBER_ID_REQUIRED was never used."""
        group.pending_members.discard(member_id)
        self._maybe_complete_join(group)

    # --- LeaveGroup -----------------------------------------------------------

    def leave(self, group_id: str, leaving: list[LeavingMember]) -> LeaveResult:
        group = self.rt.groups.get(group_id)
        if group is None:
            return LeaveResult(
                errors.NONE,
                tuple(
                    LeaveMemberResult(m.member_id, m.group_instance_id, errors.UNKNOWN_MEMBER_ID)
                    for m in leaving
                ),
            )
        results = []
        removed: list[str] = []
        for m in leaving:
            error, member_id = self._leave_one(group, m)
            if error == errors.NONE and member_id in group.members:
                self._remove(group, member_id)
                removed.append(member_id)
            results.append(LeaveMemberResult(m.member_id, m.group_instance_id, error))
        if removed:
            reason = next((m.reason for m in leaving if m.reason), None)
            self._after_removal(group, Trigger.MEMBER_LEAVE, tuple(removed), reason)
        else:
            self._maybe_complete_join(group)  # a pending id may have been withdrawn
        return LeaveResult(errors.NONE, tuple(results))

    def _leave_one(self, group: Group, m: LeavingMember) -> tuple[int, str]:
        """Who is leaving, or why they may not: (error, member id to remove)."""
        if m.group_instance_id is not None:
            current = group.static_members.get(m.group_instance_id)
            if current is None:
                return errors.UNKNOWN_MEMBER_ID, m.member_id
            # An admin removes a static member by instance id alone.
            if m.member_id not in (UNKNOWN_MEMBER_ID, current):
                return errors.FENCED_INSTANCE_ID, m.member_id
            return errors.NONE, current
        if m.member_id in group.pending_members:
            group.pending_members.discard(m.member_id)
            self.rt.stop_timer(Deadline.PENDING, group.group_id, m.member_id)
            return errors.NONE, m.member_id
        if m.member_id not in group.members:
            return errors.UNKNOWN_MEMBER_ID, m.member_id
        return errors.NONE, m.member_id

    # --- removing members -----------------------------------------------------

    def _remove(self, group: Group, member_id: str) -> None:
        """Takes a member out of the group, answering any call it is waiting on."""
        member = group.members[member_id]
        self._answer_waiting(member, errors.UNKNOWN_MEMBER_ID)
        group.remove(member_id)
        self.rt.stop_timer(Deadline.SESSION, group.group_id, member_id)

    def _answer_waiting(self, member: Member, error: int) -> None:
        if member.awaiting_join is not None:
            # UNKNOWN_MEMBER_ID with no id: a client still running joins afresh.
            member_id = UNKNOWN_MEMBER_ID if error == errors.UNKNOWN_MEMBER_ID else member.member_id
            self.rt.respond(member.awaiting_join, JoinResult(error, member_id))
            member.awaiting_join = None
        self._answer_sync(member, SyncResult(error))

    def _after_removal(
        self, group: Group, trigger: Trigger, member_ids: tuple[str, ...], reason: str | None
    ) -> None:
        if group.state is GroupState.PREPARING_REBALANCE:
            self._maybe_complete_join(group)
        elif group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, trigger, member_ids, reason)

    def answer_all(self, group: Group, error: int) -> None:
        """Answers every waiting call of the group, which is going away."""
        for member in group.members.values():
            self._answer_waiting(member, error)
