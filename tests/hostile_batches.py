"""Hostile record batches, shared by the unit and integration tests.

Decompression bombs for every codec (small payloads that expand far past
any honest batch), built from their framing so that none is ever inflated
here, and batches of arbitrary bytes with a valid CRC.
"""

from __future__ import annotations

import zlib

import lz4.frame

from moldau.protocol import batch as b

GIB = 1 << 30


def zstd_rle_bomb(total: int = 5 * GIB) -> bytes:
    """A zstd frame of RLE blocks: 4 bytes per 128 KiB, so 5 GiB in 160 KB.
    No content size in the header, so only the blocks tell the size."""
    block = 128 << 10
    out = bytearray((0xFD2FB528).to_bytes(4, "little"))
    out.append(0x00)  # frame header: no content size, no checksum, no dictionary
    out.append(7 << 3)  # window 2^(10+7) = 128 KiB
    count = total // block
    for i in range(count):
        last = 1 if i == count - 1 else 0
        out += (last | 1 << 1 | block << 3).to_bytes(3, "little")  # RLE block
        out.append(0x41)
    return bytes(out)


def zstd_claiming(total: int) -> bytes:
    """A one-byte zstd frame whose header claims ``total`` bytes of content."""
    out = bytearray((0xFD2FB528).to_bytes(4, "little"))
    out.append(0xE0)  # 8-byte content size, single segment
    out += total.to_bytes(8, "little")
    out += (1 | 0 << 1 | 1 << 3).to_bytes(3, "little") + b"x"  # last, raw, 1 byte
    return bytes(out)


def gzip_bomb(mebibytes: int) -> bytes:
    """A gzip member of zeros: deflate's best ratio (about 1000:1). Each
    fully flushed MiB of zeros deflates to the same bytes, so the member is
    assembled from one of them instead of compressing ``mebibytes`` MiB."""
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = (0).to_bytes(4, "little") + ((mebibytes << 20) & 0xFFFFFFFF).to_bytes(4, "little")
    return header + chunk * mebibytes + deflate.flush() + trailer


def lz4_bomb(blocks: int) -> bytes:
    """An lz4 frame of independent 4 MiB blocks of zeros (about 16 KB each)."""
    frame = lz4.frame.compress(
        bytes(4 << 20),
        block_size=lz4.frame.BLOCKSIZE_MAX4MB,
        block_linked=False,
        content_checksum=False,
        store_size=False,
    )
    header, block, end = frame[:7], frame[7:-4], frame[-4:]
    return header + block * blocks + end


def snappy_claiming(total: int) -> bytes:
    """Raw snappy whose length header claims ``total`` bytes."""
    out = bytearray()
    value = total
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out) + b"\x00" * 8


def xerial_claiming(total: int) -> bytes:
    """Xerial-framed snappy with one block whose raw header claims ``total``."""
    block = snappy_claiming(total)
    return b"\x82SNAPPY\x00" + (1).to_bytes(4, "big") * 2 + len(block).to_bytes(4, "big") + block


def hostile_batch(payload: bytes, codec: int = b.COMPRESSION_NONE, count: int = 1) -> bytes:
    """A batch of ``count`` records whose records section is ``payload``
    (compressed with ``codec``), with a valid CRC: only parsing the records
    can tell it apart from a good one."""
    return b.assemble_batch(
        payload=payload,
        records_count=count,
        last_offset_delta=count - 1,
        attributes=codec,
        base_timestamp=0,
        max_timestamp=0,
    )
