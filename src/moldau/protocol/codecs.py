"""Kafka's compression codecs: compress, and decompress within a bound.

Codec framings, chosen for interoperability:

- gzip: a gzip member (several concatenated members are read, as Java's
  ``GZIPInputStream`` does).
- snappy: the Java client writes snappy-java's "xerial" framing (a 16-byte
  header, then length-prefixed raw snappy blocks of up to 32 KiB input);
  librdkafka writes raw snappy. Both readers accept both, so we write xerial
  like the Java client and detect the header when reading.
- lz4: the LZ4 *frame* format. The Java reader refuses linked blocks, so we
  write independent blocks.
- zstd: a zstd frame.

Bounded decompression. A compressed batch is a few bytes that can claim to
be anything: a 160 KB zstd frame of RLE blocks expands to 5 GiB, and a
frame, a snappy header or an lz4 content size can claim gigabytes for the
decoder to allocate. Every decompression here therefore takes a ``limit``
and never produces (or allocates) more than that:

- zstd, lz4, snappy: the framing is walked in Python first, block by block,
  without decompressing. Every block header states its size or bounds it
  (a zstd raw/RLE block states its output, a compressed one produces at most
  the frame's block maximum; an lz4 block at most the frame's block maximum;
  a snappy block starts with its exact length), so the walk yields an upper
  bound of the output that is tight for honest data (encoders fill every
  block but the last). A batch whose bound exceeds ``limit`` only by what
  compressed blocks *might* produce is decoded into a buffer of ``limit``
  bytes and refused when the decoder runs out of room; one whose stated
  sizes alone exceed it (the RLE bomb) is refused without decoding a byte.
- gzip: deflate has no block sizes, so it is streamed through ``zlib`` with
  ``max_length``: decoding stops at ``limit`` + 1 bytes.

Each decoder writes into one pre-sized buffer (``decompress_into``), so the
output is never copied nor grown; produce validation reuses one buffer per
thread for it.

The limit (:func:`decompression_limit`) is derived from the batch size and
``max.message.bytes``. Kafka has none: it streams records one by one and
holds only the current one. moldau decodes a batch's records as one buffer,
so it bounds that buffer instead, generously enough that no honest producer
meets it: librdkafka caps a batch's *uncompressed* size at ``batch.size``
(1 MB) and ``message.max.bytes``; the Java producer caps each record at
``max.request.size`` (1 MB) and fills ``batch.size`` (16 KiB) with an
estimated compression ratio, so its batches stay a small multiple of 16 KiB
unless the data is extremely repetitive.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable

import cramjam

from moldau.protocol.batch import (
    COMPRESSION_GZIP,
    COMPRESSION_LZ4,
    COMPRESSION_NONE,
    COMPRESSION_SNAPPY,
    COMPRESSION_ZSTD,
    CorruptRecordError,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "EXPANSION_FACTOR",
    "MAX_DECOMPRESSED_BYTES",
    "compress",
    "decompress",
    "decompression_limit",
]

DEFAULT_MAX_MESSAGE_BYTES = 1048588
"""Kafka's default ``message.max.bytes``: the bound for readers without a
topic config at hand (clients, the group coordinator)."""

EXPANSION_FACTOR = 64
"""A batch may decompress to this many times the larger of its own size and
``max.message.bytes`` (64 MiB with the defaults)."""

MAX_DECOMPRESSED_BYTES = 1 << 30
"""Whatever the configuration, no batch decompresses to more than 1 GiB
(a Java consumer could not hold more than 2 GiB in one buffer either)."""


def decompression_limit(batch_size: int, max_message_bytes: int) -> int:
    """Most bytes the records of a batch of ``batch_size`` bytes may
    decompress to, on a topic with ``max_message_bytes``."""
    return min(EXPANSION_FACTOR * max(batch_size, max_message_bytes), MAX_DECOMPRESSED_BYTES)


# --- compression ------------------------------------------------------------

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024
_BLOCK_LEN = struct.Struct(">i")
_ZSTD_LEVEL = 3  # the Java client's default


def _xerial_compress(data: bytes) -> bytes:
    out = bytearray(_XERIAL_HEADER)
    view = memoryview(data)
    for start in range(0, len(view), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK]))
        out += _BLOCK_LEN.pack(len(block))
        out += block
    return bytes(out)


def _lz4_compress(data: bytes) -> bytes:
    compressor = cramjam.lz4.Compressor(content_checksum=False, block_linked=False)
    compressor.compress(data)
    return bytes(compressor.finish())


def compress(codec: int, data: bytes) -> bytes:
    """The records section compressed with Kafka codec id ``codec``."""
    if codec == COMPRESSION_NONE:
        return data
    if codec == COMPRESSION_GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == COMPRESSION_SNAPPY:
        return _xerial_compress(data)
    if codec == COMPRESSION_LZ4:
        return _lz4_compress(data)
    if codec == COMPRESSION_ZSTD:
        return bytes(cramjam.zstd.compress(data, level=_ZSTD_LEVEL))
    raise ValueError(f"unknown compression codec {codec}")


# --- bounded decompression --------------------------------------------------

Buffer = bytes | bytearray | memoryview


_SCRATCH_MAX = 16 << 20
"""Largest output buffer a thread keeps for reuse."""


class _Scratch(threading.local):
    """A thread's reusable output buffer, for callers that are done with
    one decompressed batch before they decompress the next (produce
    validation). A fresh buffer per batch costs more than zero-filling it:
    a large one is a new mapping, page-faulted in and unmapped again."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def get(self, size: int) -> memoryview | bytearray:
        if size > _SCRATCH_MAX:
            return bytearray(size)
        if size > len(self.buffer):
            self.buffer = bytearray(min(max(size, 2 * len(self.buffer)), _SCRATCH_MAX))
        return memoryview(self.buffer)[:size]


