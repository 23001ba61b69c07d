"""``moldau produce TOPIC``: one record per line of stdin.

Stdin is read in chunks on a thread, so that the event loop keeps sending
(linger timers fire) while a person types, and so that a regular file, a pipe
and a terminal all work the same. The thread is a daemon of our own, not the
loop's default executor: on Ctrl-C the loop waits for its executor's threads
to finish, and a thread blocked reading a terminal never does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from .common import CliError, add_bootstrap, add_max_block, run_async

PARTITIONERS = ("murmur2", "crc32", "round-robin")
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
_CHUNK = 1 << 16


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "produce",
        help="send lines of stdin as records",
        description="Send each line of stdin as one record to TOPIC.",
    )
    parser.add_argument("topic")
    parser.add_argument(
        "--key-separator",
        metavar="SEP",
        help="each line is KEY SEP VALUE (split at the first SEP); without it, no keys",
    )
    parser.add_argument(
        "--partitioner",
        choices=PARTITIONERS,
        default="murmur2",
        help="murmur2 places keys as the Java client does, crc32 as librdkafka's "
        "'consistent' (default murmur2)",
    )
    parser.add_argument("--partition", type=int, help="send every record to this partition")
    parser.add_argument(
        "--acks", choices=("0", "1", "-1", "all"), default="all", help="(default all)"
    )
    parser.add_argument("--compression", choices=COMPRESSIONS, default="none")
    parser.add_argument("--linger-ms", type=float, default=5, help="(default 5)")
    parser.add_argument("--batch-size", type=int, default=16_384, help="(default 16384)")
    add_max_block(parser)
    add_bootstrap(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    separator = args.key_separator.encode() if args.key_separator is not None else None
    if separator == b"":
        raise CliError("--key-separator must not be empty")
    return run_async(_produce(args, separator, sys.stdin.buffer))


async def _produce(args: argparse.Namespace, separator: bytes | None, source: BinaryIO) -> int:
    from moldau.client.producer import Producer
    from moldau.client.types import RecordMetadata
    from moldau.protocol.errors import KafkaError

    failures: list[KafkaError] = []

    def note(future: asyncio.Future[RecordMetadata]) -> None:
        # The producer fails records only with KafkaError; keep the first.
        error = None if future.cancelled() else future.exception()
        if isinstance(error, KafkaError) and not failures:
            failures.append(error)

    async with Producer(
        args.bootstrap_server,
        client_id="moldau-cli",
        acks=args.acks,
        linger_ms=args.linger_ms,
        batch_size=args.batch_size,
        compression=args.compression,
        partitioner=args.partitioner,
        max_block_ms=args.max_block_ms,
    ) as producer:
        number = 0
        async for line in _lines(source):
            number += 1
            key = None
            if separator is not None:
                key, found, value = line.partition(separator)
                if not found:
                    await producer.flush()
                    raise CliError(f"line {number} has no key separator {separator.decode()!r}")
            else:
                value = line
            future = await producer.send(args.topic, value, key, partition=args.partition)
            future.add_done_callback(note)
            if failures:
                break
        await producer.flush()
    if failures:
        raise failures[0]
    return 0


async def _lines(source: BinaryIO) -> AsyncIterator[bytes]:
    """Lines of ``source`` without their line ending (``\\n`` or ``\\r\\n``)."""
    chunks = _chunks(source)
    pending = b""
    while chunk := await chunks.get():
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line[:-1] if line.endswith(b"\r") else line
    if pending:
        yield pending


def _chunks(source: BinaryIO) -> asyncio.Queue[bytes]:
    """Chunks of ``source`` as a daemon thread reads them; ``b""`` at the end.

    The thread waits while a few chunks are queued, so a large file is not
    read into memory faster than it is sent.
    """
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=4)
    # The descriptor, not the buffered file: at exit the interpreter takes the
    # buffered stdin's lock, which a thread blocked in read would hold (a
    # fatal error, SIGABRT).
    fd = source.fileno()

    def pump() -> None:
        try:
            while True:
                chunk = os.read(fd, _CHUNK)
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
                if not chunk:
                    return
        except BaseException:  # the loop stopped (Ctrl-C): nobody is reading
            return

    threading.Thread(target=pump, name="moldau-stdin", daemon=True).start()
    return chunks
