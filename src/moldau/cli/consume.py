"""``moldau consume TOPIC``: print records, one per line.

Reads all partitions of the topic (or one), from the end by default, from the
beginning with ``--from-beginning`` or from ``--offset``. Stops after
``--max-messages``, after ``--timeout-ms`` without a record, or on Ctrl-C.
A null key or value prints as ``null``, as Kafka's console consumer does.

With ``--group G`` it is a member of consumer group G instead: it reads the
partitions the group assigns it, from the group's committed offsets (or, for
partitions without one, the end, or the beginning with ``--from-beginning``),
commits after printing each batch, and leaves the group when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from .common import CliError, add_bootstrap, add_max_block, run_async

if TYPE_CHECKING:
    from moldau.client.types import ConsumerRecord, TopicPartition


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "consume",
        help="print records of a topic",
        description="Print the records of TOPIC, one value (and key) per line.",
    )
    parser.add_argument("topic")
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the earliest offset"
    )
    parser.add_argument(
        "--group",
        metavar="GROUP",
        help="consume as a member of this consumer group, committing what was printed",
    )
    parser.add_argument("--partition", type=int, help="read only this partition")
    parser.add_argument(
        "--offset",
        help="start offset in --partition: a number, earliest or latest",
    )
    parser.add_argument(
        "--max-messages", type=int, metavar="N", help="exit after printing N records"
    )
    parser.add_argument("--print-key", action="store_true", help="print KEY SEP VALUE")
    parser.add_argument(
        "--key-separator", default="\t", metavar="SEP", help="between key and value (default tab)"
    )
    parser.add_argument(
        "--timeout-ms", type=int, metavar="MS", help="exit after MS without a record"
    )
    add_max_block(parser)
    add_bootstrap(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    start: int | str = "earliest" if args.from_beginning else "latest"
    if args.group is not None and (args.partition is not None or args.offset is not None):
        raise CliError("--group takes its partitions from the group: no --partition or --offset")
    if args.offset is not None:
        if args.partition is None:
            raise CliError("--offset needs --partition")
        start = _parse_offset(args.offset)
    if args.max_messages is not None and args.max_messages < 0:
        raise CliError("--max-messages must not be negative")
    return run_async(_consume(args, start, sys.stdout.buffer))


def _parse_offset(text: str) -> int | str:
    if text in ("earliest", "latest"):
        return text
    try:
        offset = int(text)
    except ValueError:
        raise CliError(f"--offset must be a number, earliest or latest, not {text!r}") from None
    if offset < 0:
        raise CliError("--offset must not be negative")
    return offset


async def _consume(args: argparse.Namespace, start: int | str, out: BinaryIO) -> int:
    if args.max_messages == 0:
        return 0
    if args.group is not None:
        return await _consume_in_group(args, start, out)
    return await _consume_assigned(args, start, out)


async def _consume_assigned(args: argparse.Namespace, start: int | str, out: BinaryIO) -> int:
    from moldau.client.consumer import Consumer
    from moldau.client.types import TopicPartition
    from moldau.protocol.errors import ErrorCode, KafkaError

    reset = start if isinstance(start, str) else "none"
    consumer = Consumer(args.bootstrap_server, client_id="moldau-cli", auto_offset_reset=reset)
    async with consumer as c:
        partitions = await c.partitions_for(args.topic, timeout_ms=args.max_block_ms)
        if args.partition is not None:
            if args.partition not in partitions:
                raise KafkaError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    f"partition {args.partition} of topic '{args.topic}' does not exist "
                    f"({len(partitions)} partitions)",
                )
            partitions = [args.partition]
        c.assign(TopicPartition(args.topic, p) for p in partitions)
        if isinstance(start, int):
            c.seek(TopicPartition(args.topic, partitions[0]), start)
        return await _print_records(c, args, out)


async def _consume_in_group(args: argparse.Namespace, start: int | str, out: BinaryIO) -> int:
    from moldau.client.group_member import GroupConsumer

    assert isinstance(start, str)
    member = GroupConsumer(
        args.bootstrap_server,
        args.group,
        [args.topic],
        client_id="moldau-cli",
        auto_offset_reset=start,
    )
    async with member:
        # Fail on a missing topic as the plain consumer does, not with an
        # empty assignment.
        await member.consumer.partitions_for(args.topic, timeout_ms=args.max_block_ms)
        return await _print_records(member, args, out)


class _Source(Protocol):
    async def getmany(
        self, *, timeout_ms: float = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]: ...


async def _print_records(source: _Source, args: argparse.Namespace, out: BinaryIO) -> int:
    """Print until --max-messages or --timeout-ms; a group member commits
    what it printed after each batch."""
    commit = getattr(source, "commit", None)
    separator = args.key_separator.encode()
    limit = args.max_messages
    printed = 0
    loop = asyncio.get_running_loop()
    idle_deadline = None if args.timeout_ms is None else loop.time() + args.timeout_ms / 1000
    while True:
        wait_ms = 1_000.0
        if idle_deadline is not None:
            wait_ms = (idle_deadline - loop.time()) * 1000
            if wait_ms <= 0:
                return 0
        remaining = None if limit is None else limit - printed
        batches = await source.getmany(timeout_ms=wait_ms, max_records=remaining)
        if not batches:
            continue
        for records in batches.values():
            for record in records:
                if args.print_key:
                    out.write(_show(record.key) + separator)
                out.write(_show(record.value) + b"\n")
                printed += 1
        out.flush()
        if commit is not None:
            await commit(batches)
        if limit is not None and printed >= limit:
            return 0
        if args.timeout_ms is not None:
            idle_deadline = loop.time() + args.timeout_ms / 1000


def _show(data: bytes | None) -> bytes:
    return b"null" if data is None else data