_SCRATCH = _Scratch()


def decompress(
    codec: int, data: Buffer, limit: int, *, reuse: bool = False
) -> bytes | bytearray | memoryview:
    """The records section of a batch compressed with ``codec``, refused
    with ``CorruptRecordError`` if it cannot be decoded or would exceed
    ``limit`` bytes; any framing a Kafka client may write.

    With ``reuse``, the result may be a view of this thread's scratch
    buffer, valid until the thread's next ``reuse`` call.
    """
    if codec == COMPRESSION_NONE:
        if len(data) > limit:
            raise CorruptRecordError(f"records of {len(data)} bytes exceed the limit {limit}")
        return bytes(data)
    view = data if isinstance(data, memoryview) else memoryview(data)
    output = _SCRATCH.get if reuse else bytearray
    try:
        if codec == COMPRESSION_GZIP:
            return _gzip_decompress(view, limit)
        if codec == COMPRESSION_SNAPPY:
            return _snappy_decompress(view, limit, output)
        if codec == COMPRESSION_LZ4:
            bound = _lz4_bound(view, limit)
            return _decode_into(cramjam.lz4.decompress_into, view, bound, limit, output)
        if codec == COMPRESSION_ZSTD:
            bound = _zstd_bound(view, limit)
            return _decode_into(cramjam.zstd.decompress_into, view, bound, limit, output)
    except (cramjam.DecompressionError, zlib.error, struct.error, IndexError) as exc:
        raise CorruptRecordError(f"cannot decompress codec {codec}: {exc}") from exc
    raise CorruptRecordError(f"unknown compression codec {codec}")


Output = Callable[[int], bytearray | memoryview]
"""Where a decoder writes: a new bytearray, or the thread's scratch buffer."""


def _too_large(codec: str, limit: int) -> CorruptRecordError:
    return CorruptRecordError(f"{codec} records decompress to more than the limit of {limit} bytes")


