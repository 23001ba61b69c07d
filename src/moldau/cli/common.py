"""What the command modules share: the bootstrap and topic-wait flags, K=V
parsing, running a coroutine on the fastest available event loop."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from moldau.client.admin import Admin

T = TypeVar("T")

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


class CliError(Exception):
    """A mistake in how the command was used that argparse cannot see; printed
    as one line."""


def add_bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-server",
        default=DEFAULT_BOOTSTRAP,
        metavar="HOST:PORT[,HOST:PORT...]",
        help=f"brokers to connect to first (default {DEFAULT_BOOTSTRAP})",
    )


def add_max_block(parser: argparse.ArgumentParser) -> None:
    """``--max-block-ms``: the commands that read or write a topic wait this
    long for it to appear (a topic just created is not everywhere at once)."""
    parser.add_argument(
        "--max-block-ms",
        type=int,
        default=3_000,
        help="how long to wait for the topic to appear (default 3000)",
    )


def key_value(text: str) -> tuple[str, str]:
    """argparse type for ``KEY=VALUE``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion, on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def admin_command(action: Callable[[Admin, argparse.Namespace], Awaitable[int]]) -> Any:
    """Wrap ``action(admin, args)`` into a command that connects first."""

    def run(args: argparse.Namespace) -> int:
        async def go() -> int:
            from moldau.client.admin import Admin

            async with Admin(args.bootstrap_server) as admin:
                return await action(admin, args)

        return run_async(go())

    return run
