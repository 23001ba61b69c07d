"""Named deadlines for a single-threaded core driven by ``tick()``.

The coordinator never sleeps or starts threads: it records when something is
due (a session expiring, a join phase ending) under a key, and the shell asks
for the earliest deadline and calls back then. Rescheduling a key replaces its
deadline; a heartbeat is just that. Replaced and cancelled entries stay in the
heap until they reach the top, where they are recognised as stale and dropped.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Timers(Generic[K]):
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, K]] = []
        self._live: dict[K, tuple[int, int]] = {}
        self._seq = itertools.count()

    def schedule(self, key: K, deadline: int) -> None:
        """Sets (or moves) the deadline of ``key``."""
        entry = (deadline, next(self._seq))
        self._live[key] = entry
        heapq.heappush(self._heap, (*entry, key))

    def cancel(self, key: K) -> None:
        self._live.pop(key, None)

    def _drop_stale(self) -> None:
        while self._heap:
            deadline, seq, key = self._heap[0]
            if self._live.get(key) == (deadline, seq):
                return
            heapq.heappop(self._heap)

    def next_deadline(self) -> int | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: int) -> Iterator[K]:
        """Yields, earliest first, the keys due at ``now``, removing each as it goes.

        Lazily, so a handler that moves or cancels a later key is respected.
        Deadlines set while this runs wait for the next call, so a tick always
        ends: such entries are never due before ``now`` and, on equal
        deadlines, sort after the older ones.
        """
        limit = next(self._seq)
        while (deadline := self.next_deadline()) is not None and deadline <= now:
            _, seq, key = self._heap[0]
            if seq > limit:
                return
            heapq.heappop(self._heap)
            del self._live[key]
            yield key
