"""Group state to ``__consumer_offsets`` records and back.

Every change that must survive a restart or a coordinator move becomes a
record: a committed offset, a group's metadata after a generation completes,
a tombstone when something is deleted. Loading a partition replays its records
in order; the last record of each key wins, exactly as after compaction, so
replaying a compacted log gives the same groups as replaying the full one.

A group's metadata record is written when the leader's assignment arrives,
when the group becomes Empty, and when a static member takes its place back
under a new member id. A loaded group with members is Stable (the members
keep their assignment and must heartbeat within their session timeout), one
without is Empty.
"""

from __future__ import annotations

from moldau.group.model import Group, GroupState, Member, TopicPartition
from moldau.group.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    UnknownRecordType,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from moldau.group.runtime import Record, Runtime


def group_metadata_record(group: Group) -> Record:
    protocol = group.protocol_name
    members = tuple(
        MemberMetadata(
            member_id=m.member_id,
            group_instance_id=m.group_instance_id,
            client_id=m.client_id,
            client_host=m.client_host,
            rebalance_timeout=m.rebalance_timeout_ms,
            session_timeout=m.session_timeout_ms,
            subscription=m.metadata(protocol) if protocol is not None else b"",
            assignment=m.assignment,
        )
        for m in group.members.values()
    )
    value = GroupMetadataValue(
        protocol_type=group.protocol_type or "",
        generation=group.generation,
        protocol=protocol,
        leader=group.leader_id,
        current_state_timestamp=-1 if group.state_timestamp is None else group.state_timestamp,
        members=members,
    )
    return encode_key(GroupMetadataKey(group.group_id)), encode_value(value)


def group_tombstone(group_id: str) -> Record:
    return encode_key(GroupMetadataKey(group_id)), None


def offset_record(group_id: str, tp: TopicPartition, value: OffsetCommitValue) -> Record:
    return encode_key(OffsetCommitKey(group_id, *tp)), encode_value(value)


def offset_tombstone(group_id: str, tp: TopicPartition) -> Record:
    return encode_key(OffsetCommitKey(group_id, *tp)), None


def replay(rt: Runtime, key: bytes, value: bytes | None, producer_id: int = -1) -> None:
    """Applies one record of ``__consumer_offsets`` to the groups of ``rt``;
    ``producer_id`` names the transaction it was written in (-1: none), whose
    marker later applies or drops it.

    Records of Kafka's newer group types are skipped; a malformed record
    raises :class:`moldau.group._codec.DecodeError`. No timers are started:
    the caller does that once the whole partition is loaded.
    """
    try:
        record_key = decode_key(key)
    except UnknownRecordType:
        return
    gid = record_key.group
    group = rt.groups.get(gid)
    if isinstance(record_key, OffsetCommitKey):
        tp = (record_key.topic, record_key.partition)
        if value is None:
            if group is not None:
                group.offsets.pop(tp, None)
            return
        committed = decode_value(record_key, value)
        assert isinstance(committed, OffsetCommitValue)
        if group is None:
            group = rt.groups[gid] = rt.new_group(gid)
        if producer_id >= 0:
            group.stage_txn_offset(producer_id, tp, committed)
        else:
            group.set_offset(tp, committed)
        return
    if value is None:
        if group is not None:
            _forget_metadata(rt, group)
        return
    metadata = decode_value(record_key, value)
    assert isinstance(metadata, GroupMetadataValue)
    if group is None:
        group = rt.groups[gid] = rt.new_group(gid)
    _apply_metadata(group, metadata)


def _forget_metadata(rt: Runtime, group: Group) -> None:
    """A group tombstone: the group is gone, though offsets written after it stay."""
    if group.has_offsets:
        fresh = rt.new_group(group.group_id)
        fresh.offsets = group.offsets
        fresh.pending_txn_offsets = group.pending_txn_offsets
        rt.groups[group.group_id] = fresh
    else:
        del rt.groups[group.group_id]


def _apply_metadata(group: Group, value: GroupMetadataValue) -> None:
    group.members = {}
    group.static_members = {}
    protocols = [] if value.protocol is None else [value.protocol]
    for m in value.members:
        member = Member(
            member_id=m.member_id,
            group_instance_id=m.group_instance_id,
            client_id=m.client_id,
            client_host=m.client_host,
            rebalance_timeout_ms=m.rebalance_timeout,
            session_timeout_ms=m.session_timeout,
            protocols=[(name, m.subscription) for name in protocols],
            assignment=m.assignment,
        )
        group.add(member, value.protocol_type)
    group.protocol_type = value.protocol_type or None
    group.generation = value.generation
    group.protocol_name = value.protocol
    group.leader_id = value.leader
    ts = value.current_state_timestamp
    group.state_timestamp = None if ts < 0 else ts
    group.generation_members = tuple(group.members)
    group.state = GroupState.STABLE if group.members else GroupState.EMPTY
