"""Message formats v0 and v1 (magic 0/1): parsing, up- and down-conversion.

moldau stores only record batches v2. Clients older than Kafka 0.11 write and
read message sets, which the leader converts as Kafka 3.9 does
(``LogValidator`` on produce, ``RecordsUtil.downConvert`` on fetch).

One message of a message set (big endian)::

    offset      int64   absolute, or (v1 inside a wrapper) relative
    size        int32   bytes after this field
    crc         uint32  CRC32 (not CRC32C) of magic..end
    magic       int8    0 or 1
    attributes  int8    bits 0-2 codec, bit 3 (v1) LogAppendTime
    timestamp   int64   v1 only
    key         int32 length (-1 null) + bytes
    value       int32 length (-1 null) + bytes

A compressed message is a *wrapper*: its value is a compressed message set
of uncompressed messages of the same magic, and its offset is the last
inner message's. Inner offsets are absolute in v0 and relative to the first
inner message in v1. Wrappers inside wrappers are refused, as in Kafka.

LZ4 in v0 is the frame format with the header checksum Kafka 0.8 computed
wrongly (over the magic number too, ``KafkaLZ4BlockOutputStream``'s
``useBrokenFlagDescriptorChecksum``); v1 uses the correct one. Reading, we
accept either for v0 (Kafka ignores it there) and recompute it for the
decompressor; writing, we write the one the magic implies.

Decompression is bounded by the decoders of v2 batches (``codecs.py``): the
inflated size is bounded before any output is produced, so a small request
cannot make us allocate more than ``max_inflated`` bytes. Kafka has no such bound; moldau departs.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_MASK,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    TIMESTAMP_LOG_APPEND_TIME,
    BatchHeader,
    CorruptRecordError,
    InvalidRecordError,
)
from .codecs import decompress
from .records import Record, build_batch, compress, record_timestamp

__all__ = [
    "DEFAULT_MAX_INFLATED",
    "NO_TIMESTAMP",
    "LegacyMessage",
    "compress_legacy",
    "decompress_bounded",
    "down_convert",
    "is_legacy",
    "parse_message_set",
    "up_convert",
]

NO_TIMESTAMP = -1
TIMESTAMP_TYPE_BIT = 0x08
#: What one produce's message set may inflate to (moldau's bound).
DEFAULT_MAX_INFLATED = 64 * 1024 * 1024

_LOG_HEADER = struct.Struct(">qi")  # offset, size
_V0_HEADER = struct.Struct(">Ibb")  # crc, magic, attributes
_V1_HEADER = struct.Struct(">Ibbq")  # crc, magic, attributes, timestamp
_INT32 = struct.Struct(">i")
_MAGIC_POS = 16  # offset(8) + size(4) + crc(4): same place as a v2 batch's magic


@dataclass(frozen=True, slots=True)
class LegacyMessage:
    """One uncompressed message as the client sent it (wrappers unpacked)."""

    timestamp: int
    key: bytes | None
    value: bytes | None


def is_legacy(records: bytes | memoryview) -> bool:
    """Whether ``records`` starts with a magic 0/1 message rather than a v2 batch."""
    return len(records) > _MAGIC_POS and records[_MAGIC_POS] in (0, 1)


# --- parsing ----------------------------------------------------------------


@dataclass(slots=True)
class _Parsed:
    magic: int
    attributes: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def _read_nullable(buf: memoryview, pos: int, end: int) -> tuple[bytes | None, int]:
    if pos + 4 > end:
        raise CorruptRecordError("message field runs past the end of the message")
    (length,) = _INT32.unpack_from(buf, pos)
    pos += 4
    if length < 0:
        return None, pos
    if pos + length > end:
        raise CorruptRecordError("message field runs past the end of the message")
    return bytes(buf[pos : pos + length]), pos + length


def _iter_messages(buf: memoryview) -> Iterator[_Parsed]:
    """Every top-level message of ``buf``, CRC-checked; the set must be whole."""
    pos = 0
    while pos < len(buf):
        if pos + _LOG_HEADER.size + _V0_HEADER.size > len(buf):
            raise CorruptRecordError("truncated message header")
        offset, size = _LOG_HEADER.unpack_from(buf, pos)
        start = pos + _LOG_HEADER.size
        end = start + size
        if size < _V0_HEADER.size + 8 or end > len(buf):
            raise CorruptRecordError(f"message size {size} out of bounds")
        crc, magic, attributes = _V0_HEADER.unpack_from(buf, start)
        if magic not in (0, 1):
            raise CorruptRecordError(f"magic {magic} in a message set")
        if zlib.crc32(buf[start + 4 : end]) != crc:
            raise CorruptRecordError("message CRC mismatch")
        body = start + _V0_HEADER.size
        timestamp = NO_TIMESTAMP
        if magic == 1:
            if size < _V1_HEADER.size + 8:
                raise CorruptRecordError(f"message size {size} out of bounds")
            timestamp = _V1_HEADER.unpack_from(buf, start)[3]
            body = start + _V1_HEADER.size
        key, body = _read_nullable(buf, body, end)
        value, body = _read_nullable(buf, body, end)
        if body != end:
            raise CorruptRecordError("message size does not match its fields")
        yield _Parsed(magic, attributes, offset, timestamp, key, value)
        pos = end


def parse_message_set(
    records: bytes | memoryview, *, max_inflated: int = DEFAULT_MAX_INFLATED
) -> tuple[int, list[LegacyMessage]]:
    """The codec and the messages of a produced message set, wrappers unpacked.

    The codec is the last compressed wrapper's (Kafka's ``sourceCompression``),
    NONE if no message was compressed. Inner messages of a v1 wrapper with
    LogAppendTime take the wrapper's timestamp, as Kafka's readers do.
    """
    codec = COMPRESSION_NONE
    inflated = 0
    out: list[LegacyMessage] = []
    for message in _iter_messages(memoryview(records)):
        message_codec = message.attributes & COMPRESSION_MASK
        if message_codec == COMPRESSION_NONE:
            out.append(LegacyMessage(message.timestamp, message.key, message.value))
            continue
        if message.value is None:
            raise InvalidRecordError("compressed wrapper message with a null value")
        codec = message_codec
        inner = decompress_bounded(
            message_codec, message.value, message.magic, max_inflated - inflated
        )
        inflated += len(inner)
        log_append = message.magic == 1 and message.attributes & TIMESTAMP_TYPE_BIT
        for item in _iter_messages(memoryview(inner)):
            if item.attributes & COMPRESSION_MASK != COMPRESSION_NONE:
                raise InvalidRecordError("compressed message inside a compressed wrapper")
            if item.magic != message.magic:
                raise InvalidRecordError(
                    f"inner magic {item.magic} differs from its wrapper's {message.magic}"
                )
            timestamp = message.timestamp if log_append else item.timestamp
            out.append(LegacyMessage(timestamp, item.key, item.value))
    if not out:
        raise CorruptRecordError("message set without messages")
    return codec, out


def up_convert(records: bytes | memoryview, *, max_inflated: int = DEFAULT_MAX_INFLATED) -> bytes:
    """One v2 batch holding the message set's messages, as Kafka's LogValidator
    builds it: the producer's codec kept, CreateTime with v1's timestamps and
    NO_TIMESTAMP (-1) for v0's, no producer id. Offsets and LogAppendTime are
    the log's to assign, as for any v2 batch."""
    codec, messages = parse_message_set(records, max_inflated=max_inflated)
    base = messages[0].timestamp
    batch_records = [Record(i, m.timestamp - base, m.key, m.value) for i, m in enumerate(messages)]
    return build_batch(batch_records, base_timestamp=base, compression=codec)


