"""The shape of every Kafka message, per API key and version.

Kafka describes each request and response in JSON; the PyPI package kio turns
those descriptions into one dataclass per message version. We do not use
kio's dataclasses at run time (they are slow to build and tied to one version
each); we only read their field metadata once, turn it into the small
``StructSpec`` tree below, and let ``codegen`` compile straight-line codecs
from it. This module is the only place in moldau that imports kio.

The versions kio leaves out (it follows Kafka 4.0, which dropped them; Kafka
3.9 still serves them) come from the field lists of ``legacy_schema``, and the
ZooKeeper-mode controller APIs kio has no trace of (LeaderAndIsr, StopReplica,
UpdateMetadata, ControlledShutdown) from those of ``inter_broker_schema``.
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

from .inter_broker_schema import INTER_BROKER  # noqa: E402
from .legacy_schema import LEGACY, Field, in_versions  # noqa: E402

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
    inter_broker = INTER_BROKER.get(api_key)
    if inter_broker is not None:
        return inter_broker.snake_name
    return api_key_map.get(api_key)


def known_versions(api_key: int) -> range | None:
    """Every version of an API that moldau can encode and decode."""
    inter_broker = INTER_BROKER.get(api_key)
    if inter_broker is not None:
        return inter_broker.versions
    name = api_name(api_key)
    if name is None:
        return None
    versions = sorted(schema_name_map[name])
    legacy = LEGACY.get(api_key)
    low = legacy.oldest if legacy is not None else versions[0]
    return range(low, versions[-1] + 1)


@functools.cache
def message_spec(api_key: int, version: int, direction: Direction) -> StructSpec:
    """The spec of a request or response body, built once per version."""
    if api_key in INTER_BROKER:
        return _inter_broker_spec(api_key, version, direction)
    name = api_name(api_key)
    if name is None:
        raise KeyError(f"unknown API key {api_key}")
    legacy = LEGACY.get(api_key)
    if legacy is not None and version < legacy.kio_floor:
        return legacy_spec(api_key, version, direction)
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
    if wire_type in _INTEGERS | {"uuid"} and nullable and not array:
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
    if field.default is None and wire_type in _INTEGERS and not array:
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


def legacy_spec(api_key: int, version: int, direction: Direction) -> StructSpec:
    """The spec of an old version from ``legacy_schema`` (also at its kio floor,
    where the wire tests compare it with kio's)."""
    legacy = LEGACY[api_key]
    if not legacy.oldest <= version <= legacy.kio_floor:
        raise KeyError(f"{legacy.name} v{version} is not in legacy_schema")
    fields = legacy.request if direction == "request" else legacy.response
    suffix = "Request" if direction == "request" else "Response"
    return _struct_from_legacy(legacy.name + suffix, fields, version, flexible=False)


def _inter_broker_spec(api_key: int, version: int, direction: Direction) -> StructSpec:
    api = INTER_BROKER[api_key]
    if version not in api.versions:
        raise KeyError(f"{api.name} v{version} is not in inter_broker_schema")
    fields = api.request if direction == "request" else api.response
    suffix = "Request" if direction == "request" else "Response"
    return _struct_from_legacy(
        api.name + suffix, fields, version, flexible=version >= api.flexible_from
    )


def _struct_from_legacy(
    name: str, fields: tuple[Field, ...], version: int, flexible: bool
) -> StructSpec:
    """A struct from ``Field`` lists; nested structs share the message's flexibility."""
    return StructSpec(
        name=name,
        fields=tuple(
            _field_from_legacy(f, version, flexible)
            for f in fields
            if in_versions(f.versions, version)
        ),
        flexible=flexible,
    )


def _field_from_legacy(field: Field, version: int, flexible: bool) -> FieldSpec:
    array = field.type.startswith("[]")
    item = field.type.removeprefix("[]")
    nullable = in_versions(field.nullable, version)
    struct = _struct_from_legacy(item, field.fields, version, flexible) if field.fields else None
    wire_type = "struct" if struct is not None else item
    if field.default is not None:
        default = field.default
    elif nullable:
        default = None
    elif array:
        default = []
    else:
        default = _ZERO[wire_type]
    return FieldSpec(
        name=field.name,
        type=wire_type,
        array=array,
        nullable=nullable,
        struct=struct,
        tag=field.tag,
        default=default,
    )
