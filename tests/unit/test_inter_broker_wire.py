"""The controller's requests on the wire: LeaderAndIsr, StopReplica,
UpdateMetadata, ControlledShutdown (no kio schema: ours, from Kafka 3.9's JSON
definitions) and AlterPartition.

The schemas are checked against byte strings written by hand from Kafka's
field order (not from our encoder), and every version roundtrips; the
translation of ``cluster.wire`` is checked as a property: a command sent as
bytes decodes to the same command, up to what the wire does not carry.
"""

from __future__ import annotations

import dataclasses
import random
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moldau.cluster import wire
from moldau.cluster.controller.alter_partition import AlterPartitionItem
from moldau.cluster.controller.batch import Batch, render
from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    AlterPartitionResult,
    ControlledShutdownReply,
    LeaderAndIsr,
    PartitionLeadership,
    StopReplica,
    StopReplicaPartition,
    UpdateMetadata,
)
from moldau.cluster.controller.context import ControllerContext, LiveBroker
from moldau.cluster.controller.events import AlterPartition, StopReplicaResult
from moldau.cluster.zk.paths import Endpoint, PartitionState
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.codegen import compile_decoder, compile_encoder
from moldau.protocol.errors import ErrorCode
from moldau.protocol.messages import (
    decode_request,
    decode_request_header,
    decode_response,
    encode_request,
    encode_response,
)
from moldau.protocol.schema import StructSpec, known_versions, message_spec

# --------------------------------------------------------------------------- hand-written bytes


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def cstr(text: str | None) -> bytes:
    """A compact (nullable) string."""
    if text is None:
        return b"\x00"
    return uvarint(len(text.encode()) + 1) + text.encode()


def carr(*items: bytes) -> bytes:
    """A compact array."""
    return uvarint(len(items) + 1) + b"".join(items)


def i32s(*values: int) -> bytes:
    return carr(*(struct.pack(">i", v) for v in values))


NO_TAGS = b"\x00"
TOPIC_ID = uuid.UUID("0123456789abcdef0123456789abcdef")


def pack(fmt: str, *values: Any) -> bytes:
    return struct.pack(">" + fmt, *values)


def test_leader_and_isr_v7_frame_matches_kafkas_field_order() -> None:
    body = {
        "controller_id": 1,
        "controller_epoch": 5,
        "broker_epoch": 77,
        "topic_states": [
            {
                "topic_name": "t",
                "topic_id": TOPIC_ID,
                "partition_states": [
                    {
                        "partition_index": 0,
                        "controller_epoch": 4,
                        "leader": 2,
                        "leader_epoch": 3,
                        "isr": [2, 1],
                        "partition_epoch": 9,
                        "replicas": [2, 1],
                        "is_new": True,
                        "leader_recovery_state": 1,
                    }
                ],
            }
        ],
        "live_leaders": [{"broker_id": 2, "host_name": "h", "port": 9092}],
    }
    partition = (
        pack("iiii", 0, 4, 2, 3)  # partition_index, controller_epoch, leader, leader_epoch
        + i32s(2, 1)  # isr
        + pack("i", 9)  # partition_epoch
        + i32s(2, 1)  # replicas
        + carr()  # adding_replicas
        + carr()  # removing_replicas
        + b"\x01"  # is_new
        + b"\x01"  # leader_recovery_state
        + NO_TAGS
    )
    expected_body = (
        pack("i", 1)  # controller_id
        + b"\x00"  # is_kraft_controller
        + pack("i", 5)  # controller_epoch
        + pack("q", 77)  # broker_epoch
        + b"\x00"  # type
        + carr(cstr("t") + TOPIC_ID.bytes + carr(partition) + NO_TAGS)
        + carr(pack("i", 2) + cstr("h") + pack("i", 9092) + NO_TAGS)
        + NO_TAGS
    )
    # Request header v2: api key, version, correlation id, client id (a
    # classic nullable string even in flexible versions), tagged fields.
    header = pack("hhi", 4, 7, 42) + pack("h", 1) + b"c" + NO_TAGS
    frame = encode_request(4, 7, 42, "c", body)
    assert frame == pack("i", len(header) + len(expected_body)) + header + expected_body
    parsed, pos = decode_request_header(frame[4:])
    assert decode_request(parsed, frame[4:], pos) == {
        **body,
        "is_kraft_controller": False,
        "type": 0,
        "topic_states": [
            {
                **body["topic_states"][0],
                "partition_states": [
                    {
                        **body["topic_states"][0]["partition_states"][0],
                        "adding_replicas": [],
                        "removing_replicas": [],
                    }
                ],
            }
        ],
    }


