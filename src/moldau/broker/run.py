"""``moldau broker``: run one broker in the foreground until a signal.

SIGTERM and SIGINT stop it cleanly: listeners close, every log is flushed and
its checkpoints written, within well under a second. A bad configuration is
one line on stderr and exit status 2.
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
    try:
        _run(_serve(BrokerServer(config)))
    except (OSError, LogDirLockedError) as exc:
        print(f"moldau: cannot start the broker: {exc}", file=sys.stderr)
        return 1
    return 0


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
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()
