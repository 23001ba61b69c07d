"""A request's timeout shared by the steps it takes.

CreateTopics, DeleteTopics and CreatePartitions carry one ``timeout_ms``
for the whole request (Kafka waits for all its topics together); moldau
handles the topics one after another, each waiting only for what is left.
"""

from __future__ import annotations

import time


class Deadline:
    """The time left of ``timeout_ms`` from now (0 once it has passed)."""

    def __init__(self, timeout_ms: int) -> None:
        self._end = time.monotonic() + max(0, timeout_ms) / 1000

    def remaining_ms(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))
