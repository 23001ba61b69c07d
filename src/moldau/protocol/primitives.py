"""Readers and writers of Kafka's primitive wire types.

Readers take ``(buf, pos)`` and return ``(value, new_pos)``; writers append to
a ``bytearray``. The generated codecs in ``codegen`` call these directly. Any
read past the end of the buffer raises ``DecodeError``, which the broker turns
into a closed connection rather than a crash.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

Buffer = bytes | bytearray | memoryview
Reader = Callable[[Buffer, int], tuple[Any, int]]

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_ZERO_UUID = bytes(16)


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the expected message."""


def _end(buf: Buffer, pos: int, length: int) -> int:
    end = pos + length
    if length < 0 or end > len(buf):
        raise DecodeError(f"field of {length} bytes at {pos} runs past the {len(buf)}-byte frame")
    return end


def r_bool(buf: Buffer, pos: int) -> tuple[bool, int]:
    _end(buf, pos, 1)
    return buf[pos] != 0, pos + 1


def r_int8(buf: Buffer, pos: int) -> tuple[int, int]:
    return _I8.unpack_from(buf, pos)[0], pos + 1


def r_int16(buf: Buffer, pos: int) -> tuple[int, int]:
    return _I16.unpack_from(buf, pos)[0], pos + 2


def r_uint16(buf: Buffer, pos: int) -> tuple[int, int]:
    return _U16.unpack_from(buf, pos)[0], pos + 2


def r_int32(buf: Buffer, pos: int) -> tuple[int, int]:
    return _I32.unpack_from(buf, pos)[0], pos + 4


def r_int64(buf: Buffer, pos: int) -> tuple[int, int]:
    return _I64.unpack_from(buf, pos)[0], pos + 8


def r_float64(buf: Buffer, pos: int) -> tuple[float, int]:
    return _F64.unpack_from(buf, pos)[0], pos + 8


def r_uuid(buf: Buffer, pos: int) -> tuple[uuid.UUID, int]:
    end = _end(buf, pos, 16)
    return uuid.UUID(bytes=bytes(buf[pos:end])), end


def r_uvarint(buf: Buffer, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    size = len(buf)
    while True:
        if pos >= size:
            raise DecodeError("varint runs past the end of the frame")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint longer than 10 bytes")


def r_string(buf: Buffer, pos: int) -> tuple[str | None, int]:
    length, pos = r_int16(buf, pos)
    if length < 0:
        return None, pos
    end = _end(buf, pos, length)
    return str(buf[pos:end], "utf-8"), end


def r_compact_string(buf: Buffer, pos: int) -> tuple[str | None, int]:
    length, pos = r_uvarint(buf, pos)
    if length == 0:
        return None, pos
    end = _end(buf, pos, length - 1)
    return str(buf[pos:end], "utf-8"), end


def r_bytes(buf: Buffer, pos: int) -> tuple[bytes | None, int]:
    length, pos = r_int32(buf, pos)
    if length < 0:
        return None, pos
    end = _end(buf, pos, length)
    return bytes(buf[pos:end]), end


def r_compact_bytes(buf: Buffer, pos: int) -> tuple[bytes | None, int]:
    length, pos = r_uvarint(buf, pos)
    if length == 0:
        return None, pos
    end = _end(buf, pos, length - 1)
    return bytes(buf[pos:end]), end


def r_records(buf: Buffer, pos: int) -> tuple[memoryview | None, int]:
    """Record batches stay a view into the request frame: no copy."""
    length, pos = r_int32(buf, pos)
    if length < 0:
        return None, pos
    end = _end(buf, pos, length)
    return memoryview(buf)[pos:end], end


def r_compact_records(buf: Buffer, pos: int) -> tuple[memoryview | None, int]:
    length, pos = r_uvarint(buf, pos)
    if length == 0:
        return None, pos
    end = _end(buf, pos, length - 1)
    return memoryview(buf)[pos:end], end


def r_array(buf: Buffer, pos: int, item: Reader) -> tuple[list[Any] | None, int]:
    count, pos = r_int32(buf, pos)
    return _items(buf, pos, count, item)


def r_compact_array(buf: Buffer, pos: int, item: Reader) -> tuple[list[Any] | None, int]:
    count, pos = r_uvarint(buf, pos)
    return _items(buf, pos, count - 1, item)


def _items(buf: Buffer, pos: int, count: int, item: Reader) -> tuple[list[Any] | None, int]:
    if count < 0:
        return None, pos
    if count > len(buf) - pos:
        raise DecodeError(f"array of {count} items cannot fit in the rest of the frame")
    items = []
    for _ in range(count):
        value, pos = item(buf, pos)
        items.append(value)
    return items, pos


def skip_tagged_fields(buf: Buffer, pos: int) -> int:
    """Skip a tagged-field section whose tags this version does not define."""
    count, pos = r_uvarint(buf, pos)
    for _ in range(count):
        _, pos = r_uvarint(buf, pos)
        size, pos = r_uvarint(buf, pos)
        pos = _end(buf, pos, size)
    return pos


def w_bool(out: bytearray, value: bool) -> None:
    out.append(1 if value else 0)


def w_int8(out: bytearray, value: int) -> None:
    out += _I8.pack(value)


def w_int16(out: bytearray, value: int) -> None:
    out += _I16.pack(value)


def w_uint16(out: bytearray, value: int) -> None:
    out += _U16.pack(value)


def w_int32(out: bytearray, value: int) -> None:
    out += _I32.pack(value)


def w_int64(out: bytearray, value: int) -> None:
    out += _I64.pack(value)


def w_float64(out: bytearray, value: float) -> None:
    out += _F64.pack(value)


def w_uuid(out: bytearray, value: uuid.UUID | None) -> None:
    out += _ZERO_UUID if value is None else value.bytes


def w_uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def w_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out += b"\xff\xff"
        return
    data = value.encode()
    out += _I16.pack(len(data))
    out += data


def w_compact_string(out: bytearray, value: str | None) -> None:
    if value is None:
        out.append(0)
        return
    data = value.encode()
    w_uvarint(out, len(data) + 1)
    out += data


def w_bytes(out: bytearray, value: Buffer | None) -> None:
    if value is None:
        out += b"\xff\xff\xff\xff"
        return
    out += _I32.pack(len(value))
    out += value


def w_compact_bytes(out: bytearray, value: Buffer | None) -> None:
    if value is None:
        out.append(0)
        return
    w_uvarint(out, len(value) + 1)
    out += value


def w_records(out: bytearray, parts: list[Any], value: Any, compact: bool) -> None:
    """Write a records field: bytes inline, file slices as separate parts.

    ``value`` is None, a bytes-like object, or a list of ``FileSlice``-like
    objects (anything with ``length``) that the connection sends with
    sendfile. Slices split the output: the bytes so far become one part, each
    slice its own part, and encoding carries on in the same bytearray.
    """
    if value is None or isinstance(value, bytes | bytearray | memoryview):
        (w_compact_bytes if compact else w_bytes)(out, value)
        return
    total = sum(s.length for s in value)
    if compact:
        w_uvarint(out, total + 1)
    else:
        out += _I32.pack(total)
    parts.append(bytes(out))
    out.clear()
    parts.extend(value)


def w_tagged(out: bytearray, fields: list[tuple[int, bytearray]]) -> None:
    w_uvarint(out, len(fields))
    for tag, data in fields:
        w_uvarint(out, tag)
        w_uvarint(out, len(data))
        out += data
