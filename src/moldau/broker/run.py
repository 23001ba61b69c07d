"""``moldau broker``: run one broker in the foreground until a signal.

SIGTERM and SIGINT stop it cleanly: listeners close, every log is flushed and
its checkpoints written, within well under a second. A bad configuration is
one line on stderr and exit status 2; a broker that cannot start, exit
status 1. A stop on a full or failed disk still exits 0 (it did stop, and
nothing acknowledged is lost), with one line on stderr saying what was not
made durable and that the next start recovers it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from ..log.manager import LogDirLockedError
from .capacity import raise_open_file_limit
from .config import ConfigError, load_config
from .join_error import ClusterJoinError
from .server import BrokerServer


def run_broker(config_path: str | None, overrides: list[str]) -> int:
    try:
        config = load_config(config_path, overrides)
    except (ConfigError, OSError) as exc:
        print(f"moldau: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    raise_open_file_limit()
    server = BrokerServer(config)
    try:
        _run(_serve(server))
    except _StartFailed as exc:
        print(f"moldau: cannot start the broker: {exc.__cause__}", file=sys.stderr)
        return 1
    if server.stop_problems:
        print(
            "moldau: stopped without a clean shutdown, the next start recovers: "
            + "; ".join(server.stop_problems),
            file=sys.stderr,
        )
    return 0


class _StartFailed(Exception):
    """The broker could not start (the cause says why)."""


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed: its poller is faster than selectors."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _serve(server: BrokerServer) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except (OSError, LogDirLockedError, ClusterJoinError) as exc:  # nothing to flush
        raise _StartFailed() from exc
    try:
        await stop.wait()
    finally:
        await server.stop()
