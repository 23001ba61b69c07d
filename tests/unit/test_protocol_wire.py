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
import uuid
from typing import Any

import pytest
from kio.index import load_entity_schema
from kio.schema.index import api_key_map
from kio.serial import entity_reader
from kio.static.constants import EntityType

from moldau.protocol.codegen import compile_decoder, compile_encoder
from moldau.protocol.schema import StructSpec, known_versions, message_spec

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
    32,
    33,
    37,
    42,
    44,
    47,
    60,
]
_CASES = [
    (api, version, direction)
    for api in _SERVED
    for version in known_versions(api) or ()
    for direction in ("request", "response")
    if not (api == 0 and version < 3)
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


def test_produce_v0_is_v3_without_transactional_id() -> None:
    names = [f.name for f in message_spec(0, 0, "request").fields]
    assert names == ["acks", "timeout_ms", "topic_data"]
    response = [f.name for f in message_spec(0, 0, "response").fields]
    assert "throttle_time_ms" not in response