def _decode_into(
    decode: Callable[[Buffer, bytearray | memoryview], int],
    data: memoryview,
    bound: int,
    limit: int,
    output: Output,
) -> bytearray | memoryview:
    """Run a cramjam ``decompress_into`` with an output buffer of
    ``min(bound, limit)`` bytes: the decoder fails when it runs out of room."""
    out = output(min(bound, limit))
    try:
        size = decode(data, out)
    except cramjam.DecompressionError as exc:
        if bound > limit:
            raise CorruptRecordError(
                f"records decompress to more than the limit of {limit} bytes, or are corrupt: {exc}"
            ) from exc
        raise
    if size == len(out):
        return out
    if isinstance(out, memoryview):
        return out[:size]
    del out[size:]
    return out


# gzip ------------------------------------------------------------------------


def _gzip_decompress(data: memoryview, limit: int) -> bytes:
    """Stream every gzip member through zlib, never past ``limit`` + 1 bytes."""
    parts: list[bytes] = []
    left = limit
    rest: bytes | memoryview = data
    while True:
        stream = zlib.decompressobj(31)
        part = stream.decompress(rest, left + 1)
        if len(part) > left:
            raise _too_large("gzip", limit)
        if not stream.eof:
            raise CorruptRecordError("truncated gzip stream")
        parts.append(part)
        left -= len(part)
        rest = stream.unused_data
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)


# snappy ------------------------------------------------------------------------


def _snappy_length(data: memoryview, pos: int, end: int) -> int:
    """The uncompressed length a raw snappy block at ``pos`` starts with."""
    result = shift = 0
    while shift < 35:
        if pos >= end:
            raise CorruptRecordError("truncated snappy length")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result
        shift += 7
    raise CorruptRecordError("snappy length longer than 5 bytes")


def _snappy_decompress(data: memoryview, limit: int, output: Output) -> bytearray | memoryview:
    """Raw snappy, or xerial framing: the exact output size of every block
    is checked against ``limit`` before that block is decoded."""
    if bytes(data[:8]) != _XERIAL_MAGIC:
        length = _snappy_length(data, 0, len(data))
        if length > limit:
            raise _too_large("snappy", limit)
        out = output(length)
        cramjam.snappy.decompress_raw_into(data, out)
        return out
    blocks: list[tuple[int, int]] = []
    total = 0
    pos = 0
    end = len(data)
    while pos < end:
        if bytes(data[pos : pos + 8]) == _XERIAL_MAGIC:  # (concatenated) stream header
            pos += len(_XERIAL_HEADER)
            continue
        if pos + 4 > end:
            raise CorruptRecordError("truncated xerial snappy block length")
        (length,) = _BLOCK_LEN.unpack_from(data, pos)
        pos += 4
        if length < 0 or pos + length > end:
            raise CorruptRecordError("truncated xerial snappy block")
        total += _snappy_length(data, pos, pos + length)
        if total > limit:
            raise _too_large("snappy", limit)
        blocks.append((pos, pos + length))
        pos += length
    out = output(total)
    at = 0
    for start, stop in blocks:
        at += cramjam.snappy.decompress_raw_into(data[start:stop], memoryview(out)[at:])
    if at != total:
        raise CorruptRecordError("snappy blocks shorter than their stated lengths")
    return out


# lz4 -----------------------------------------------------------------------------

_LZ4_MAGIC = 0x184D2204
_LZ4_BLOCK_MAX = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}
_UINT32_LE = struct.Struct("<I")
_UINT64_LE = struct.Struct("<Q")


