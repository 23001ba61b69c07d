"""Warnings a client can provoke, rate-limited so it cannot flood the log.

A broker that logs a traceback for every malformed request lets one client
write megabytes of log a second. Each broker keeps one ``RateLimitedLog``:
the first warning of a period is written as one line, the rest are counted
and the count is reported with the next line that gets through. The
traceback of the cause goes to DEBUG only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: One line per this many seconds at most.
DEFAULT_PERIOD_S = 10.0


class RateLimitedLog:
    """At most one WARNING line per ``period_s``; the rest are counted."""

    def __init__(
        self,
        logger: logging.Logger,
        period_s: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._period_s = period_s
        self._clock = clock
        self._next_at = float("-inf")
        self._suppressed = 0

    def warning(self, message: str, cause: BaseException | None = None) -> bool:
        """Log ``message`` unless a line was written within the period; True if written."""
        if cause is not None and self._logger.isEnabledFor(logging.DEBUG):
            self._logger.debug("%s", message, exc_info=cause)
        now = self._clock()
        if now < self._next_at:
            self._suppressed += 1
            return False
        self._next_at = now + self._period_s
        if self._suppressed:
            message += f" ({self._suppressed} similar warnings suppressed)"
            self._suppressed = 0
        self._logger.warning("%s", message)
        return True
