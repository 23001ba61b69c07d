"""The shape of every Kafka message, per API key and version.

Kafka describes each request and response in JSON; the PyPI package kio turns
those descriptions into one dataclass per message version. We do not use
kio's dataclasses at run time (they are slow to build and tied to one version
each); we only read their field metadata once, turn it into the small
``StructSpec`` tree below, and let ``codegen`` compile straight-line codecs
from it. This module is the only place in moldau that imports kio.

A handful of versions that kio leaves out (it follows Kafka 4.0, which dropped
them) are derived here by removing fields from the oldest version kio has.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin


def _import_kio_quietly() -> None:
    """Import kio without letting it import hypothesis.

    kio registers hypothesis strategies for its types whenever hypothesis is
    importable, which costs a broker a third of a second of startup on any
    machine that has hypothesis installed (every test and benchmark machine).
    A process that already loaded hypothesis keeps it; otherwise hypothesis is
    hidden for the duration of the import and visible again afterwards.
    """
    if "hypothesis" in sys.modules:
        return
    sys.modules["hypothesis"] = None  # type: ignore[assignment]
    try:
        import kio.index  # noqa: F401
    finally:
        del sys.modules["hypothesis"]


_import_kio_quietly()

from kio.index import load_entity_schema  # noqa: E402
from kio.schema.index import api_key_map, schema_name_map  # noqa: E402
from kio.static.constants import EntityType  # noqa: E402

Direction = Literal["request", "response"]

#: Kafka types the codecs know, after folding kio's richer Python types
#: (timedelta, datetime, error codes) back into their wire integers.
_WIRE_TYPE = {
    "bool": "bool",
    "int8": "int8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "int64": "int64",
    "float64": "float64",
    "string": "string",
    "bytes": "bytes",
    "records": "records",
    "uuid": "uuid",
    "error_code": "int16",
    "timedelta_i32": "int32",
    "timedelta_i64": "int64",
    "datetime_i64": "int64",
}


_MILLISECOND_TYPES = {"timedelta_i32", "timedelta_i64", "datetime_i64"}
_INTEGERS = {"int8", "int16", "uint16", "int32", "int64"}


@dataclass(frozen=True)
class FieldSpec:
    """One field of a message at one version."""

    name: str
    #: A wire type from ``_WIRE_TYPE`` values, or "struct" for a nested message.
    type: str
    array: bool
    nullable: bool
    struct: StructSpec | None
    #: The tag number of a tagged field (flexible versions only), else None.
    tag: int | None
    default: Any


@dataclass(frozen=True)
class StructSpec:
    """A message, or a structure nested in one, at one version."""

    name: str
    fields: tuple[FieldSpec, ...]
    flexible: bool


def api_name(api_key: int) -> str | None:
    """kio's snake_case name of an API (``produce``, ``fetch``...)."""
    return api_key_map.get(api_key)


def known_versions(api_key: int) -> range | None:
    """Every version of an API that moldau can encode and decode."""
    name = api_name(api_key)
    if name is None:
        return None
    versions = sorted(schema_name_map[name])
    low = min(versions[0], _DERIVED_FLOOR.get(api_key, versions[0]))
    return range(low, versions[-1] + 1)


@functools.cache
def message_spec(api_key: int, version: int, direction: Direction) -> StructSpec:
    """The spec of a request or response body, built once per version."""
    name = api_name(api_key)
    if name is None:
        raise KeyError(f"unknown API key {api_key}")
    derived = _DERIVED.get((api_key, direction))
    if derived is not None and version < _DERIVED_FLOOR_FROM[api_key]:
        base = message_spec(api_key, _DERIVED_FLOOR_FROM[api_key], direction)
        return _without(base, derived(version))
    if direction == "request":
        cls = load_entity_schema(name, version, EntityType.request)
    else:
        cls = load_entity_schema(name, version, EntityType.response)
    return _struct_from_dataclass(cls)


