"""The broker-wide budget of request bytes being received.

Kafka's ``queued.max.request.bytes``: once that many bytes of requests are
held, no more are read until some are done. Here the budget counts the
buffers of large frames (see ``connection``), reserved step by step as their
bytes arrive: the first step when a size prefix is read, one more each time
the buffer has to grow, all of it given back once the request is answered. A
connection whose step does not fit stops reading and waits its turn (first
come, first served).

Where Kafka reserves a frame's whole claimed size at once, moldau reserves as
bytes arrive, so a 4-byte size prefix that claims 100 MB and then sends
nothing holds only the frame's first buffer (1 MiB), not the 100 MB.
Reserving in steps could deadlock if every frame being received waited to
grow while holding what the others need; so when all of them wait, the
oldest one grows anyway. The bound is then the budget plus one request (as
with Kafka's non-strict memory pool, which also grants while anything at all
is left).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

#: (size, callback, whether it grows a frame already being received)
_Wait = tuple[int, Callable[[], None], bool]


class RequestMemory:
    """Reservations of request bytes against one limit (<= 0: unlimited)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0
        #: Frames being received into reserved buffers.
        self.receiving = 0
        #: Of those, how many wait to grow.
        self._stalled = 0
        self._waiting: collections.deque[_Wait] = collections.deque()

    def _has_room(self) -> bool:
        return self.limit <= 0 or self.in_use < self.limit

    def reserve(self, size: int, on_granted: Callable[[], None], *, grow: bool) -> bool:
        """Reserve ``size`` for a new frame or to ``grow`` one being received.

        True if reserved now; otherwise ``on_granted`` is called once it is.
        """
        fits = not self._waiting and self._has_room()
        if fits or (grow and self._stalled + 1 == self.receiving):  # else all would wait
            self._take(size, grow)
            return True
        self._waiting.append((size, on_granted, grow))
        if grow:
            self._stalled += 1
        return False

    def received(self) -> None:
        """A frame being received is complete, or its connection closed."""
        self.receiving -= 1
        self._grant_waiting()

    def release(self, size: int) -> None:
        """Give back reserved bytes (the request was answered, or its connection closed)."""
        self.in_use -= size
        self._grant_waiting()

    def forget(self, on_granted: Callable[[], None]) -> None:
        """Drop a waiting reservation (its connection closed)."""
        for entry in [w for w in self._waiting if w[1] == on_granted]:
            self._waiting.remove(entry)
            if entry[2]:
                self._stalled -= 1
        self._grant_waiting()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _take(self, size: int, grow: bool) -> None:
        self.in_use += size
        if not grow:
            self.receiving += 1

    def _grant_waiting(self) -> None:
        while self._waiting:
            if self._has_room():
                entry = self._waiting.popleft()
            elif self.receiving and self._stalled == self.receiving:
                # Every frame being received waits to grow: the oldest goes on.
                entry = next(w for w in self._waiting if w[2])
                self._waiting.remove(entry)
            else:
                return
            size, on_granted, grow = entry
            if grow:
                self._stalled -= 1
            self._take(size, grow)
            on_granted()
