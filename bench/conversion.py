"""Cost of message format conversion per GB, against plain v2, in one run.

    .venv/bin/python bench/conversion.py [--mib 64] [--repeat 3] [--codecs none,gzip,snappy,lz4]

For each codec, the same records (1 KiB values, half random, half zeros, so
the codecs have something to do; 100 records a produce) go through a real
partition log in a temporary directory four ways:

- v2 append: a client's v2 batch appended as it came (``PartitionLog.append``);
- up-convert + append: the same records as a magic 1 message set (built
  beforehand, as a client would send it) up-converted, then appended;
- v2 read: the log read in 1 MiB fetches, slices read into memory (the
  broker sends them with sendfile without reading them: this is an upper
  bound on what Fetch v4+ costs);
- down-convert read: the same fetches answered as Fetch v2-v3 (magic 1) and
  v0-v1 (magic 0) are, through the broker's own conversion
  (``_old_versions._converted``).

Figures are CPU seconds of the process (``time.process_time``, so other
load on a shared machine moves them less than wall time would) per GiB of
record payload (the values), the median of ``--repeat`` rounds on fresh
logs; the lower the better. Markdown goes to stdout.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import struct
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any, cast

from moldau.broker.handlers._old_versions import _converted
from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.protocol.batch import iter_batches
from moldau.protocol.legacy_records import down_convert, up_convert
from moldau.protocol.records import Record, build_batch, decode_batch

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3}
VALUE_SIZE = 1024
PER_PRODUCE = 100
FETCH_BYTES = 1 << 20


def _values(count: int, rng: random.Random) -> list[bytes]:
    return [rng.randbytes(VALUE_SIZE // 2) + bytes(VALUE_SIZE // 2) for _ in range(count)]


class _Leader:
    """What ``_converted`` needs of a partition: a committed read of its log."""

    def __init__(self, log: PartitionLog) -> None:
        self.log = log

    def read(
        self, offset: int, max_bytes: int, *, committed_only: bool, min_one_batch: bool
    ) -> Any:
        return self.log.read(offset, max_bytes, min_one_batch=min_one_batch)


def _timed(action: Callable[[], None]) -> float:
    start = time.process_time()
    action()
    return time.process_time() - start


def _open(directory: str) -> PartitionLog:
    return PartitionLog.open(
        directory, "bench", 0, uuid.uuid4(), LogConfig(), lambda: int(time.time() * 1000)
    )


def measure(codec: int, mib: int, tmp: str) -> dict[str, float]:
    rng = random.Random(codec)
    produces = max(1, mib * (1 << 20) // (VALUE_SIZE * PER_PRODUCE))
    values = [_values(PER_PRODUCE, rng) for _ in range(produces)]
    v2 = [
        build_batch(
            [Record(i, i, None, v) for i, v in enumerate(group)],
            base_timestamp=1000,
            compression=codec,
        )
        for group in values
    ]
    # What an 0.10 client sends: the same records as magic 1 messages, in one
    # wrapper if compressed (built with the broker's own down-conversion).
    v1 = [down_convert(*decode_batch(batch), 1, 0) for batch in v2]
    plain, converted = _open(f"{tmp}/v2-{codec}"), _open(f"{tmp}/v1-{codec}")

    def append_plain() -> None:
        for batch in v2:
            plain.append(batch)

    def append_converted() -> None:
        for message_set in v1:
            converted.append(up_convert(message_set))

    def read_plain() -> None:
        offset = 0
        while offset < plain.log_end_offset:
            result = plain.read(offset, FETCH_BYTES)
            data = b"".join(piece.read() for piece in result.slices)
            offset = _last_offset(data) + 1

    def read_down(magic: int) -> Callable[[], None]:
        leader = cast(Any, _Leader(plain))

        def run() -> None:
            offset = 0
            while offset < plain.log_end_offset:
                data = _converted(leader, offset, FETCH_BYTES, magic, True)
                offset = _last_offset_legacy(data) + 1

        return run

    gib = produces * PER_PRODUCE * VALUE_SIZE / (1 << 30)
    figures = {
        "v2 append": _timed(append_plain) / gib,
        "up-convert + append": _timed(append_converted) / gib,
        "v2 read": _timed(read_plain) / gib,
        "down-convert read (v1)": _timed(read_down(1)) / gib,
        "down-convert read (v0)": _timed(read_down(0)) / gib,
    }
    plain.close()
    converted.close()
    return figures


def _last_offset(data: bytes) -> int:
    last = -1
    for header, _ in iter_batches(data):
        last = header.last_offset
    return last


def _last_offset_legacy(data: bytes) -> int:
    """The offset of the last (outer) message of a message set."""
    pos = last = 0
    while pos < len(data):
        last, size = struct.unpack_from(">qi", data, pos)
        pos += 12 + size
    return int(last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="record payload per codec")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--codecs", default=",".join(CODECS))
    args = parser.parse_args()
    rows = {}
    for name in args.codecs.split(","):
        rounds = []
        for _ in range(args.repeat):
            tmp = tempfile.mkdtemp(prefix="moldau-conversion-")
            try:
                rounds.append(measure(CODECS[name], args.mib, tmp))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        rows[name] = {c: statistics.median(r[c] for r in rounds) for c in rounds[0]}
    columns = list(next(iter(rows.values())))
    print(
        f"CPU seconds per GiB of record values ({args.mib} MiB per codec, 1 KiB values, "
        f"median of {args.repeat})\n"
    )
    print("| codec | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, figures in rows.items():
        print(f"| {name} | " + " | ".join(f"{figures[c]:.2f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
