"""Kafka's primitive binary types, for the few structures the group code owns.

The records of ``__consumer_offsets`` and the consumer protocol's embedded
subscription and assignment are not requests, so they are encoded here rather
than through the wire protocol package. Everything is big-endian. Classic
("non-flexible") structures use int16-length strings, int32-length bytes and
int32-count arrays, with -1 for null. Flexible structures (KIP-482) use unsigned
varints of length+1 (0 for null) and end each struct with tagged fields, which
this reader skips: a field we do not know cannot change what we do.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class DecodeError(ValueError):
    """The bytes do not hold the structure they were expected to hold."""


class Writer:
    """Appends classic (non-flexible) Kafka types to a buffer."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def int8(self, value: int) -> Writer:
        self._buf += _I8.pack(value)
        return self

    def int16(self, value: int) -> Writer:
        self._buf += _I16.pack(value)
        return self

    def int32(self, value: int) -> Writer:
        self._buf += _I32.pack(value)
        return self

    def int64(self, value: int) -> Writer:
        self._buf += _I64.pack(value)
        return self

    def string(self, value: str | None) -> Writer:
        """An int16-length UTF-8 string; ``None`` writes the null marker -1."""
        if value is None:
            return self.int16(-1)
        data = value.encode()
        self.int16(len(data))
        self._buf += data
        return self

    def bytes(self, value: bytes | None) -> Writer:
        """An int32-length byte string; ``None`` writes the null marker -1."""
        if value is None:
            return self.int32(-1)
        self.int32(len(value))
        self._buf += value
        return self

    def array(self, items: Sequence[T] | None, write_item: Callable[[Writer, T], object]) -> Writer:
        """An int32-count array; ``None`` writes the null marker -1."""
        if items is None:
            return self.int32(-1)
        self.int32(len(items))
        for item in items:
            write_item(self, item)
        return self


class Reader:
    """Reads Kafka types from ``data``; ``flexible`` selects the compact encodings."""

    def __init__(self, data: bytes, *, flexible: bool = False) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self.flexible = flexible

    def _take(self, n: int) -> memoryview:
        if n < 0 or self._pos + n > len(self._data):
            raise DecodeError(f"need {n} bytes at position {self._pos}, have {self.remaining()}")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def int8(self) -> int:
        return int(_I8.unpack(self._take(1))[0])

    def int16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def int32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def int64(self) -> int:
        return int(_I64.unpack(self._take(8))[0])

    def uvarint(self) -> int:
        result = shift = 0
        while True:
            byte = self._take(1)[0]
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift > 35:
                raise DecodeError("unsigned varint longer than 5 bytes")

    def _length(self, classic: Callable[[], int]) -> int:
        """A length prefix; -1 means null in both encodings."""
        return self.uvarint() - 1 if self.flexible else classic()

    def nullable_string(self) -> str | None:
        n = self._length(self.int16)
        if n < 0:
            return None
        try:
            return str(self._take(n), "utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(f"string is not UTF-8: {exc}") from None

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise DecodeError("null where a string is required")
        return value

    def nullable_bytes(self) -> bytes | None:
        n = self._length(self.int32)
        return None if n < 0 else bytes(self._take(n))

    def bytes(self) -> bytes:
        value = self.nullable_bytes()
        if value is None:
            raise DecodeError("null where bytes are required")
        return value

    def array(self, read_item: Callable[[Reader], T]) -> list[T]:
        items = self.nullable_array(read_item)
        if items is None:
            raise DecodeError("null where an array is required")
        return items

    def nullable_array(self, read_item: Callable[[Reader], T]) -> list[T] | None:
        n = self._length(self.int32)
        if n < 0:
            return None
        if n > self.remaining():  # every item takes at least one byte
            raise DecodeError(f"array of {n} items in {self.remaining()} bytes")
        return [read_item(self) for _ in range(n)]

    def end_struct(self) -> None:
        """Skips the tagged fields that close every flexible struct."""
        if not self.flexible:
            return
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self._take(self.uvarint())
