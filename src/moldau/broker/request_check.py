"""Null where Kafka's schema says non-null: found before a handler runs.

The codecs decode a null string, bytes, array or struct wherever one is on
the wire, because the same reader serves nullable and non-nullable fields.
Kafka's own parser refuses such a request; handlers here would fail halfway
through (a None topic name, a None protocol list) after having changed some
state. So the dispatcher checks the decoded body against the request's spec
first and answers INVALID_REQUEST without calling the handler.

The walk visits only the fields that can hold a forbidden null and the
structs that contain such fields, so a Fetch of a thousand partitions (whose
partition entries are all integers) costs one check per topic, not per
partition.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..protocol.schema import StructSpec, message_spec

#: Wire types whose encoding has a null (integers and uuids do not).
_REFERENCE_TYPES = {"string", "bytes", "records", "struct"}


@dataclass(frozen=True)
class _Plan:
    """What to check in one struct: non-null fields, and nested structs to visit."""

    required: tuple[str, ...]
    #: Arrays of strings or bytes whose items must not be null.
    required_items: tuple[str, ...]
    nested: tuple[tuple[str, bool, _Plan], ...]


@functools.cache
def _request_plan(api_key: int, version: int) -> _Plan | None:
    return _plan(message_spec(api_key, version, "request"))


def _plan(spec: StructSpec) -> _Plan | None:
    """The checks of ``spec``; None when nothing in it can be a forbidden null."""
    required: list[str] = []
    required_items: list[str] = []
    nested: list[tuple[str, bool, _Plan]] = []
    for field in spec.fields:
        if not field.nullable and (field.array or field.type in _REFERENCE_TYPES):
            required.append(field.name)
        if field.array and field.struct is None and field.type in _REFERENCE_TYPES:
            required_items.append(field.name)
        if field.struct is not None:
            inner = _plan(field.struct)
            if inner is not None:
                nested.append((field.name, field.array, inner))
    if not required and not required_items and not nested:
        return None
    return _Plan(tuple(required), tuple(required_items), tuple(nested))


def forbidden_null(api_key: int, version: int, body: dict[str, Any]) -> str | None:
    """The path of the first null in a non-nullable field of a request body, or None."""
    plan = _request_plan(api_key, version)
    return None if plan is None else _check(plan, body, "request")


def _check(plan: _Plan, body: dict[str, Any], path: str) -> str | None:
    for name in plan.required:
        if body.get(name, 0) is None:
            return f"{path}.{name}"
    for name in plan.required_items:
        if None in (body.get(name) or ()):
            return f"{path}.{name}[]"
    for name, array, inner in plan.nested:
        value = body.get(name)
        if value is None:
            continue
        items = value if array else (value,)
        for index, item in enumerate(items):
            found = _check(inner, item, f"{path}.{name}[{index}]" if array else f"{path}.{name}")
            if found is not None:
                return found
    return None