_HAND_WRITTEN: list[tuple[int, int, str, dict[str, Any], bytes]] = [
    (  # StopReplica v4: controller, kraft, epochs, [topic, [partition, leader epoch, delete]]
        5, 4, "request",
        {"controller_id": 1, "is_kraft_controller": False, "controller_epoch": 5,
         "broker_epoch": 77, "topic_states": [{"topic_name": "t", "partition_states": [
             {"partition_index": 3, "leader_epoch": -2, "delete_partition": True}]}]},
        pack("i", 1) + b"\x00" + pack("iq", 5, 77)
        + carr(cstr("t") + carr(pack("ii", 3, -2) + b"\x01" + NO_TAGS) + NO_TAGS)
        + NO_TAGS,
    ),
    (  # StopReplica v4 response: error, [topic, partition, error]
        5, 4, "response",
        {"error_code": 0, "partition_errors": [
            {"topic_name": "t", "partition_index": 3, "error_code": 56}]},
        pack("h", 0) + carr(cstr("t") + pack("ih", 3, 56) + NO_TAGS) + NO_TAGS,
    ),
    (  # UpdateMetadata v8 with its tagged type (2: full) after the regular fields
        6, 8, "request",
        {"controller_id": 1, "is_kraft_controller": False, "type": 2, "controller_epoch": 5,
         "broker_epoch": 77,
         "topic_states": [{"topic_name": "t", "topic_id": TOPIC_ID, "partition_states": [
             {"partition_index": 0, "controller_epoch": 4, "leader": 2, "leader_epoch": 3,
              "isr": [2], "zk_version": 9, "replicas": [2, 3], "offline_replicas": [3]}]}],
         "live_brokers": [{"id": 2, "endpoints": [
             {"port": 9092, "host": "h", "listener": "PLAINTEXT", "security_protocol": 0}],
             "rack": None}]},
        pack("i", 1) + b"\x00" + pack("iq", 5, 77)
        + carr(cstr("t") + TOPIC_ID.bytes
               + carr(pack("iiii", 0, 4, 2, 3) + i32s(2) + pack("i", 9) + i32s(2, 3)
                      + i32s(3) + NO_TAGS)
               + NO_TAGS)
        + carr(pack("i", 2)
               + carr(pack("i", 9092) + cstr("h") + cstr("PLAINTEXT") + pack("h", 0) + NO_TAGS)
               + cstr(None) + NO_TAGS)
        + b"\x01" + uvarint(0) + uvarint(1) + b"\x02",  # one tagged field: tag 0, 1 byte
    ),
    (  # UpdateMetadata v8 response: error
        6, 8, "response", {"error_code": 11}, pack("h", 11) + NO_TAGS,
    ),
    (  # ControlledShutdown v3: broker, epoch
        7, 3, "request", {"broker_id": 2, "broker_epoch": 77}, pack("iq", 2, 77) + NO_TAGS,
    ),
    (  # ControlledShutdown v3 response: error, [topic, partition]
        7, 3, "response",
        {"error_code": 0, "remaining_partitions": [{"topic_name": "t", "partition_index": 1}]},
        pack("h", 0) + carr(cstr("t") + pack("i", 1) + NO_TAGS) + NO_TAGS,
    ),
    (  # ControlledShutdown v1 (not flexible): broker only
        7, 1, "request", {"broker_id": 2}, pack("i", 2),
    ),
    (  # LeaderAndIsr v7 response: error, [topic id, [partition, error]]
        4, 7, "response",
        {"error_code": 0, "topics": [{"topic_id": TOPIC_ID, "partition_errors": [
            {"partition_index": 0, "error_code": 0}]}]},
        pack("h", 0) + carr(TOPIC_ID.bytes + carr(pack("ih", 0, 0) + NO_TAGS) + NO_TAGS)
        + NO_TAGS,
    ),
    (  # LeaderAndIsr v1 (not flexible): ungrouped states with topic names, is_new
        4, 1, "request",
        {"controller_id": 1, "controller_epoch": 5, "ungrouped_partition_states": [
            {"topic_name": "t", "partition_index": 0, "controller_epoch": 4, "leader": 2,
             "leader_epoch": 3, "isr": [2], "partition_epoch": 9, "replicas": [2],
             "is_new": False}],
         "live_leaders": [{"broker_id": 2, "host_name": "h", "port": 9092}]},
        pack("ii", 1, 5)
        + pack("i", 1) + pack("h", 1) + b"t" + pack("iiii", 0, 4, 2, 3)
        + pack("ii", 1, 2) + pack("i", 9) + pack("ii", 1, 2) + b"\x00"
        + pack("ii", 1, 2) + pack("h", 1) + b"h" + pack("i", 9092),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("api", "version", "direction", "message", "wire_bytes"), _HAND_WRITTEN)
def test_against_hand_written_bytes(
    api: int, version: int, direction: str, message: dict[str, Any], wire_bytes: bytes
) -> None:
    spec = message_spec(api, version, direction)  # type: ignore[arg-type]
    out = bytearray()
    compile_encoder(spec)(out, [], message)
    assert bytes(out) == wire_bytes
    decoded, end = compile_decoder(spec)(wire_bytes, 0)
    assert end == len(wire_bytes)
    assert decoded == message


def test_versions_and_flexibility_are_kafkas() -> None:
    assert known_versions(ApiKey.LEADER_AND_ISR) == range(0, 8)
    assert known_versions(ApiKey.STOP_REPLICA) == range(0, 5)
    assert known_versions(ApiKey.UPDATE_METADATA) == range(0, 9)
    assert known_versions(ApiKey.CONTROLLED_SHUTDOWN) == range(1, 4)
    first_flexible = {4: 4, 5: 2, 6: 6, 7: 3}
    for api, flexible_from in first_flexible.items():
        for version in known_versions(api) or ():
            for direction in ("request", "response"):
                spec = message_spec(api, version, direction)  # type: ignore[arg-type]
                assert spec.flexible == (version >= flexible_from)


# --------------------------------------------------------------------------- every version


def _random_message(spec: StructSpec, rnd: random.Random) -> dict[str, Any]:
    makers = {
        "bool": lambda: rnd.random() < 0.5,
        "int8": lambda: rnd.randint(-128, 127),
        "int16": lambda: rnd.randint(-(2**15), 2**15 - 1),
        "int32": lambda: rnd.randint(-(2**31), 2**31 - 1),
        "int64": lambda: rnd.randint(-(2**63), 2**63 - 1),
        "string": lambda: rnd.choice(["", "t", "ü-é" * 50]),
        "uuid": lambda: uuid.UUID(int=rnd.getrandbits(128)),
    }
    message: dict[str, Any] = {}
    for field in spec.fields:
        struct_ = field.struct

        def one(struct_: StructSpec | None = struct_, kind: str = field.type) -> Any:
            return _random_message(struct_, rnd) if struct_ is not None else makers[kind]()

        if field.nullable and rnd.random() < 0.3:
            message[field.name] = None
        elif field.array:
            message[field.name] = [one() for _ in range(rnd.randint(0, 3))]
        else:
            message[field.name] = one()
    return message


_ALL_VERSIONS = [
    (api, version, direction)
    for api in (4, 5, 6, 7)
    for version in known_versions(api) or ()
    for direction in ("request", "response")
]


@pytest.mark.parametrize(("api", "version", "direction"), _ALL_VERSIONS)
def test_every_version_roundtrips(api: int, version: int, direction: str) -> None:
    spec = message_spec(api, version, direction)  # type: ignore[arg-type]
    encode, decode = compile_encoder(spec), compile_decoder(spec)
    rnd = random.Random(f"{api}-{version}-{direction}")
    for _ in range(20):
        message = _random_message(spec, rnd)
        out = bytearray()
        encode(out, [], message)
        decoded, end = decode(bytes(out), 0)
        assert end == len(out)
        assert decoded == message


# --------------------------------------------------------------------------- commands


def _via_bytes(api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
    frame = encode_request(api_key, version, 1, "controller", body)[4:]
    header, pos = decode_request_header(frame)
    assert (header.api_key, header.api_version) == (api_key, version)
    return decode_request(header, frame, pos)


def _response_via_bytes(api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
    frame = b"".join(bytes(p) for p in encode_response(api_key, version, 9, body))[4:]
    correlation_id, decoded = decode_response(api_key, version, frame)
    assert correlation_id == 9
    return decoded


ids = st.integers(0, 2**31 - 1)
epochs = st.integers(-2, 2**31 - 1)
broker_ids = st.lists(st.integers(0, 5), max_size=4).map(tuple)
topics = st.sampled_from(["a", "b", "topic-ü"])
topic_ids = {"a": uuid.UUID(int=1), "b": None, "topic-ü": uuid.UUID(int=2**127 + 5)}

endpoints = st.builds(
    Endpoint,
    st.sampled_from(["PLAINTEXT", "INTERNAL", "CLIENT"]),
    st.sampled_from(["localhost", "::1", "broker-1.example"]),
    st.integers(0, 65535),
    st.sampled_from(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]),
)
live_brokers = st.builds(
    LiveBroker,
    st.integers(0, 5),
    st.integers(0, 2**40),
    st.lists(endpoints, max_size=3).map(tuple),
    st.none() | st.sampled_from(["r1", "rack-ü"]),
)


@st.composite
def leaderships(draw: st.DrawFn) -> tuple[PartitionLeadership, ...]:
    """Partitions grouped by topic, as the batch renders them."""
    keys = sorted(draw(st.sets(st.tuples(topics, st.integers(0, 20)), max_size=6)))
    return tuple(
        PartitionLeadership(
            topic=topic,
            partition=partition,
            controller_epoch=draw(epochs),
            leader=draw(st.integers(-2, 5)),
            leader_epoch=draw(epochs),
            isr=draw(broker_ids),
            partition_epoch=draw(epochs),
            replicas=draw(broker_ids),
            offline_replicas=draw(broker_ids),
            leader_recovery_state=draw(st.integers(0, 1)),
            is_new=draw(st.booleans()),
            topic_id=topic_ids[topic],
            adding_replicas=draw(broker_ids),
            removing_replicas=draw(broker_ids),
        )
        for topic, partition in keys
    )


def _common(draw: st.DrawFn) -> tuple[int, int, int, int]:
    return (draw(ids), draw(ids), draw(epochs), draw(st.integers(-1, 2**62)))


@st.composite
def leader_and_isrs(draw: st.DrawFn) -> LeaderAndIsr:
    return LeaderAndIsr(
        *_common(draw), draw(leaderships()), tuple(draw(st.lists(live_brokers, max_size=3)))
    )


@st.composite
def update_metadatas(draw: st.DrawFn) -> UpdateMetadata:
    return UpdateMetadata(
        *_common(draw), draw(leaderships()), tuple(draw(st.lists(live_brokers, max_size=3)))
    )


@st.composite
def stop_replicas(draw: st.DrawFn) -> StopReplica:
    keys = sorted(draw(st.sets(st.tuples(topics, st.integers(0, 20)), max_size=6)))
    return StopReplica(
        *_common(draw),
        tuple(StopReplicaPartition(t, p, draw(epochs), draw(st.booleans())) for t, p in keys),
    )


def _as_leader(broker: LiveBroker) -> LiveBroker:
    """What a LeaderAndIsr live leader keeps: id, first host and port."""
    first = broker.endpoints[:1]
    return LiveBroker(
        broker.broker_id, -1, tuple(Endpoint("", e.host, e.port) for e in first), None
    )


@given(leader_and_isrs())
@settings(max_examples=60, deadline=None)
def test_leader_and_isr_roundtrips(command: LeaderAndIsr) -> None:
    api_key, version, body = wire.encode_broker_request(command)
    assert (api_key, version) == (ApiKey.LEADER_AND_ISR, 7)
    decoded = wire.decode_leader_and_isr(_via_bytes(api_key, version, body), command.broker_id)
    assert decoded == dataclasses.replace(
        command,
        partitions=tuple(dataclasses.replace(p, offline_replicas=()) for p in command.partitions),
        leaders=tuple(_as_leader(b) for b in command.leaders),
    )


@given(update_metadatas())
@settings(max_examples=60, deadline=None)
def test_update_metadata_roundtrips(command: UpdateMetadata) -> None:
    api_key, version, body = wire.encode_broker_request(command)
    assert (api_key, version) == (ApiKey.UPDATE_METADATA, 8)
    decoded = wire.decode_update_metadata(_via_bytes(api_key, version, body), command.broker_id)
    assert decoded == dataclasses.replace(
        command,
        partitions=tuple(
            dataclasses.replace(
                p, is_new=False, leader_recovery_state=0, adding_replicas=(), removing_replicas=()
            )
            for p in command.partitions
        ),
        brokers=tuple(dataclasses.replace(b, epoch=-1) for b in command.brokers),
    )


@given(stop_replicas())
@settings(max_examples=60, deadline=None)
def test_stop_replica_roundtrips(command: StopReplica) -> None:
    api_key, version, body = wire.encode_broker_request(command)
    assert (api_key, version) == (ApiKey.STOP_REPLICA, 4)
    assert wire.decode_stop_replica(_via_bytes(api_key, version, body), command.broker_id) == (
        command
    )


def test_requests_list_each_topic_once() -> None:
    parts = tuple(
        PartitionLeadership(t, p, 1, 1, 1, (1,), 0, (1,), topic_id=topic_ids[t])
        for t, p in [("a", 0), ("b", 0), ("a", 1)]
    )
    body = wire.encode_broker_request(LeaderAndIsr(1, 0, 1, 5, parts, ()))[2]
    assert [(t["topic_name"], len(t["partition_states"])) for t in body["topic_states"]] == [
        ("a", 2),
        ("b", 1),
    ]
    decoded = wire.decode_leader_and_isr(_via_bytes(4, 7, body), 1)
    assert [(p.topic, p.partition) for p in decoded.partitions] == [("a", 0), ("a", 1), ("b", 0)]
    assert decoded.partitions[2].topic_id is None  # zero uuid on the wire


def test_unknown_security_protocol_is_refused() -> None:
    broker = LiveBroker(1, 5, (Endpoint("X", "h", 1, "NOPE"),))
    with pytest.raises(ValueError, match="NOPE"):
        wire.encode_broker_request(UpdateMetadata(1, 0, 1, 5, (), (broker,)))


# --------------------------------------------------------------------------- responses


_STOP = StopReplica(
    3,
    0,
    1,
    5,
    (
        StopReplicaPartition("a", 0, -2, True),
        StopReplicaPartition("a", 1, -2, True),
        StopReplicaPartition("b", 0, 4, False),
    ),
)


def test_stop_replica_result_fails_the_deletions_with_an_error() -> None:
    errors = {("a", 1): ErrorCode.KAFKA_STORAGE_ERROR}
    response = _response_via_bytes(5, 4, wire.stop_replica_response(_STOP, errors))
    assert response["partition_errors"][1] == {
        "topic_name": "a",
        "partition_index": 1,
        "error_code": ErrorCode.KAFKA_STORAGE_ERROR,
    }
    assert wire.stop_replica_result(_STOP, response) == StopReplicaResult(
        3, frozenset({("a", 0), ("a", 1)}), frozenset({("a", 1)})
    )


def test_stop_replica_request_wide_error_fails_every_deletion() -> None:
    response = _response_via_bytes(
        5, 4, wire.stop_replica_response(_STOP, {}, ErrorCode.STALE_BROKER_EPOCH)
    )
    assert response["error_code"] == ErrorCode.STALE_BROKER_EPOCH
    deleted = frozenset({("a", 0), ("a", 1)})
    assert wire.stop_replica_result(_STOP, response) == StopReplicaResult(3, deleted, deleted)


def test_leader_and_isr_response_groups_by_topic_id_and_serves_old_versions() -> None:
    parts = tuple(
        PartitionLeadership(t, p, 1, 1, 1, (1,), 0, (1,), topic_id=topic_ids[t])
        for t, p in [("a", 0), ("a", 1), ("b", 0)]
    )
    command = LeaderAndIsr(1, 0, 1, 5, parts, ())
    body = wire.leader_and_isr_response(command, {("a", 1): ErrorCode.KAFKA_STORAGE_ERROR})
    v7 = _response_via_bytes(4, 7, body)
    assert v7 == {
        "error_code": 0,
        "topics": [
            {
                "topic_id": topic_ids["a"],
                "partition_errors": [
                    {"partition_index": 0, "error_code": 0},
                    {"partition_index": 1, "error_code": ErrorCode.KAFKA_STORAGE_ERROR},
                ],
            },
            {
                "topic_id": uuid.UUID(int=0),
                "partition_errors": [{"partition_index": 0, "error_code": 0}],
            },
        ],
    }
    v4 = _response_via_bytes(4, 4, body)
    assert [
        (e["topic_name"], e["partition_index"], e["error_code"]) for e in v4["partition_errors"]
    ] == [
        ("a", 0, 0),
        ("a", 1, ErrorCode.KAFKA_STORAGE_ERROR),
        ("b", 0, 0),
    ]
    stale = wire.leader_and_isr_response(command, {}, ErrorCode.STALE_CONTROLLER_EPOCH)
    topics_ = _response_via_bytes(4, 7, stale)["topics"]
    codes = {e["error_code"] for t in topics_ for e in t["partition_errors"]}
    assert codes == {ErrorCode.STALE_CONTROLLER_EPOCH}


def test_update_metadata_response() -> None:
    body = wire.update_metadata_response(ErrorCode.STALE_BROKER_EPOCH)
    assert _response_via_bytes(6, 8, body) == {"error_code": ErrorCode.STALE_BROKER_EPOCH}


# --------------------------------------------------------------------------- to the controller


def test_controlled_shutdown_roundtrips() -> None:
    api_key, version, body = wire.controlled_shutdown_request(2, 77)
    assert (api_key, version) == (ApiKey.CONTROLLED_SHUTDOWN, 3)
    event = wire.decode_controlled_shutdown(_via_bytes(api_key, version, body))
    assert (event.broker_id, event.broker_epoch) == (2, 77)
    assert wire.decode_controlled_shutdown(_via_bytes(api_key, 1, body)).broker_epoch == -1
    reply = ControlledShutdownReply(2, ErrorCode.NONE, frozenset({("t", 1), ("a", 0)}))
    response = _response_via_bytes(api_key, version, wire.controlled_shutdown_response(reply))
    assert wire.decode_controlled_shutdown_response(response) == (ErrorCode.NONE, reply.remaining)


def test_alter_partition_roundtrips_by_topic_id() -> None:
    items = (
        AlterPartitionItem("a", 0, 3, (1, 2), 7),
        AlterPartitionItem("gone", 0, 1, (1,), 1),
        AlterPartitionItem("a", 1, 4, (1,), 9, 1),
    )
    ids_ = {"a": uuid.UUID(int=11), "gone": uuid.UUID(int=12)}
    api_key, version, body = wire.alter_partition_request(1, 50, items, ids_)
    assert (api_key, version) == (ApiKey.ALTER_PARTITION, 3)
    decoded = _via_bytes(api_key, version, body)
    event = wire.decode_alter_partition(decoded, {uuid.UUID(int=11): "a"})
    assert event == AlterPartition(1, 50, (items[0], items[2]))
    reply = AlterPartitionReply(
        1,
        ErrorCode.NONE,
        (
            AlterPartitionResult("a", 0, ErrorCode.NONE, 1, 3, (1, 2), 8),
            AlterPartitionResult("a", 1, ErrorCode.FENCED_LEADER_EPOCH),
        ),
    )
    response = _response_via_bytes(api_key, version, wire.alter_partition_response(reply, ids_))
    assert response["error_code"] == 0
    (topic,) = response["topics"]
    assert topic["topic_id"] == ids_["a"]
    assert [
        (p["partition_index"], p["error_code"], p["leader_id"], p["isr"], p["partition_epoch"])
        for p in topic["partitions"]
    ] == [(0, 0, 1, [1, 2], 8), (1, ErrorCode.FENCED_LEADER_EPOCH, -1, [], -1)]


# --------------------------------------------------------------------------- the batch


def test_rendered_requests_carry_the_topic_id() -> None:
    topic_id = uuid.UUID(int=99)
    ctx = ControllerContext(
        broker_id=1,
        epoch=2,
        epoch_zk_version=1,
        brokers={1: LiveBroker(1, 10, (Endpoint("PLAINTEXT", "h", 9092),))},
        topic_ids={"t": topic_id},
        assignments={("t", 0): (1,)},
        leadership={("t", 0): PartitionState(1, 0, (1,), 2, zk_version=0)},
    )
    batch = Batch()
    batch.lead_or_follow(1, ("t", 0), is_new=True)
    batch.metadata_brokers.add(1)
    batch.metadata_partitions.add(("t", 0))
    commands = render(ctx, 1, batch)
    sent = [c for c in commands if isinstance(c, LeaderAndIsr | UpdateMetadata)]
    assert [type(c) for c in sent] == [LeaderAndIsr, UpdateMetadata]
    assert all(p.topic_id == topic_id for c in sent for p in c.partitions)
    body = wire.encode_broker_request(sent[0])[2]
    assert body["topic_states"][0]["topic_id"] == topic_id


# --------------------------------------------------------------------------- older versions


_PARTITION = PartitionLeadership(
    "t", 0, 1, 2, 3, (2,), 4, (2, 3), leader_recovery_state=1, is_new=True, topic_id=TOPIC_ID
)
_LEADER = LiveBroker(2, -1, (Endpoint("", "h", 9092),))


@pytest.mark.parametrize("version", wire.LEADER_AND_ISR_DECODABLE)
def test_leader_and_isr_decodes_every_grouped_version(version: int) -> None:
    command = LeaderAndIsr(2, 1, 5, 77, (_PARTITION,), (_LEADER,))
    body = wire.encode_broker_request(command)[2]
    decoded = wire.decode_leader_and_isr(_via_bytes(4, version, body), 2)
    expected = dataclasses.replace(
        _PARTITION,
        topic_id=TOPIC_ID if version >= 5 else None,
        leader_recovery_state=1 if version >= 6 else 0,
    )
    assert decoded == dataclasses.replace(command, partitions=(expected,))


@pytest.mark.parametrize("version", wire.UPDATE_METADATA_DECODABLE)
def test_update_metadata_decodes_every_grouped_version(version: int) -> None:
    broker = LiveBroker(2, -1, (Endpoint("CLIENT", "h", 9092, "SSL"),), "r1")
    command = UpdateMetadata(2, 1, 5, 77, (_PARTITION,), (broker,))
    body = wire.encode_broker_request(command)[2]
    decoded = wire.decode_update_metadata(_via_bytes(6, version, body), 2)
    expected = dataclasses.replace(
        _PARTITION,
        topic_id=TOPIC_ID if version >= 7 else None,
        leader_recovery_state=0,
        is_new=False,
    )
    assert decoded == dataclasses.replace(command, partitions=(expected,))


def test_the_handlers_serve_the_versions_wire_decodes() -> None:
    from moldau.broker.handlers import controller_requests as handlers

    assert handlers.LEADER_AND_ISR_VERSIONS == wire.LEADER_AND_ISR_DECODABLE
    assert handlers.STOP_REPLICA_VERSIONS == wire.STOP_REPLICA_DECODABLE
    assert handlers.UPDATE_METADATA_VERSIONS == wire.UPDATE_METADATA_DECODABLE
    assert handlers.CONTROLLED_SHUTDOWN_VERSIONS == wire.CONTROLLED_SHUTDOWN_DECODABLE
    assert handlers.ALTER_PARTITION_VERSIONS == wire.ALTER_PARTITION_DECODABLE
