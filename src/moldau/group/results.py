"""What the coordinator hands back: one small frozen dataclass per answer.

Each carries an ``error_code`` (see :mod:`moldau.group.errors`) plus the fields
the wire response needs, so a request handler only copies fields. A few input
shapes used by several requests live here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from moldau.group import errors

UNKNOWN_GENERATION = -1


@dataclass(frozen=True)
class JoinMember:
    """One member as the leader sees it in its JoinGroup response."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True)
class JoinResult:
    """The JoinGroup response.

    Only the leader receives ``members``. ``skip_assignment`` (JoinGroup v9,
    KIP-814) is set when a static leader came back without a rebalance: it
    gets the members so it can notice changed subscriptions, but must not
    compute a new assignment. JoinGroup v8 and older cannot say "skip": Kafka
    answers such a leader as a follower, with no members and its previous
    member id (``replaced_leader``) as the leader, so that it syncs and gets
    its assignment back; a client told it leads a group of nobody would
    assign nothing and rejoin, a rebalance. The handler does that.
    """

    error_code: int
    member_id: str
    generation_id: int = UNKNOWN_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    members: tuple[JoinMember, ...] = ()
    replaced_leader: str = ""


@dataclass(frozen=True)
class SyncResult:
    error_code: int
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True)
class HeartbeatResult:
    error_code: int


@dataclass(frozen=True)
class LeavingMember:
    """One member named in a LeaveGroup request (v0-2 name exactly one)."""

    member_id: str
    group_instance_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class LeaveMemberResult:
    member_id: str
    group_instance_id: str | None
    error_code: int


@dataclass(frozen=True)
class LeaveResult:
    """``error_code`` is the request's; each member also has its own.

    LeaveGroup v0-2 have only the top-level code: the handler should send the
    member's code when the top-level one is NONE.
    """

    error_code: int
    members: tuple[LeaveMemberResult, ...] = ()


@dataclass(frozen=True)
class OffsetCommitPartition:
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""
    #: OffsetCommit v1's commit time; -1 (every other version): now.
    commit_timestamp: int = -1


@dataclass(frozen=True)
class PartitionResult:
    topic: str
    partition: int
    error_code: int


@dataclass(frozen=True)
class OffsetCommitResult:
    """``error_code`` is set when the whole request failed; Kafka's response has
    no such field, so every partition carries it as well."""

    error_code: int
    partitions: tuple[PartitionResult, ...] = ()


@dataclass(frozen=True)
class FetchedOffset:
    """A committed offset; -1 and empty metadata when none was committed."""

    topic: str
    partition: int
    offset: int = -1
    leader_epoch: int = -1
    metadata: str = ""
    error_code: int = errors.NONE


@dataclass(frozen=True)
class OffsetFetchResult:
    error_code: int
    partitions: tuple[FetchedOffset, ...] = ()


@dataclass(frozen=True)
class OffsetDeleteResult:
    error_code: int
    partitions: tuple[PartitionResult, ...] = ()


@dataclass(frozen=True)
class MemberDescription:
    """A member as DescribeGroups shows it; metadata and assignment are only
    filled in while the group is Stable, as in Kafka."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupDescription:
    """DescribeGroups' view of a group; ``generation_id`` and ``leader`` are
    extra (not on the wire) for ``moldau groups describe``."""

    error_code: int
    group_id: str
    state: str
    protocol_type: str = ""
    protocol: str = ""
    members: tuple[MemberDescription, ...] = ()
    generation_id: int = UNKNOWN_GENERATION
    leader: str = ""


@dataclass(frozen=True)
class ListedGroup:
    group_id: str
    protocol_type: str
    state: str


@dataclass(frozen=True)
class ListGroupsResult:
    error_code: int
    groups: tuple[ListedGroup, ...] = ()


@dataclass(frozen=True)
class DeleteGroupResult:
    group_id: str
    error_code: int
