"""Our compiled codecs against an independent oracle: kio's own reader.

For every API and version we generate random messages from the spec, encode
them with moldau's encoder, and check that kio (built from Kafka's JSON
message definitions by other people) reads back the same values, and that
our decoder does too. This is what makes "every Kafka client works" more than
a hope for the APIs no integration test happens to touch.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import struct
import uuid
from typing import Any

import pytest
from kio.index import load_entity_schema
from kio.schema.index import api_key_map
from kio.serial import entity_reader
from kio.static.constants import EntityType

from moldau.broker import handlers  # noqa: F401 - registers the handlers
from moldau.broker.dispatch import api_version_ranges
from moldau.protocol.codegen import compile_decoder, compile_encoder
from moldau.protocol.legacy_schema import LEGACY
from moldau.protocol.schema import StructSpec, known_versions, legacy_spec, message_spec

_MS_TYPES = {"timedelta_i32", "timedelta_i64", "datetime_i64"}


def _random_message(spec: StructSpec, rnd: random.Random) -> dict[str, Any]:
    makers = {
        "bool": lambda: rnd.random() < 0.5,
        "int8": lambda: rnd.randint(-128, 127),
        "int16": lambda: rnd.randint(0, 50),  # kio insists error codes exist
        "uint16": lambda: rnd.randint(0, 65535),
        "int32": lambda: rnd.randint(-(2**20), 2**20),  # kio rounds large timedeltas
        "int64": lambda: rnd.randint(0, 2**40),  # kio refuses negative timestamps
        "float64": lambda: rnd.random(),
        "string": lambda: rnd.choice(["", "topic-a", "ü-é"]),
        "bytes": lambda: rnd.randbytes(rnd.randint(0, 5)),
        "records": lambda: rnd.randbytes(rnd.randint(0, 5)),
        "uuid": lambda: uuid.UUID(int=rnd.getrandbits(128) | 1),
    }
    message: dict[str, Any] = {}
    for field in spec.fields:
        struct = field.struct

        def one(struct: StructSpec | None = struct, kind: str = field.type) -> Any:
            return _random_message(struct, rnd) if struct is not None else makers[kind]()

        if field.nullable and rnd.random() < 0.2:
            message[field.name] = None
        elif field.array:
            message[field.name] = [one() for _ in range(rnd.randint(0, 3))]
        else:
            message[field.name] = one()
    return message


def _plain(value: Any) -> Any:
    """kio's objects as the plain values our codec uses."""
    if dataclasses.is_dataclass(value):
        return {
            f.name + ("_ms" if f.metadata.get("kafka_type") in _MS_TYPES else ""): _plain(
                getattr(value, f.name)
            )
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")
        }
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    if isinstance(value, datetime.datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, bool | float | str | bytes | uuid.UUID) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    raise TypeError(type(value))


_SERVED = [
    0,
    1,
    2,
    3,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    27,
    28,
    32,
    33,
    35,
    37,
    42,
    44,
    47,
    60,
    65,
    66,
]
_CASES = [
    (api, version, direction)
    for api in _SERVED
    for version in known_versions(api) or ()
    for direction in ("request", "response")
    if api not in LEGACY or version >= LEGACY[api].kio_floor
]


@pytest.mark.parametrize(("api", "version", "direction"), _CASES)
def test_kio_reads_what_we_write(api: int, version: int, direction: str) -> None:
    spec = message_spec(api, version, direction)  # type: ignore[arg-type]
    entity = EntityType.request if direction == "request" else EntityType.response
    cls = load_entity_schema(api_key_map[api], version, entity)
    rnd = random.Random(f"{api}-{version}-{direction}")
    encode, decode = compile_encoder(spec), compile_decoder(spec)
    for _ in range(5):
        message = _random_message(spec, rnd)
        out = bytearray()
        encode(out, [], message)
        ours, end = decode(bytes(out), 0)
        assert end == len(out)
        assert _plain(ours) == _plain(message)
        theirs, size = entity_reader(cls)(memoryview(bytes(out)), 0)
        assert size == len(out)
        assert _plain(theirs) == _plain(message)


def test_unknown_tagged_fields_are_skipped() -> None:
    spec = message_spec(18, 3, "request")  # ApiVersions v3, flexible
    out = bytearray()
    compile_encoder(spec)(out, [], {"client_software_name": "x", "client_software_version": "1"})
    assert out[-1] == 0
    out[-1] = 1  # one tagged field...
    out += b"\x63\x02\xab\xcd"  # ...tag 99, two bytes nobody knows
    message, end = compile_decoder(spec)(bytes(out), 0)
    assert end == len(out)
    assert message["client_software_name"] == "x"


# -- the versions Kafka 4.0 dropped: kio cannot read them ---------------------

#: The oldest version of each API that Kafka 3.9 accepts ("validVersions" of
#: its message definitions), for every API moldau serves.
_KAFKA_3_9_OLDEST = {api: 0 for api in _SERVED} | {
    # WriteTxnMarkers goes from broker to broker only, and moldau's brokers
    # send v1+ (Kafka 3.9 still served the v0 of brokers before 2.8).
    27: 1,
}


def test_apiversions_advertises_kafka_3_9_floor() -> None:
    advertised = {r["api_key"]: r["min_version"] for r in api_version_ranges(cluster=False)}
    assert advertised == _KAFKA_3_9_OLDEST


def _shape(spec: StructSpec) -> tuple[Any, ...]:
    return tuple(
        (f.name, f.type, f.array, f.nullable, f.tag, f.default, f.struct and _shape(f.struct))
        for f in spec.fields
    )


