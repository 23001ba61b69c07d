"""Decompression is bounded for every codec, on the produce path and for
stored batches: a bomb is refused with CORRUPT_MESSAGE after at most the
bound's worth of work, and never allocates what a header or frame claims.

Memory is checked with the process's peak RSS (``ru_maxrss``): a decoder
that inflated any of these bombs would add gigabytes to it.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable

import cramjam
import pytest

from hostile_batches import (
    GIB,
    gzip_bomb,
    hostile_batch,
    lz4_bomb,
    snappy_claiming,
    xerial_claiming,
    zstd_claiming,
    zstd_rle_bomb,
)
from moldau.log.compaction import clean_batch, keyed_offsets
from moldau.protocol import batch as b
from moldau.protocol.codecs import (
    DEFAULT_MAX_MESSAGE_BYTES,
    compress,
    decompress,
    decompression_limit,
)
from moldau.protocol.record_validation import validate_records
from moldau.protocol.records import decode_batch, scan_keys

CORRUPT_MESSAGE = 2
CODECS = [b.COMPRESSION_GZIP, b.COMPRESSION_SNAPPY, b.COMPRESSION_LZ4, b.COMPRESSION_ZSTD]
#: Peak RSS a refused bomb may add: the bound (64 MiB) plus the decoder's own.
MAX_GROWTH = 200 << 20


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def refused_within_bounds(action: Callable[[], object], seconds: float = 20.0) -> str:
    """Run ``action``; it must raise CORRUPT_MESSAGE, within ``seconds`` and
    without growing the peak RSS by more than the bound's worth."""
    before = peak_rss()
    start = time.monotonic()
    with pytest.raises(b.CorruptRecordError) as refused:
        action()
    assert time.monotonic() - start < seconds
    assert peak_rss() - before < MAX_GROWTH, "the decoder inflated the bomb"
    assert refused.value.error_code == CORRUPT_MESSAGE
    return str(refused.value)


def validate(raw: bytes) -> None:
    header = b.read_header(raw)
    b.validate(header, raw)
    validate_records(header, raw, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES)


BOMBS: dict[str, tuple[Callable[[], bytes], int]] = {
    "zstd: 160 KB of RLE blocks, 5 GiB": (zstd_rle_bomb, b.COMPRESSION_ZSTD),
    "zstd: header claims 5 GiB": (lambda: zstd_claiming(5 * GIB), b.COMPRESSION_ZSTD),
    "gzip: 1 MB of deflated zeros, 1000 MiB": (lambda: gzip_bomb(1000), b.COMPRESSION_GZIP),
    "lz4: 1 MB of 4 MiB blocks of zeros, 240 MiB": (lambda: lz4_bomb(60), b.COMPRESSION_LZ4),
    "snappy: header claims 4 GiB": (lambda: snappy_claiming(4 * GIB - 1), b.COMPRESSION_SNAPPY),
    "snappy: xerial block claims 2 GiB": (lambda: xerial_claiming(2 * GIB), b.COMPRESSION_SNAPPY),
}


@pytest.mark.parametrize("name", BOMBS.keys())
def test_bombs_are_refused_on_produce(name: str) -> None:
    make, codec = BOMBS[name]
    raw = hostile_batch(make(), codec)
    refused_within_bounds(lambda: validate(raw))


def test_the_zstd_rle_bomb_is_refused_from_its_block_headers() -> None:
    """Its blocks state their sizes: no byte of it needs decoding."""
    bomb = zstd_rle_bomb()
    assert len(bomb) < 165_000
    start = time.process_time()
    message = refused_within_bounds(lambda: decompress(b.COMPRESSION_ZSTD, bomb, 64 << 20))
    assert "more than the limit" in message
    assert time.process_time() - start < 1.0


@pytest.mark.parametrize("name", BOMBS.keys())
def test_bombs_stored_in_a_log_are_refused_by_every_reader(name: str) -> None:
    """ListOffsets (decode_batch), the cleaner's key map (scan_keys,
    keyed_offsets) and cleaning (clean_batch) read stored batches."""
    make, codec = BOMBS[name]
    raw = hostile_batch(make(), codec)
    header = b.read_header(raw)
    view = memoryview(raw)
    refused_within_bounds(lambda: decode_batch(raw))
    refused_within_bounds(lambda: scan_keys(raw))
    refused_within_bounds(lambda: keyed_offsets(raw, DEFAULT_MAX_MESSAGE_BYTES))
    refused_within_bounds(
        lambda: clean_batch(
            header,
            view,
            {},
            now=0,
            delete_retention_ms=0,
            max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
        )
    )


@pytest.mark.parametrize("codec", CODECS)
def test_the_bound_is_exact_for_every_codec(codec: int) -> None:
    data = os.urandom(3000) * 300
    packed = compress(codec, data)
    assert decompress(codec, packed, len(data)) == data
    with pytest.raises(b.CorruptRecordError, match="limit"):
        decompress(codec, packed, len(data) - 1)


@pytest.mark.parametrize("codec", CODECS)
def test_framings_other_encoders_write_are_read(codec: int) -> None:
    """librdkafka's raw snappy, frames with checksums and content sizes,
    frames without them, concatenated frames and gzip members."""
    import lz4.frame
    import zstandard

    data = os.urandom(2000) * 100
    variants = {
        b.COMPRESSION_GZIP: [bytes(cramjam.gzip.compress(data[:7])) + compress(codec, data[7:])],
        b.COMPRESSION_SNAPPY: [bytes(cramjam.snappy.compress_raw(data))],
        b.COMPRESSION_LZ4: [
            lz4.frame.compress(data, content_checksum=True, block_checksum=True, store_size=True),
            lz4.frame.compress(data, block_linked=True, store_size=False),
            compress(codec, data[:7]) + compress(codec, data[7:]),
        ],
        b.COMPRESSION_ZSTD: [
            zstandard.ZstdCompressor(write_content_size=False, write_checksum=True).compress(data),
            zstandard.ZstdCompressor(level=19).compress(data),
            compress(codec, data[:7]) + compress(codec, data[7:]),
        ],
    }[codec]
    for packed in variants:
        assert decompress(codec, packed, len(data)) == data


@pytest.mark.parametrize("codec", [b.COMPRESSION_LZ4, b.COMPRESSION_ZSTD])
def test_checksums_are_checked(codec: int) -> None:
    import lz4.frame
    import zstandard

    data = os.urandom(1000) * 10
    packed = bytearray(
        lz4.frame.compress(data, content_checksum=True)
        if codec == b.COMPRESSION_LZ4
        else zstandard.ZstdCompressor(write_checksum=True).compress(data)
    )
    packed[-1] ^= 1
    with pytest.raises(b.CorruptRecordError):
        decompress(codec, bytes(packed), 1 << 20)


def test_the_limit_follows_the_batch_size_and_max_message_bytes() -> None:
    assert decompression_limit(1000, DEFAULT_MAX_MESSAGE_BYTES) == 64 * DEFAULT_MAX_MESSAGE_BYTES
    assert decompression_limit(4 << 20, DEFAULT_MAX_MESSAGE_BYTES) == 256 << 20
    assert decompression_limit(1000, 1 << 30) == 1 << 30
