"""A classic group and its members: the state the coordinator keeps per group.

The rules that move a group between states live in
:mod:`moldau.group.membership`; this module holds the data and the questions
asked of it (who leads, which protocol wins, is everyone back).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from moldau.group import consumer_protocol, errors
from moldau.group._codec import DecodeError
from moldau.group.history import RebalanceRecord
from moldau.group.records import OffsetCommitValue
from moldau.group.results import JoinMember, JoinResult, SyncResult


class GroupState(StrEnum):
    """Kafka's classic group states, named as DescribeGroups and ListGroups show them.

    Empty: no members (offsets may remain). PreparingRebalance: waiting for the
    members to (re)join. CompletingRebalance: joined; waiting for the leader's
    assignment. Stable: everyone has an assignment and consumes. Dead: the
    group is gone (deleted, expired or moved to another coordinator).
    """

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


Protocols = Sequence[tuple[str, bytes]]
TopicPartition = tuple[str, int]


@dataclass(eq=False)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    #: (protocol name, metadata) in the member's order of preference.
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    #: Joined but has not had a JoinGroup answer yet (expires sooner, KIP-394).
    is_new: bool = False
    #: The pending JoinGroup / SyncGroup answer, while the member waits for one.
    awaiting_join: Callable[[JoinResult], None] | None = None
    awaiting_sync: Callable[[SyncResult], None] | None = None

    def supports(self, protocol: str) -> bool:
        return any(name == protocol for name, _ in self.protocols)

    def metadata(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        raise KeyError(protocol)

    def matches(self, protocols: Protocols) -> bool:
        """Same protocols, same order, same metadata: rejoining changes nothing."""
        return self.protocols == list(protocols)


@dataclass
class PendingTxnOffset:
    """An offset committed in an open transaction."""

    value: OffsetCommitValue
    #: A plain commit of the partition came after it, so it will not apply.
    superseded: bool = False


@dataclass(eq=False)
class Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    #: When the group last changed generation; offsets of an Empty group expire
    #: counting from here (Kafka's currentStateTimestamp).
    state_timestamp: int | None = None
    generation: int = 0
    #: None until a member joins: such a group only stores offsets ("simple").
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    #: group.instance.id -> member id of the static member holding it.
    static_members: dict[str, str] = field(default_factory=dict)
    #: Ids handed out with MEMBER_ID_REQUIRED whose owners have not joined yet.
    pending_members: set[str] = field(default_factory=set)
    #: Members of the current generation expected to send SyncGroup.
    pending_sync: set[str] = field(default_factory=set)
    offsets: dict[TopicPartition, OffsetCommitValue] = field(default_factory=dict)
    #: Offsets committed inside open transactions (TxnOffsetCommit), per
    #: producer id: applied when the transaction commits, dropped when it
    #: aborts, and meanwhile "unstable" to an OffsetFetch that requires
    #: stable offsets.
    pending_txn_offsets: dict[int, dict[TopicPartition, PendingTxnOffset]] = field(
        default_factory=dict
    )
    #: First rebalance of an Empty group: still inside group.initial.rebalance.delay.ms.
    in_initial_delay: bool = False
    new_member_added: bool = False
    initial_delay_budget_ms: int = 0
    #: Member ids of the current generation, to show what a rebalance changed.
    generation_members: tuple[str, ...] = ()
    rebalance: RebalanceRecord | None = None
    history: deque[RebalanceRecord] = field(default_factory=deque)

    # --- offsets --------------------------------------------------------------

    def set_offset(self, tp: TopicPartition, value: OffsetCommitValue) -> None:
        """A plain commit. It wins over transactional commits of ``tp``
        written before it, whenever their transactions end (Kafka compares
        the commits' log offsets; writes here are in log order)."""
        self.offsets[tp] = value
        for staged in self.pending_txn_offsets.values():
            if tp in staged:
                staged[tp].superseded = True

    def stage_txn_offset(
        self, producer_id: int, tp: TopicPartition, value: OffsetCommitValue
    ) -> None:
        """A commit inside ``producer_id``'s open transaction."""
        self.pending_txn_offsets.setdefault(producer_id, {})[tp] = PendingTxnOffset(value)

    def complete_txn(self, producer_id: int, committed: bool) -> bool:
        """``producer_id``'s transaction ended: its offsets become the
        group's (where no later plain commit superseded them) or are
        dropped. Whether it had any here."""
        staged = self.pending_txn_offsets.pop(producer_id, None)
        if staged is None:
            return False
        if committed:
            for tp, pending in staged.items():
                if not pending.superseded:
                    self.offsets[tp] = pending.value
        return True

    def has_pending_txn_offset(self, tp: TopicPartition) -> bool:
        return any(tp in staged for staged in self.pending_txn_offsets.values())

    @property
    def has_offsets(self) -> bool:
        """Committed or pending in a transaction: an Empty group with either stays."""
        return bool(self.offsets or self.pending_txn_offsets)

    # --- membership -----------------------------------------------------------

    def add(self, member: Member, protocol_type: str) -> None:
        """Adds a member; the first member of a group leads it and sets its type."""
        if not self.members:
            self.protocol_type = protocol_type
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id

    def remove(self, member_id: str) -> Member:
        """Removes a member; a leader that leaves passes the lead to the oldest member."""
        member = self.members.pop(member_id)
        if member.group_instance_id is not None:
            self.static_members.pop(member.group_instance_id, None)
        self.pending_sync.discard(member_id)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        return member

    def replace_static_member(self, old_id: str, new_id: str) -> Member:
        """Hands a static member's place (assignment, leadership) to a new member id."""
        member = self.members[old_id]
        member.member_id = new_id
        # Same place in the order: who leads next if the leader leaves depends on it.
        self.members = {m.member_id: m for m in self.members.values()}
        assert member.group_instance_id is not None
        self.static_members[member.group_instance_id] = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        if self.leader_id == old_id:
            self.leader_id = new_id
        return member

    def validate_member(self, member_id: str, group_instance_id: str | None) -> int:
        """Kafka's check of who is asking: a stale id of a static instance is
        fenced (FENCED_INSTANCE_ID), an id the group does not know is unknown."""
        if group_instance_id is not None:
            current = self.static_members.get(group_instance_id)
            if current is None:
                return errors.UNKNOWN_MEMBER_ID
            if current != member_id:
                return errors.FENCED_INSTANCE_ID
        if member_id not in self.members:
            return errors.UNKNOWN_MEMBER_ID
        return errors.NONE

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    @property
    def rebalance_timeout_ms(self) -> int:
        """The longest rebalance timeout among the members: how long a join waits."""
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def all_members_joined(self) -> bool:
        """Every member has rejoined and no id handed out is still outstanding."""
        return not self.pending_members and all(
            m.awaiting_join is not None for m in self.members.values()
        )

    def elect_joined_leader(self) -> bool:
        """Keeps the leader if it rejoined, else picks one that did. False if none did."""
        leader = self.members.get(self.leader_id or "")
        if leader is not None and leader.awaiting_join is not None:
            return True
        for member in self.members.values():
            if member.awaiting_join is not None:
                self.leader_id = member.member_id
                return True
        return False

    # --- protocols ------------------------------------------------------------

    def asks_the_same(self, member: Member, protocols: Protocols) -> bool:
        """Whether a restarted static member asks for what it had, under the
        protocol the group uses: it still offers that protocol and, in a
        consumer group, subscribes to the same topics from the same rack.

        What a restart changes by itself does not count: the partitions and
        generation a cooperative client says it owns (none, after a restart),
        an assignor's user data, and the other protocols it offers (a group
        read back from ``__consumer_offsets`` knows only each member's chosen
        one). The member gets back the assignment it had, so nothing it asks
        for is lost; Kafka does not rebalance for these either.
        """
        chosen = self.protocol_name
        offered = dict(protocols)
        if chosen is None or chosen not in offered or not member.supports(chosen):
            return False
        before, now = member.metadata(chosen), offered[chosen]
        if before == now:
            return True
        if self.protocol_type != consumer_protocol.PROTOCOL_TYPE:
            return False
        try:
            old, new = (consumer_protocol.decode_subscription(m) for m in (before, now))
        except DecodeError:
            return False
        return (sorted(old.topics), old.rack_id) == (sorted(new.topics), new.rack_id)

    def supports_protocols(self, protocol_type: str, protocols: Protocols, member_id: str) -> bool:
        """Whether a member may (re)join with these protocols.

        An empty group takes any non-empty offer. Otherwise the protocol type
        must be the group's (even for its only member, as in Kafka: a consumer
        group does not turn into a connect group by a rejoin) and at least one
        offered protocol must be one every other member also supports, or no
        protocol could ever be chosen.
        """
        if not protocol_type or not protocols:
            return False
        if not self.members:
            return True
        if protocol_type != self.protocol_type:
            return False
        others = [m for m in self.members.values() if m.member_id != member_id]
        return any(all(m.supports(name) for m in others) for name, _ in protocols)

    def select_protocol(self) -> str:
        """Kafka's vote: among the protocols every member supports, each member
        votes for the one it prefers most; the most votes wins. Ties go to the
        leader's preference (Kafka leaves them to hash order)."""
        assert self.leader_id is not None
        leader = self.members[self.leader_id]
        candidates = [
            name
            for name, _ in leader.protocols
            if all(m.supports(name) for m in self.members.values())
        ]
        votes = Counter(
            next(name for name, _ in m.protocols if name in candidates)
            for m in self.members.values()
        )
        return max(candidates, key=lambda name: (votes[name], -candidates.index(name)))

    def join_members(self) -> tuple[JoinMember, ...]:
        """The member list the leader receives, with metadata for the chosen protocol."""
        assert self.protocol_name is not None
        return tuple(
            JoinMember(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        )

    def subscribed_topics(self) -> set[str] | None:
        """The topics the members consume, or None when that cannot be known.

        Only groups of protocol type "consumer" have readable subscriptions;
        for any other group, or an unreadable subscription, the answer is None
        and callers must assume every topic is in use.
        """
        if self.protocol_type != consumer_protocol.PROTOCOL_TYPE or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            try:
                metadata = member.metadata(self.protocol_name)
                topics.update(consumer_protocol.decode_subscription(metadata).topics)
            except (KeyError, DecodeError):
                return None
        return topics
