"""Byte layouts: __consumer_offsets keys and values, the consumer protocol,
and the group -> partition mapping, checked against bytes built by hand from
Kafka's format descriptions (and hashes computed by a JVM)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moldau.group import partition_for_group
from moldau.group._codec import DecodeError
from moldau.group.consumer_protocol import (
    Assignment,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from moldau.group.placement import java_string_hash
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


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def s(v: str | None) -> bytes:
    return i16(-1) if v is None else i16(len(v.encode())) + v.encode()


def b(v: bytes | None) -> bytes:
    return i32(-1) if v is None else i32(len(v)) + v


def cs(v: str | None) -> bytes:
    """A compact (flexible) string: unsigned varint length + 1."""
    return b"\x00" if v is None else bytes([len(v.encode()) + 1]) + v.encode()


# --- group -> partition ---------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "java_hash", "partition"),
    [
        ("", 0, 0),
        ("a", 97, 47),
        ("hello", 99162322, 22),
        ("Aa", 2112, 12),
        ("my-group", -1906497762, 36),  # negative: abs is x & 0x7fffffff, not -x
        ("polygenelubricants", -(2**31), 0),  # Integer.MIN_VALUE
        ("\U0001f600", 1772899, 49),  # outside the BMP: two UTF-16 code units
        ("grüße-日本", 346453725, 25),
    ],
)
def test_partition_for_group_matches_java(group: str, java_hash: int, partition: int) -> None:
    assert java_string_hash(group) == java_hash
    assert partition_for_group(group, 50) == partition


# --- keys -----------------------------------------------------------------------


def test_offset_commit_key_v1_layout() -> None:
    expected = i16(1) + s("grp") + s("orders") + i32(7)
    assert encode_key(OffsetCommitKey("grp", "orders", 7)) == expected
    assert decode_key(expected) == OffsetCommitKey("grp", "orders", 7)


def test_offset_commit_key_v0_reads_the_same() -> None:
    assert decode_key(i16(0) + s("g") + s("t") + i32(1)) == OffsetCommitKey("g", "t", 1)


def test_group_metadata_key_layout() -> None:
    assert encode_key(GroupMetadataKey("grp")) == i16(2) + s("grp")
    assert decode_key(i16(2) + s("grp")) == GroupMetadataKey("grp")


def test_keys_of_other_record_types_are_unknown() -> None:
    with pytest.raises(UnknownRecordType):
        decode_key(i16(3) + s("grp"))


def test_truncated_key_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_key(i16(1) + s("grp") + i16(10) + b"abc")


# --- OffsetCommitValue ----------------------------------------------------------

KEY = OffsetCommitKey("g", "t", 0)


def test_offset_commit_value_v3_layout() -> None:
    value = OffsetCommitValue(offset=1234, leader_epoch=9, metadata="meta", commit_timestamp=555)
    expected = i16(3) + i64(1234) + i32(9) + s("meta") + i64(555)
    assert encode_value(value) == expected
    assert decode_value(KEY, expected) == value


@pytest.mark.parametrize("version", [0, 2])
def test_offset_commit_value_v0_and_v2(version: int) -> None:
    data = i16(version) + i64(10) + s("m") + i64(20)
    assert decode_value(KEY, data) == OffsetCommitValue(10, -1, "m", 20)


def test_offset_commit_value_v1_has_an_expire_timestamp() -> None:
    data = i16(1) + i64(10) + s("m") + i64(20) + i64(30)
    assert decode_value(KEY, data) == OffsetCommitValue(10, -1, "m", 20, expire_timestamp=30)


def test_offset_commit_value_v4_is_flexible() -> None:
    tagged = b"\x01" + b"\x05" + b"\x02" + b"zz"  # one unknown tagged field, skipped
    data = i16(4) + i64(10) + i32(2) + cs("m") + i64(20) + tagged
    assert decode_value(KEY, data) == OffsetCommitValue(10, 2, "m", 20)


def test_unsupported_value_version() -> None:
    with pytest.raises(DecodeError):
        decode_value(KEY, i16(5) + i64(1))


# --- GroupMetadataValue ---------------------------------------------------------

MEMBER = MemberMetadata(
    member_id="c-1",
    group_instance_id="i-1",
    client_id="c",
    client_host="/10.0.0.1",
    rebalance_timeout=300000,
    session_timeout=45000,
    subscription=b"\x00\x01sub",
    assignment=b"asg",
)
GROUP = GroupMetadataValue(
    protocol_type="consumer",
    generation=5,
    protocol="range",
    leader="c-1",
    current_state_timestamp=1_700_000_000_000,
    members=(MEMBER,),
)


def test_group_metadata_value_v3_layout() -> None:
    member = (
        s("c-1") + s("i-1") + s("c") + s("/10.0.0.1")
        + i32(300000) + i32(45000) + b(b"\x00\x01sub") + b(b"asg")
    )  # fmt: skip
    expected = (
        i16(3) + s("consumer") + i32(5) + s("range") + s("c-1")
        + i64(1_700_000_000_000) + i32(1) + member
    )  # fmt: skip
    assert encode_value(GROUP) == expected
    assert decode_value(GroupMetadataKey("g"), expected) == GROUP


def test_empty_group_metadata_has_null_protocol_and_leader() -> None:
    empty = GroupMetadataValue("consumer", 6, None, None, 42, ())
    expected = i16(3) + s("consumer") + i32(6) + s(None) + s(None) + i64(42) + i32(0)
    assert encode_value(empty) == expected
    assert decode_value(GroupMetadataKey("g"), expected) == empty


def test_group_metadata_value_v0_has_no_rebalance_timeout_timestamp_or_instance() -> None:
    member = s("m") + s("c") + s("h") + i32(10000) + b(b"s") + b(b"a")
    data = i16(0) + s("consumer") + i32(1) + s("range") + s("m") + i32(1) + member
    decoded = decode_value(GroupMetadataKey("g"), data)
    member_value = MemberMetadata("m", None, "c", "h", 10000, 10000, b"s", b"a")
    assert decoded == GroupMetadataValue("consumer", 1, "range", "m", -1, (member_value,))


def test_group_metadata_value_v2_has_a_timestamp_but_no_instance() -> None:
    member = s("m") + s("c") + s("h") + i32(20000) + i32(10000) + b(b"s") + b(b"a")
    data = i16(2) + s("consumer") + i32(1) + s("range") + s("m") + i64(7) + i32(1) + member
    decoded = decode_value(GroupMetadataKey("g"), data)
    assert isinstance(decoded, GroupMetadataValue)
    assert decoded.current_state_timestamp == 7
    assert decoded.members[0] == MemberMetadata("m", None, "c", "h", 20000, 10000, b"s", b"a")


def test_group_metadata_value_v4_is_flexible() -> None:
    member = (
        cs("m") + cs(None) + cs("c") + cs("h") + i32(20000) + i32(10000)
        + b"\x02s" + b"\x02a" + b"\x00"
    )  # fmt: skip
    data = (
        i16(4) + cs("consumer") + i32(1) + cs("range") + cs("m") + i64(7)
        + b"\x02" + member + b"\x00"
    )  # fmt: skip
    decoded = decode_value(GroupMetadataKey("g"), data)
    member_value = MemberMetadata("m", None, "c", "h", 20000, 10000, b"s", b"a")
    assert decoded == GroupMetadataValue("consumer", 1, "range", "m", 7, (member_value,))


def test_absurd_member_count_is_a_decode_error_not_an_allocation() -> None:
    data = i16(3) + s("consumer") + i32(1) + s(None) + s(None) + i64(0) + i32(2**31 - 1)
    with pytest.raises(DecodeError):
        decode_value(GroupMetadataKey("g"), data)


texts = st.text(max_size=20)
members = st.builds(
    MemberMetadata,
    texts,
    st.none() | texts,
    texts,
    texts,
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**31 - 1),
    st.binary(max_size=30),
    st.binary(max_size=30),
)


@given(
    st.builds(
        GroupMetadataValue,
        texts,
        st.integers(-(2**31), 2**31 - 1),
        st.none() | texts,
        st.none() | texts,
        st.integers(-1, 2**62),
        st.lists(members, max_size=4).map(tuple),
    )
)
def test_group_metadata_round_trip(value: GroupMetadataValue) -> None:
    assert decode_value(GroupMetadataKey("g"), encode_value(value)) == value


@given(
    st.builds(
        OffsetCommitValue,
        st.integers(-1, 2**63 - 1),
        st.integers(-1, 2**31 - 1),
        texts,
        st.integers(-1, 2**62),
    )
)
def test_offset_commit_round_trip(value: OffsetCommitValue) -> None:
    assert decode_value(KEY, encode_value(value)) == value


# --- consumer protocol ----------------------------------------------------------


def topic_partitions(topic: str, *partitions: int) -> bytes:
    return s(topic) + i32(len(partitions)) + b"".join(i32(p) for p in partitions)


def test_subscription_v0_layout() -> None:
    data = i16(0) + i32(2) + s("a") + s("b") + b(None)
    assert decode_subscription(data) == Subscription(("a", "b"), version=0)
    assert encode_subscription(Subscription(("a", "b"), version=0)) == data


def test_subscription_v3_layout() -> None:
    data = (
        i16(3) + i32(1) + s("orders") + b(b"ud")
        + i32(1) + topic_partitions("orders", 0, 2)
        + i32(4) + s("rack-a")
    )  # fmt: skip
    expected = Subscription(("orders",), b"ud", (("orders", (0, 2)),), 4, "rack-a", 3)
    assert decode_subscription(data) == expected
    assert encode_subscription(expected) == data


def test_subscription_of_a_newer_version_reads_as_the_newest_known() -> None:
    data = i16(9) + i32(0) + b(None) + i32(0) + i32(-1) + s(None) + b"future fields"
    assert decode_subscription(data).topics == ()
    assert decode_subscription(data).version == 9


def test_assignment_layout() -> None:
    data = i16(1) + i32(2) + topic_partitions("a", 0) + topic_partitions("b", 1, 2) + b(b"x")
    expected = Assignment((("a", (0,)), ("b", (1, 2))), b"x", 1)
    assert decode_assignment(data) == expected
    assert encode_assignment(expected) == data


def test_garbage_is_a_decode_error() -> None:
    for data in (b"", b"\xff\xff", i16(0) + i32(5)):
        with pytest.raises(DecodeError):
            decode_subscription(data)


tps = st.lists(
    st.tuples(texts, st.lists(st.integers(0, 2**31 - 1), max_size=4).map(tuple)), max_size=3
).map(tuple)


@given(
    st.builds(
        Subscription,
        st.lists(texts, max_size=4).map(tuple),
        st.none() | st.binary(max_size=10),
        tps,
        st.integers(-1, 100),
        st.none() | texts,
    )
)
def test_subscription_round_trip(sub: Subscription) -> None:
    assert decode_subscription(encode_subscription(sub)) == sub


@given(st.builds(Assignment, tps, st.none() | st.binary(max_size=10)))
def test_assignment_round_trip(assignment: Assignment) -> None:
    assert decode_assignment(encode_assignment(assignment)) == assignment


def test_flexible_lengths_beyond_one_varint_byte() -> None:
    metadata = "m" * 200
    data = i16(4) + i64(1) + i32(0) + bytes([0xC9, 0x01]) + metadata.encode() + i64(2) + b"\x00"
    assert decode_value(KEY, data) == OffsetCommitValue(1, 0, metadata, 2)


def test_overlong_varint_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_value(KEY, i16(4) + i64(1) + i32(0) + b"\xff" * 6)


@pytest.mark.parametrize(
    "data",
    [
        i16(0) + s("m") + s(None),  # offset commit key: null topic
        i16(2) + b"\xff\xfe",  # group key: negative string length
    ],
)
def test_null_or_negative_where_a_value_is_required(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_key(data)


def test_null_bytes_or_array_where_required() -> None:
    null_members = i16(3) + s("consumer") + i32(1) + s(None) + s(None) + i64(0) + i32(-1)
    with pytest.raises(DecodeError):
        decode_value(GroupMetadataKey("g"), null_members)
    member = s("m") + s(None) + s("c") + s("h") + i32(1) + i32(1) + b(None) + b(b"")
    null_subscription = i16(3) + s("consumer") + i32(1) + s(None) + s(None) + i64(0) + i32(1)
    with pytest.raises(DecodeError):
        decode_value(GroupMetadataKey("g"), null_subscription + member)


def test_strings_must_be_utf8() -> None:
    with pytest.raises(DecodeError):
        decode_key(i16(2) + i16(2) + b"\xc3\x28")