def _lz4_bound(data: memoryview, limit: int) -> int:
    """Upper bound of the output of the lz4 frames in ``data``, from the
    frame descriptors and block headers (each block decodes to at most the
    frame's block maximum); stops counting once past ``limit``. Structure
    only: the decoder checks the checksums and the block contents."""
    bound = pos = 0
    end = len(data)
    while pos < end and bound <= limit:
        if _UINT32_LE.unpack_from(data, pos)[0] != _LZ4_MAGIC:
            raise CorruptRecordError("not an lz4 frame")
        flags, descriptor = data[pos + 4], data[pos + 5]
        if flags >> 6 != 1 or descriptor >> 4 not in _LZ4_BLOCK_MAX:
            raise CorruptRecordError("unsupported lz4 frame descriptor")
        block_max = _LZ4_BLOCK_MAX[descriptor >> 4]
        pos += 6
        if flags & 0x08:  # content size
            if _UINT64_LE.unpack_from(data, pos)[0] > limit:
                raise _too_large("lz4", limit)
            pos += 8
        if flags & 0x01:  # dictionary id
            pos += 4
        pos += 1  # header checksum
        block_checksum = 4 if flags & 0x10 else 0
        while True:
            (word,) = _UINT32_LE.unpack_from(data, pos)
            pos += 4
            if word == 0:
                break
            size = word & 0x7FFFFFFF
            if size > block_max:
                raise CorruptRecordError(f"lz4 block of {size} bytes over its maximum {block_max}")
            bound += size if word & 0x80000000 else block_max
            pos += size + block_checksum
            if bound > limit:
                return bound
        pos += 4 if flags & 0x04 else 0  # content checksum
    if pos > end:
        raise CorruptRecordError("truncated lz4 frame")
    return bound


# zstd ---------------------------------------------------------------------------

_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50  # ..0x184D2A5F
_ZSTD_BLOCK_MAX = 128 << 10
_ZSTD_FCS_SIZES = (0, 2, 4, 8)
_ZSTD_DICT_SIZES = (0, 1, 2, 4)


def _zstd_bound(data: memoryview, limit: int) -> int:
    """Upper bound of the output of the zstd frames in ``data``, from the
    frame headers and block headers; stops counting once past ``limit``.

    A raw or RLE block states its output size, a compressed block produces
    at most the frame's block maximum (its window, at most 128 KiB), and a
    frame content size, where given, is exact (the decoder checks it). A
    frame whose content size exceeds ``limit`` is refused without decoding,
    as are frames whose stated block sizes alone exceed it. The window a
    frame asks for is left to the decoder, which refuses more than 128 MiB
    and touches no more of it than the output it writes.
    """
    bound = stated = pos = 0
    end = len(data)
    while pos < end and bound <= limit:
        (magic,) = _UINT32_LE.unpack_from(data, pos)
        if magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
            pos += 8 + _UINT32_LE.unpack_from(data, pos + 4)[0]
            continue
        if magic != _ZSTD_MAGIC:
            raise CorruptRecordError("not a zstd frame")
        descriptor = data[pos + 4]
        pos += 5
        single_segment = descriptor & 0x20
        if descriptor & 0x08:
            raise CorruptRecordError("zstd frame header with the reserved bit set")
        window = 0
        if not single_segment:
            exponent, mantissa = data[pos] >> 3, data[pos] & 7
            window = (1 << (10 + exponent)) + ((1 << (10 + exponent)) >> 3) * mantissa
            pos += 1
        pos += _ZSTD_DICT_SIZES[descriptor & 3]
        fcs_size = _ZSTD_FCS_SIZES[descriptor >> 6] or (1 if single_segment else 0)
        content_size = -1
        if fcs_size:
            content_size = int.from_bytes(data[pos : pos + fcs_size], "little")
            content_size += 256 if fcs_size == 2 else 0
            pos += fcs_size
            if single_segment:
                window = content_size
        if content_size > limit:
            raise _too_large("zstd", limit)
        block_max = min(window, _ZSTD_BLOCK_MAX)
        frame = 0
        last = 0
        while not last:
            if pos + 3 > end:
                raise CorruptRecordError("truncated zstd frame")
            header = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            pos += 3
            last, kind, size = header & 1, (header >> 1) & 3, header >> 3
            if kind == 3 or size > block_max:
                raise CorruptRecordError("invalid zstd block header")
            if kind < 2:  # raw or RLE: the output size is stated
                stated += size
                if stated > limit:
                    raise _too_large("zstd", limit)
                frame += size
                pos += size if kind == 0 else 1
            else:
                frame += block_max
                pos += size
            if bound + frame > limit:
                return bound + frame
        bound += frame if content_size < 0 else min(frame, content_size)
        pos += 4 if descriptor & 0x04 else 0  # content checksum
    if pos > end:
        raise CorruptRecordError("truncated zstd frame")
    return bound
