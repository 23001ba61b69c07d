"""Kafka's key and value formats for the records of ``__consumer_offsets``.

The coordinator's state lives in this compacted topic, written in exactly the
layout Apache Kafka writes, so Kafka's own tools (the offsets message
formatter, ``kafka-dump-log --offsets-decoder``) read a moldau log, and a log
written by Kafka loads here.

A key starts with an int16 that names the record type (Kafka calls it the key
version): 0 and 1 are an offset commit (group, topic, partition), 2 is a
group's metadata (group). Other types belong to Kafka's newer group protocols
and are reported as :class:`UnknownRecordType`. A value starts with its own
int16 version. A null value is a tombstone: compaction then forgets the key.

We write OffsetCommitValue v3 and GroupMetadataValue v3, the versions Kafka
2.3+ writes, and read every version up to the flexible v4:

OffsetCommitValue
    v0, v2: offset int64, metadata string, commitTimestamp int64
    v1: as v0, then expireTimestamp int64 (old explicit retention)
    v3: offset int64, leaderEpoch int32, metadata string, commitTimestamp int64
    v4: v3 in the flexible encoding
GroupMetadataValue
    protocolType string, generation int32, protocol string?, leader string?,
    currentStateTimestamp int64 (v2+), members array of:
    memberId string, groupInstanceId string? (v3+), clientId string,
    clientHost string, rebalanceTimeout int32 (v1+), sessionTimeout int32,
    subscription bytes, assignment bytes. v4 is v3 in the flexible encoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from moldau.group._codec import DecodeError, Reader, Writer

OFFSET_COMMIT_KEY_VERSION = 1
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_VALUE_VERSION = 3
GROUP_METADATA_VALUE_VERSION = 3
_FLEXIBLE_VALUE_VERSION = 4


class UnknownRecordType(DecodeError):
    """A key of a record type the classic group coordinator does not use."""


@dataclass(frozen=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True)
class GroupMetadataKey:
    group: str


RecordKey = OffsetCommitKey | GroupMetadataKey


@dataclass(frozen=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    #: Only in v1, written by Kafka for requests that set an explicit retention.
    expire_timestamp: int = -1


@dataclass(frozen=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    #: The member's metadata for the group's chosen protocol.
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int
    members: tuple[MemberMetadata, ...]


RecordValue = OffsetCommitValue | GroupMetadataValue


def encode_key(key: RecordKey) -> bytes:
    if isinstance(key, OffsetCommitKey):
        w = Writer().int16(OFFSET_COMMIT_KEY_VERSION).string(key.group).string(key.topic)
        return w.int32(key.partition).getvalue()
    return Writer().int16(GROUP_METADATA_KEY_VERSION).string(key.group).getvalue()


def decode_key(data: bytes) -> RecordKey:
    r = Reader(data)
    version = r.int16()
    if version in (0, 1):
        return OffsetCommitKey(r.string(), r.string(), r.int32())
    if version == GROUP_METADATA_KEY_VERSION:
        return GroupMetadataKey(r.string())
    raise UnknownRecordType(f"record key type {version}")


def encode_value(value: RecordValue) -> bytes:
    if isinstance(value, OffsetCommitValue):
        w = Writer().int16(OFFSET_COMMIT_VALUE_VERSION).int64(value.offset)
        w.int32(value.leader_epoch).string(value.metadata).int64(value.commit_timestamp)
        return w.getvalue()
    w = Writer().int16(GROUP_METADATA_VALUE_VERSION).string(value.protocol_type)
    w.int32(value.generation).string(value.protocol).string(value.leader)
    w.int64(value.current_state_timestamp).array(value.members, _write_member)
    return w.getvalue()


def _write_member(w: Writer, m: MemberMetadata) -> None:
    w.string(m.member_id).string(m.group_instance_id).string(m.client_id).string(m.client_host)
    w.int32(m.rebalance_timeout).int32(m.session_timeout)
    w.bytes(m.subscription).bytes(m.assignment)


def decode_value(key: RecordKey, data: bytes) -> RecordValue:
    """Decodes the value stored under ``key`` (the key says which format it is)."""
    version = Reader(data).int16()
    if not 0 <= version <= _FLEXIBLE_VALUE_VERSION:
        raise DecodeError(f"unsupported value version {version} for {type(key).__name__}")
    r = Reader(data[2:], flexible=version >= _FLEXIBLE_VALUE_VERSION)
    value: RecordValue
    if isinstance(key, OffsetCommitKey):
        value = _read_offset_commit(r, version)
    else:
        value = _read_group_metadata(r, version)
    r.end_struct()
    return value


def _read_offset_commit(r: Reader, version: int) -> OffsetCommitValue:
    offset = r.int64()
    leader_epoch = r.int32() if version >= 3 else -1
    metadata = r.string()
    commit_timestamp = r.int64()
    expire_timestamp = r.int64() if version == 1 else -1
    return OffsetCommitValue(offset, leader_epoch, metadata, commit_timestamp, expire_timestamp)


def _read_group_metadata(r: Reader, version: int) -> GroupMetadataValue:
    protocol_type = r.string()
    generation = r.int32()
    protocol = r.nullable_string()
    leader = r.nullable_string()
    state_timestamp = r.int64() if version >= 2 else -1
    members = r.array(lambda r: _read_member(r, version))
    return GroupMetadataValue(
        protocol_type, generation, protocol, leader, state_timestamp, tuple(members)
    )


def _read_member(r: Reader, version: int) -> MemberMetadata:
    member_id = r.string()
    instance_id = r.nullable_string() if version >= 3 else None
    client_id = r.string()
    client_host = r.string()
    rebalance_timeout = r.int32() if version >= 1 else -1
    session_timeout = r.int32()
    subscription = r.bytes()
    assignment = r.bytes()
    r.end_struct()
    if rebalance_timeout < 0:  # v0 had none; Kafka then used the session timeout
        rebalance_timeout = session_timeout
    return MemberMetadata(
        member_id,
        instance_id,
        client_id,
        client_host,
        rebalance_timeout,
        session_timeout,
        subscription,
        assignment,
    )
