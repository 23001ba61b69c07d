"""What the group handlers share: the service, and futures for late answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from ..dispatch import RequestContext
from ..groups import GroupService

T = TypeVar("T")


def group_service(context: RequestContext) -> GroupService:
    service = context.core.groups
    assert service is not None, "the broker starts its group service before serving"
    service.ensure_topic()
    return service


def late_answer(kind: type[T]) -> tuple[asyncio.Future[T], Callable[[T], None]]:
    """A future and the callback that completes it.

    The coordinator may answer after the client has gone and its request was
    cancelled; the callback then does nothing.
    """
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()

    def deliver(result: T) -> None:
        if not future.done():
            future.set_result(result)

    return future, deliver
