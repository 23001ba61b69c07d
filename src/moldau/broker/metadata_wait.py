"""Waiting until this broker's metadata cache shows a change (cluster mode).

Admin requests and ElectLeaders answer once the controller's decision has
reached this broker, as Kafka's delayed operations do (DelayedCreatePartitions,
DelayedDeleteTopics, DelayedElectLeader): the cache calls its listeners after
every UpdateMetadata, and the waiter looks again each time, up to the
request's timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..cluster.metadata_cache import MetadataCache


async def shown(cache: MetadataCache, done: Callable[[], bool], timeout_ms: int) -> bool:
    """Whether ``done()`` held in the cache within ``timeout_ms`` (0: only now)."""
    if done():
        return True
    if timeout_ms <= 0:
        return False
    changed = asyncio.Event()
    listener = changed.set
    cache.listeners.append(listener)
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            while not done():
                changed.clear()
                await changed.wait()
    except TimeoutError:
        return False
    finally:
        cache.listeners.remove(listener)
    return True
