"""Shared by the client unit tests: running an async test body without
pytest-asyncio.

No tests here; the test_client_*.py modules import it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from conftest import LOOP_FACTORIES


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[str], None]:
    """Run an async test body on a fresh event loop of each kind, so that no
    test sees another's tasks or timers."""

    def run(loop_kind: str) -> None:
        with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop_kind]) as runner:
            runner.run(test())

    # Not functools.wraps: pytest would read the wrapped signature, which has
    # no loop_kind parameter.
    run.__name__, run.__qualname__, run.__doc__ = test.__name__, test.__qualname__, test.__doc__
    run.__module__ = test.__module__
    parametrized: Callable[[str], None] = pytest.mark.parametrize(
        "loop_kind", list(LOOP_FACTORIES)
    )(run)
    return parametrized