def _struct_from_dataclass(cls: Any) -> StructSpec:
    fields = tuple(
        _field_from_dataclass(f) for f in dataclasses.fields(cls) if not f.name.startswith("_")
    )
    return StructSpec(name=cls.__name__, fields=fields, flexible=bool(cls.__flexible__))


def _field_from_dataclass(field: dataclasses.Field[Any]) -> FieldSpec:
    annotation = field.type
    nullable = False
    if get_origin(annotation) in (types.UnionType, Union):
        args = [a for a in get_args(annotation) if a is not type(None)]
        nullable = len(args) != len(get_args(annotation))
        (annotation,) = args
    array = get_origin(annotation) is tuple
    if array:
        annotation = get_args(annotation)[0]
    struct = None
    if dataclasses.is_dataclass(annotation):
        wire_type = "struct"
        struct = _struct_from_dataclass(annotation)
    else:
        wire_type = _WIRE_TYPE[field.metadata["kafka_type"]]
    name = field.name
    if field.metadata.get("kafka_type") in _MILLISECOND_TYPES:
        # kio drops the unit from names it turns into timedelta/datetime; Kafka's
        # own names (ThrottleTimeMs, LogAppendTimeMs...) all keep it.
        name += "_ms"
    if wire_type in _INTEGERS | {"uuid"} and nullable:
        # kio types "-1 means none" integers as Optional; on the wire they are
        # plain integers whose default is -1 (a zero uuid for ids).
        nullable = False
    tag = field.metadata.get("tag")
    return FieldSpec(
        name=name,
        type=wire_type,
        array=array,
        nullable=nullable,
        struct=struct,
        tag=tag,
        default=_default_of(field, wire_type, array, nullable, struct),
    )


def _default_of(
    field: dataclasses.Field[Any],
    wire_type: str,
    array: bool,
    nullable: bool,
    struct: StructSpec | None,
) -> Any:
    """The value an encoder writes when the caller left a field out."""
    if field.default is None and wire_type in _INTEGERS:
        return -1
    if field.default is not dataclasses.MISSING and not dataclasses.is_dataclass(field.default):
        value = field.default
        if isinstance(value, tuple):
            return list(value)
        return _plain(value)
    if nullable:
        return None
    if array:
        return []
    if struct is not None:
        return {}
    return _ZERO[wire_type]


def _plain(value: Any) -> Any:
    """Fold kio's rich defaults (timedelta, enums) into wire values."""
    if hasattr(value, "total_seconds"):
        return int(value.total_seconds() * 1000)
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    return value


_ZERO: dict[str, Any] = {
    "bool": False,
    "int8": 0,
    "int16": 0,
    "uint16": 0,
    "int32": 0,
    "int64": 0,
    "float64": 0.0,
    "string": "",
    "bytes": b"",
    "records": None,
    "uuid": None,
}


def _without(base: StructSpec, removed: frozenset[str]) -> StructSpec:
    """``base`` with the named fields (at any depth) taken out."""

    def strip(spec: StructSpec) -> StructSpec:
        kept = []
        for f in spec.fields:
            if f.name in removed:
                continue
            if f.struct is not None:
                f = dataclasses.replace(f, struct=strip(f.struct))
            kept.append(f)
        return dataclasses.replace(spec, fields=tuple(kept))

    return strip(base)


def _produce_request_removed(version: int) -> frozenset[str]:
    return frozenset({"transactional_id"})


def _produce_response_removed(version: int) -> frozenset[str]:
    removed = set()
    if version < 2:
        removed.add("log_append_time_ms")
    if version < 1:
        removed.add("throttle_time_ms")
    return frozenset(removed)


# Produce v0-v2 are v3 minus the fields v3 added. Clients only use them to learn
# that the broker speaks Produce at all (librdkafka reads the advertised range).
_DERIVED = {
    (0, "request"): _produce_request_removed,
    (0, "response"): _produce_response_removed,
}
_DERIVED_FLOOR = {0: 0}
_DERIVED_FLOOR_FROM = {0: 3}
