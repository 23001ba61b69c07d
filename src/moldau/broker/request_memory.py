"""The broker-wide budget of request bytes being received.

Kafka's ``queued.max.request.bytes``: once that many bytes of requests are
held, no more requests are read until some are done. Here a frame of its own
buffer (a large request, see ``connection``) reserves the size its prefix
claims when its first bytes arrive, before any memory is allocated, and gives
it back once its handler has answered. A connection that finds the budget
spent stops reading and waits its turn (first come, first served); the
frames already reserved can always complete, so the broker cannot deadlock on
its own budget.

As in Kafka's non-strict memory pool, a reservation is granted while anything
at all is left, so one request larger than the budget still goes through on
an idle broker: the bound is the budget plus one request.
"""

from __future__ import annotations

import collections
from collections.abc import Callable


class RequestMemory:
    """Reservations of request bytes against one limit (<= 0: unlimited)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        self._waiting: collections.deque[tuple[int, Callable[[], None]]] = collections.deque()

    def _has_room(self) -> bool:
        return self.limit <= 0 or self.in_use < self.limit

    def reserve(self, size: int, on_granted: Callable[[], None]) -> bool:
        """Reserve ``size`` now (True), or queue ``on_granted`` for when it is reserved."""
        if not self._waiting and self._has_room():
            self.in_use += size
            return True
        self._waiting.append((size, on_granted))
        return False

    def release(self, size: int) -> None:
        """Give back a reservation; grant waiting ones while there is room."""
        self.in_use -= size
        while self._waiting and self._has_room():
            granted, on_granted = self._waiting.popleft()
            self.in_use += granted
            on_granted()

    def forget(self, on_granted: Callable[[], None]) -> None:
        """Drop a waiting reservation (its connection closed)."""
        self._waiting = collections.deque(w for w in self._waiting if w[1] != on_granted)

    @property
    def waiting(self) -> int:
        return len(self._waiting)
