"""Micro-benchmark of record validation on the produce path.

    .venv/bin/python bench/validation.py [--repeat N] [--value-size B ...]

For batches of about 1 KB, 16 KB and 1 MB of records (values of
``--value-size`` bytes, text-like so that codecs compress them about as
they compress JSON; null keys, no headers), for every codec, it times in CPU
seconds (``time.process_time``), median of ``--repeat`` rounds. Values come
in two shapes: "same" (every value of the size, what librdkafka's benchmark
sends: records of one shape, which the scan checks in runs) and "varied"
(sizes spread over 50-150% of it, which the scan checks one by one):

- ``crc``: ``batch.validate``, the header rules and CRC32C that the
  produce path ran before records were validated;
- ``decompress``: the bounded decompression alone;
- ``records``: ``validate_records`` (decompression plus the record scan),
  what validation adds to every produced batch.

Per-GB figures divide by the bytes of record values, as bench/run.py does.
Markdown goes to stdout.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable

from moldau.protocol import batch as b
from moldau.protocol.codecs import (
    DEFAULT_MAX_MESSAGE_BYTES,
    decompress,
    decompression_limit,
)
from moldau.protocol.record_validation import validate_records
from moldau.protocol.records import Record, build_batch

CODECS = {
    "none": b.COMPRESSION_NONE,
    "gzip": b.COMPRESSION_GZIP,
    "snappy": b.COMPRESSION_SNAPPY,
    "lz4": b.COMPRESSION_LZ4,
    "zstd": b.COMPRESSION_ZSTD,
}
BATCH_SIZES = {"1 KB": 1_000, "16 KB": 16_000, "1 MB": 1_000_000}
#: Enough calls per round that each round takes a measurable ~20 ms.
ROUND_SECONDS = 0.02


def text_values(count: int, size: int, varied: bool, rng: random.Random) -> list[bytes]:
    words = [rng.randbytes(rng.randrange(2, 8)).hex().encode() for _ in range(500)]
    values = []
    for _ in range(count):
        length = rng.randrange(size // 2, size * 3 // 2 + 1) if varied else size
        value = bytearray()
        while len(value) < length:
            value += rng.choice(words) + b" "
        values.append(bytes(value[:length]))
    return values


def per_call(action: Callable[[], object], repeat: int) -> float:
    """Median CPU seconds of one call."""
    start = time.process_time()
    action()
    calls = max(1, int(ROUND_SECONDS / max(time.process_time() - start, 1e-6)))
    rounds = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(calls):
            action()
        rounds.append((time.process_time() - start) / calls)
    return statistics.median(rounds)


def measure(codec: int, records: list[Record], repeat: int) -> tuple[int, float, float, float]:
    """Wire size and CPU seconds of the CRC check, the decompression and
    the records validation of one batch of ``records``."""
    raw = build_batch(records, base_timestamp=1_700_000_000_000, compression=codec)
    header = b.read_header(raw)
    view = memoryview(raw)
    limit = decompression_limit(header.size, DEFAULT_MAX_MESSAGE_BYTES)
    crc = per_call(lambda: b.validate(header, view), repeat)
    unpack = per_call(lambda: decompress(codec, view[b.HEADER_SIZE :], limit), repeat)
    check = per_call(
        lambda: validate_records(header, view, max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES),
        repeat,
    )
    return len(raw), crc, unpack, check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds per figure (median)")
    parser.add_argument("--value-size", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    rng = random.Random(7)
    print(
        "| values | batch | codec | bytes on the wire | records | crc µs | decompress µs "
        "| records µs | records s/GB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for value_size in args.value_size:
        for varied in (False, True):
            shape = "varied" if varied else "same"
            for batch_label, batch_bytes in BATCH_SIZES.items():
                count = max(1, batch_bytes // (value_size + 8))
                values = text_values(count, value_size, varied, rng)
                records = [Record(i, i % 5, None, value) for i, value in enumerate(values)]
                value_bytes = sum(map(len, values))
                for codec_name, codec in CODECS.items():
                    size, crc, unpack, check = measure(codec, records, args.repeat)
                    print(
                        f"| {value_size} B {shape} | {batch_label} | {codec_name} | {size:,} "
                        f"| {count:,} | {crc * 1e6:.1f} | {unpack * 1e6:.1f} | {check * 1e6:.1f} "
                        f"| {check / value_bytes * 1e9:.2f} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
