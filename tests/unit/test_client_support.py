"""Shared by the client unit tests: running an async test body without
pytest-asyncio.

No tests here; the test_client_*.py modules import it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test body on a fresh event loop, so that no test sees
    another's tasks or timers."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run
