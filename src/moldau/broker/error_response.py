"""An error answer to any request, in the error fields its API carries.

Kafka builds these per API (``AbstractRequest.getErrorResponse``): the error
goes in the top-level error code where the response has one, and in every
topic, partition, group or resource entry the request named, so a client
fails exactly the entries it asked about. One generic walk does the same from
the message specs: the response is laid over the request, each response
array of entries that carry an error code mirrors the request array it
answers (same name, else the request's first array of entries), and each
entry copies the keys it shares with its request entry (names, indexes, ids).
"""

from __future__ import annotations

import uuid
from typing import Any

from ..protocol.messages import Message
from ..protocol.schema import FieldSpec, StructSpec, message_spec

#: Response key fields whose request counterpart is spelled differently.
_ALIASES = {
    "partition_index": ("partition", "index"),
    "index": ("partition_index", "partition"),
    "name": ("topic",),
    "topic": ("name",),
}

_INTEGERS = {"int8", "int16", "uint16", "int32", "int64"}


def error_body(
    api_key: int, version: int, request: Message | None, code: int, message: str
) -> Message:
    """The response body of ``api_key`` v``version`` failing ``request`` with ``code``."""
    response = message_spec(api_key, version, "response")
    requested = message_spec(api_key, version, "request")
    return _mirror(response, requested, request or {}, code, message)


def _mirror(
    response: StructSpec, request: StructSpec, value: Message, code: int, message: str
) -> Message:
    out: Message = {}
    for field in response.fields:
        if field.name == "error_code":
            out["error_code"] = code
        elif field.name == "error_message":
            out["error_message"] = message
        elif field.array and field.struct is not None and _carries_error(field.struct):
            source = _source_array(request, field.name)
            items = value.get(source.name) if source is not None else None
            if source is None or not isinstance(items, list):
                continue
            out[field.name] = [
                _mirror_item(field.struct, source, item, code, message) for item in items
            ]
        elif not field.array and field.struct is None:
            copied = _copy_key(field, request, value)
            if copied is not None:
                out[field.name] = copied
    return out


def _mirror_item(
    response: StructSpec, source: FieldSpec, item: Any, code: int, message: str
) -> Message:
    if source.struct is not None:
        value = item if isinstance(item, dict) else {}
        return _mirror(response, source.struct, value, code, message)
    # An array of plain names (DescribeGroups' groups, FindCoordinator's keys):
    # the name goes in the entry's first string field.
    entry = _mirror(response, StructSpec("", (), False), {}, code, message)
    key = next((f.name for f in response.fields if f.type == "string" and not f.array), None)
    if key is not None and isinstance(item, str):
        entry[key] = item
    return entry


def _source_array(request: StructSpec, name: str) -> FieldSpec | None:
    """The request array a response array answers: same name, else the first array."""
    arrays = [f for f in request.fields if f.array and (f.struct is not None or f.type == "string")]
    for field in arrays:
        if field.name == name:
            return field
    return arrays[0] if arrays else None


def _copy_key(field: FieldSpec, request: StructSpec, value: Message) -> Any:
    names = {f.name for f in request.fields}
    for candidate in (field.name, *_ALIASES.get(field.name, ())):
        if candidate in names:
            found = value.get(candidate)
            return found if _fits(field, found) else None
    return None


def _fits(field: FieldSpec, value: Any) -> bool:
    """Whether a value taken from the request encodes as this response field."""
    if field.type in _INTEGERS:
        return isinstance(value, int) and not isinstance(value, bool)
    if field.type == "string":
        return isinstance(value, str)
    if field.type == "uuid":
        return isinstance(value, uuid.UUID)
    if field.type == "bool":
        return isinstance(value, bool)
    return False


def _carries_error(spec: StructSpec) -> bool:
    return any(
        f.name == "error_code" or (f.struct is not None and _carries_error(f.struct))
        for f in spec.fields
    )
