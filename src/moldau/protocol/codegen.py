"""Compile a ``StructSpec`` into a straight-line decoder and encoder.

A generic codec that walks the spec for every message pays for the walk on
every request. Instead we write, once per message version, the Python source
of a function that reads (or writes) exactly that version's fields in order,
and ``exec`` it. Messages are plain dicts keyed by Kafka's snake_case field
names; an encoder takes missing fields from the spec's defaults, so a handler
only fills in what it knows, and the same dict encodes at every version.

Decoders skip tagged fields they do not know (a newer client may send them);
encoders write a tagged field only when it differs from its default, as Kafka
does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import primitives
from .schema import FieldSpec, StructSpec

Decoder = Callable[[primitives.Buffer, int], tuple[dict[str, Any], int]]
Encoder = Callable[[bytearray, list[Any], dict[str, Any]], None]

_SCALARS = {"bool", "int8", "int16", "uint16", "int32", "int64", "float64", "uuid"}


class _Builder:
    """Accumulates the functions of one message and its nested structs."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._count = 0

    def constant(self, value: Any) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def new_name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    # -- decoding -----------------------------------------------------------

    def decoder(self, spec: StructSpec) -> str:
        name = self.new_name("dec")
        nested = {f.name: self.decoder(f.struct) for f in spec.fields if f.struct is not None}
        body = [f"def {name}(buf, pos):"]
        regular = [f for f in spec.fields if f.tag is None]
        tagged = [f for f in spec.fields if f.tag is not None]
        for i, f in enumerate(regular):
            body.append(f"    v{i}, pos = {self._read_expr(f, spec.flexible, nested)}")
        for j, f in enumerate(tagged):
            body.append(f"    t{j} = {self._fresh_default(f)}")
        if spec.flexible and tagged:
            body += [
                "    n, pos = r_uvarint(buf, pos)",
                "    for _ in range(n):",
                "        tag, pos = r_uvarint(buf, pos)",
                "        size, pos = r_uvarint(buf, pos)",
                "        end = pos + size",
            ]
            for j, f in enumerate(tagged):
                keyword = "if" if j == 0 else "elif"
                body.append(f"        {keyword} tag == {f.tag}:")
                body.append(f"            t{j}, _ = {self._read_expr(f, True, nested)}")
            body.append("        pos = end")
        elif spec.flexible:
            body.append("    pos = skip_tagged_fields(buf, pos)")
        items = [f"{f.name!r}: v{i}" for i, f in enumerate(regular)]
        items += [f"{f.name!r}: t{j}" for j, f in enumerate(tagged)]
        body.append(f"    return {{{', '.join(items)}}}, pos")
        self.lines += [*body, ""]
        return name

    def _fresh_default(self, f: FieldSpec) -> str:
        if isinstance(f.default, list | dict):
            return f"{type(f.default).__name__}()"
        return self.constant(f.default)

    def _read_expr(self, f: FieldSpec, flexible: bool, nested: dict[str, str]) -> str:
        if f.struct is not None:
            item = nested[f.name]
        elif f.type in _SCALARS:
            item = f"r_{f.type}"
        elif f.type == "string":
            item = "r_compact_string" if flexible else "r_string"
        elif f.type == "bytes":
            item = "r_compact_bytes" if flexible else "r_bytes"
        elif f.type == "records":
            item = "r_compact_records" if flexible else "r_records"
        else:
            raise ValueError(f"no reader for {f.type}")
        if f.array:
            array = "r_compact_array" if flexible else "r_array"
            return f"{array}(buf, pos, {item})"
        if f.struct is not None and f.nullable:
            return f"r_nullable_struct(buf, pos, {item})"
        return f"{item}(buf, pos)"

    # -- encoding -----------------------------------------------------------

    def encoder(self, spec: StructSpec) -> str:
        name = self.new_name("enc")
        nested = {f.name: self.encoder(f.struct) for f in spec.fields if f.struct is not None}
        body = [f"def {name}(out, parts, obj):", "    get = obj.get"]
        regular = [f for f in spec.fields if f.tag is None]
        tagged = [f for f in spec.fields if f.tag is not None]
        for f in regular:
            body.append(f"    value = get({f.name!r}, {self._fresh_default(f)})")
            body += self._write_lines(f, spec.flexible, nested, "out", "    ")
        if spec.flexible and tagged:
            body.append("    tagged = []")
            for f in sorted(tagged, key=lambda t: t.tag or 0):
                default = self.constant(f.default)
                body.append(f"    value = get({f.name!r}, {default})")
                body.append(f"    if value != {default}:")
                body.append("        data = bytearray()")
                body += self._write_lines(f, True, nested, "data", "        ")
                body.append(f"        tagged.append(({f.tag}, data))")
            body.append("    w_tagged(out, tagged)")
        elif spec.flexible:
            body.append("    out.append(0)")
        self.lines += [*body, ""]
        return name

    def _write_lines(
        self, f: FieldSpec, flexible: bool, nested: dict[str, str], out: str, indent: str
    ) -> list[str]:
        if f.struct is not None:
            one = f"{nested[f.name]}({out}, parts, {{item}})"
        elif f.type in _SCALARS:
            one = f"w_{f.type}({out}, {{item}})"
        elif f.type == "string":
            one = f"w_{'compact_' if flexible else ''}string({out}, {{item}})"
        elif f.type == "bytes":
            one = f"w_{'compact_' if flexible else ''}bytes({out}, {{item}})"
        elif f.type == "records":
            one = f"w_records({out}, parts, {{item}}, {flexible})"
        else:
            raise ValueError(f"no writer for {f.type}")
        if f.array:
            length = "w_uvarint({o}, len(value) + 1)" if flexible else "w_int32({o}, len(value))"
            null = "{o}.append(0)" if flexible else "w_int32({o}, -1)"
            return [
                f"{indent}if value is None:",
                f"{indent}    {null.format(o=out)}",
                f"{indent}else:",
                f"{indent}    {length.format(o=out)}",
                f"{indent}    for item in value:",
                f"{indent}        {one.format(item='item')}",
            ]
        if f.struct is not None and f.nullable:
            return [
                f"{indent}if value is None:",
                f"{indent}    w_int8({out}, -1)",
                f"{indent}else:",
                f"{indent}    w_int8({out}, 1)",
                f"{indent}    {one.format(item='value')}",
            ]
        return [f"{indent}{one.format(item='value')}"]

    def compile(self, entry: str) -> Any:
        namespace: dict[str, Any] = {
            name: getattr(primitives, name)
            for name in dir(primitives)
            if name.startswith(("r_", "w_", "skip_"))
        }
        namespace["r_nullable_struct"] = _read_nullable_struct
        namespace.update(self.constants)
        exec(compile("\n".join(self.lines), f"<codec {entry}>", "exec"), namespace)
        return namespace[entry]


def _read_nullable_struct(
    buf: primitives.Buffer, pos: int, item: primitives.Reader
) -> tuple[Any, int]:
    marker, pos = primitives.r_int8(buf, pos)
    if marker < 0:
        return None, pos
    return item(buf, pos)


def compile_decoder(spec: StructSpec) -> Decoder:
    """A function ``(buf, pos) -> (message dict, end position)``."""
    builder = _Builder()
    return builder.compile(builder.decoder(spec))


def compile_encoder(spec: StructSpec) -> Encoder:
    """A function ``(out, parts, message dict)`` appending to ``out``."""
    builder = _Builder()
    return builder.compile(builder.encoder(spec))