# --- down-conversion --------------------------------------------------------


def _message(offset: int, magic: int, attributes: int, timestamp: int, record: Record) -> bytes:
    if magic == 0:
        head = struct.pack(">bb", 0, attributes)
    else:
        head = struct.pack(">bbq", 1, attributes, timestamp)
    parts = [head]
    for field in (record.key, record.value):
        parts.append(_INT32.pack(-1 if field is None else len(field)))
        if field:
            parts.append(field)
    body = b"".join(parts)
    return _LOG_HEADER.pack(offset, len(body) + 4) + struct.pack(">I", zlib.crc32(body)) + body


def down_convert(
    header: BatchHeader, records: Sequence[Record], magic: int, first_offset: int
) -> bytes:
    """The message set of magic ``magic`` (0 or 1) for one v2 batch, as Kafka's
    ``RecordsUtil.downConvert`` writes it: records before ``first_offset``
    left out, headers dropped, v0 without timestamps, one wrapper with the
    batch's codec when it was compressed. Empty for a control batch (old
    clients cannot read them) or when nothing is left."""
    if header.is_control:
        return b""
    attributes = 0
    if magic == 1 and header.timestamp_type == TIMESTAMP_LOG_APPEND_TIME:
        attributes = TIMESTAMP_TYPE_BIT
    kept = [r for r in records if header.base_offset + r.offset_delta >= first_offset]
    if not kept:
        return b""
    codec = header.compression
    inner = b"".join(
        _message(
            _inner_offset(header, r, magic, codec),
            magic,
            attributes,
            record_timestamp(header, r),
            r,
        )
        for r in kept
    )
    if codec == COMPRESSION_NONE:
        return inner
    last = kept[-1]
    max_timestamp = max(record_timestamp(header, r) for r in kept)
    wrapper = Record(0, 0, None, compress_legacy(codec, inner, magic))
    return _message(
        header.base_offset + last.offset_delta, magic, attributes | codec, max_timestamp, wrapper
    )