@pytest.mark.parametrize("api", sorted(LEGACY))
@pytest.mark.parametrize("direction", ["request", "response"])
def test_legacy_fields_match_kio_at_kios_oldest_version(api: int, direction: str) -> None:
    """Names, types, order and defaults as kio (so the handlers) spell them."""
    floor = LEGACY[api].kio_floor
    ours = legacy_spec(api, floor, direction)  # type: ignore[arg-type]
    assert _shape(ours) == _shape(message_spec(api, floor, direction))  # type: ignore[arg-type]


_LEGACY_CASES = [
    (api, version, direction)
    for api, legacy in sorted(LEGACY.items())
    for version in range(legacy.oldest, legacy.kio_floor)
    for direction in ("request", "response")
]


@pytest.mark.parametrize(("api", "version", "direction"), _LEGACY_CASES)
def test_legacy_round_trip(api: int, version: int, direction: str) -> None:
    spec = message_spec(api, version, direction)  # type: ignore[arg-type]
    assert not spec.flexible
    rnd = random.Random(f"legacy-{api}-{version}-{direction}")
    encode, decode = compile_encoder(spec), compile_decoder(spec)
    for _ in range(5):
        message = _random_message(spec, rnd)
        out = bytearray()
        encode(out, [], message)
        ours, end = decode(bytes(out), 0)
        assert end == len(out)
        assert _plain(ours) == _plain(message)


def _string(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def _array(*items: bytes) -> bytes:
    return struct.pack(">i", len(items)) + b"".join(items)


# Byte strings written by hand from Kafka 3.9's JSON definitions.
_HAND_WRITTEN = [
    (  # ListOffsets v0 request: replica, [topic, [partition, timestamp, max_num_offsets]]
        2, 0, "request",
        {"replica_id": -1, "topics": [{"name": "t", "partitions": [
            {"partition_index": 3, "timestamp": -2, "max_num_offsets": 5}]}]},
        struct.pack(">i", -1)
        + _array(_string("t") + _array(struct.pack(">iqi", 3, -2, 5))),
    ),
    (  # ListOffsets v0 response: [topic, [partition, error, [offset]]]
        2, 0, "response",
        {"topics": [{"name": "t", "partitions": [
            {"partition_index": 3, "error_code": 0, "old_style_offsets": [9, 0]}]}]},
        _array(_string("t") + _array(struct.pack(">ih", 3, 0) + _array(
            struct.pack(">q", 9), struct.pack(">q", 0)))),
    ),
    (  # Fetch v0 request: replica, max wait, min bytes, [topic, [partition, offset, max]]
        1, 0, "request",
        {"replica_id": -1, "max_wait_ms": 500, "min_bytes": 1, "topics": [
            {"topic": "t", "partitions": [
                {"partition": 0, "fetch_offset": 7, "partition_max_bytes": 1024}]}]},
        struct.pack(">iii", -1, 500, 1)
        + _array(_string("t") + _array(struct.pack(">iqi", 0, 7, 1024))),
    ),
    (  # Fetch v0 response: [topic, [partition, error, high watermark, records]]
        1, 0, "response",
        {"responses": [{"topic": "t", "partitions": [
            {"partition_index": 0, "error_code": 35, "high_watermark": -1, "records": b""}]}]},
        _array(_string("t") + _array(struct.pack(">ihqi", 0, 35, -1, 0))),
    ),
    (  # OffsetCommit v1 request: group, generation, member, [topic, [p, offset, time, meta]]
        8, 1, "request",
        {"group_id": "g", "generation_id_or_member_epoch": 4, "member_id": "m", "topics": [
            {"name": "t", "partitions": [{"partition_index": 1, "committed_offset": 42,
                                          "commit_timestamp": 1000, "committed_metadata": None}]}]},
        _string("g") + struct.pack(">i", 4) + _string("m")
        + _array(_string("t") + _array(struct.pack(">iqqh", 1, 42, 1000, -1))),
    ),
    (  # DescribeConfigs v0 response: throttle, [error, message, type, name, [config]]
        32, 0, "response",
        {"throttle_time_ms": 0, "results": [
            {"error_code": 0, "error_message": None, "resource_type": 2, "resource_name": "t",
             "configs": [{"name": "k", "value": "v", "read_only": False, "is_default": True,
                          "is_sensitive": False}]}]},
        struct.pack(">i", 0)
        + _array(struct.pack(">hhb", 0, -1, 2) + _string("t")
                 + _array(_string("k") + _string("v") + bytes([0, 1, 0]))),
    ),
    (  # Produce v2 response: [topic, [partition, error, base offset, append time]], throttle
        0, 2, "response",
        {"responses": [{"name": "t", "partition_responses": [
            {"index": 0, "error_code": 76, "base_offset": -1, "log_append_time_ms": -1}]}],
         "throttle_time_ms": 0},
        _array(_string("t") + _array(struct.pack(">ihqq", 0, 76, -1, -1))) + struct.pack(">i", 0),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("api", "version", "direction", "message", "wire"), _HAND_WRITTEN)
def test_legacy_against_hand_written_bytes(
    api: int, version: int, direction: str, message: dict[str, Any], wire: bytes
) -> None:
    spec = message_spec(api, version, direction)  # type: ignore[arg-type]
    out = bytearray()
    compile_encoder(spec)(out, [], message)
    assert bytes(out) == wire
    decoded, end = compile_decoder(spec)(wire, 0)
    assert end == len(wire)
    assert _plain(decoded) == message