def _inner_offset(header: BatchHeader, record: Record, magic: int, codec: int) -> int:
    """Absolute, except in a v1 wrapper: relative to the batch's base offset,
    so the wrapper's offset (the last record's) maps them back across gaps."""
    if magic == 1 and codec != COMPRESSION_NONE:
        return record.offset_delta
    return header.base_offset + record.offset_delta


# --- codecs -----------------------------------------------------------------

_LZ4_MAGIC = b"\x04\x22\x4d\x18"


def compress_legacy(codec: int, data: bytes, magic: int) -> bytes:
    """``data`` compressed for a wrapper of magic ``magic`` (v0's LZ4 header
    checksum is the broken one)."""
    if codec == COMPRESSION_LZ4 and magic == 0:
        frame = bytearray(compress(codec, data))
        hc_pos = _lz4_header_length(frame) - 1
        frame[hc_pos] = _lz4_header_checksum(frame[:hc_pos], broken=True)
        return bytes(frame)
    if codec not in (COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4):
        raise ValueError(f"codec {codec} does not exist in message format v{magic}")
    return compress(codec, data)


def decompress_bounded(codec: int, data: bytes, magic: int, limit: int) -> bytes:
    """A wrapper's value inflated, refused (CORRUPT_MESSAGE) beyond ``limit``
    bytes: the bounded decoders of v2 batches (``codecs.decompress``), after
    giving a v0 LZ4 frame the header checksum the LZ4 library expects."""
    if codec not in (COMPRESSION_GZIP, COMPRESSION_SNAPPY, COMPRESSION_LZ4):
        raise CorruptRecordError(f"codec {codec} does not exist in message format v{magic}")
    if codec == COMPRESSION_LZ4:
        data = _standard_lz4_header(data, magic)
    return bytes(decompress(codec, data, limit))


def _lz4_header_length(frame: bytes | bytearray | memoryview) -> int:
    """Bytes of an LZ4 frame header, checksum byte included."""
    if len(frame) < 7 or bytes(frame[:4]) != _LZ4_MAGIC:
        raise CorruptRecordError("not an LZ4 frame")
    flags = frame[4]
    if flags >> 6 != 1:
        raise CorruptRecordError("unsupported LZ4 frame version")
    return 7 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0)


def _standard_lz4_header(data: bytes, magic: int) -> bytes:
    """``data`` with a correct LZ4 header checksum. Kafka 0.8 (message format
    v0) computed it over the magic number too; v1 wrappers must be correct."""
    header_length = _lz4_header_length(data)
    if len(data) < header_length:
        raise CorruptRecordError("truncated LZ4 frame header")
    hc = data[header_length - 1]
    correct = _lz4_header_checksum(data[: header_length - 1], broken=False)
    if hc == correct:
        return data
    if magic != 0 or hc != _lz4_header_checksum(data[: header_length - 1], broken=True):
        raise CorruptRecordError("LZ4 frame header checksum mismatch")
    return data[: header_length - 1] + bytes([correct]) + data[header_length:]


_P1, _P2, _P3, _P4, _P5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
_M32 = 0xFFFFFFFF


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M32


def _xxh32(data: bytes | bytearray | memoryview, seed: int = 0) -> int:
    """XXH32 of a few bytes (an LZ4 frame descriptor), from the xxHash spec."""
    n = len(data)
    pos = 0
    if n >= 16:
        v = [(seed + _P1 + _P2) & _M32, (seed + _P2) & _M32, seed, (seed - _P1) & _M32]
        while pos + 16 <= n:
            for i in range(4):
                (lane,) = struct.unpack_from("<I", data, pos + 4 * i)
                v[i] = (_rotl((v[i] + lane * _P2) & _M32, 13) * _P1) & _M32
            pos += 16
        acc = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _M32
    else:
        acc = (seed + _P5) & _M32
    acc = (acc + n) & _M32
    while pos + 4 <= n:
        (lane,) = struct.unpack_from("<I", data, pos)
        acc = (_rotl((acc + lane * _P3) & _M32, 17) * _P4) & _M32
        pos += 4
    while pos < n:
        acc = (_rotl((acc + data[pos] * _P5) & _M32, 11) * _P1) & _M32
        pos += 1
    acc ^= acc >> 15
    acc = (acc * _P2) & _M32
    acc ^= acc >> 13
    acc = (acc * _P3) & _M32
    return acc ^ (acc >> 16)


def _lz4_header_checksum(header: bytes | bytearray | memoryview, *, broken: bool) -> int:
    """The header checksum byte of the frame header ``header`` (magic number
    included, checksum byte excluded): over the descriptor only, or, as Kafka
    0.8 wrote it, over the magic number too."""
    return (_xxh32(header if broken else header[4:]) >> 8) & 0xFF
