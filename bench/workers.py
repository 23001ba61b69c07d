"""Harness side of bench/load.py: run one phase with hard deadlines.

The harness never blocks on a worker without a deadline, and a worker that
overstays is killed with its whole process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LOAD_SCRIPT = Path(__file__).resolve().with_name("load.py")
_EXIT_GRACE = 3.0


class PhaseError(RuntimeError):
    """A worker reported an error, went silent past its deadline, or died."""


class _Worker:
    def __init__(self, spec: dict[str, Any], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(LOAD_SCRIPT), json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        self._buffer = b""

    def expect(self, deadline: float) -> tuple[str, str]:
        """The next protocol line as (word, rest), e.g. ("RESULT", "{...}")."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PhaseError("worker gave no answer before its deadline")
                if not selector.select(remaining):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise PhaseError(f"worker exited (code {self.process.poll()})")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        word, _, rest = line.decode(errors="replace").partition(" ")
        return word, rest

    def go(self) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(b"go\n")
            self.process.stdin.flush()
        except BrokenPipeError as exc:
            raise PhaseError(f"worker exited (code {self.process.poll()})") from exc

    def stop(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # a worker still waiting for "go" gives up
        try:
            self.process.wait(timeout=_EXIT_GRACE)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=_EXIT_GRACE)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _expect(worker: _Worker, wanted: str, deadline: float) -> str:
    word, rest = worker.expect(deadline)
    while word not in (wanted, "ERROR"):
        word, rest = worker.expect(deadline)
    if word == "ERROR":
        raise PhaseError(rest)
    return rest


def run_phase(
    spec: dict[str, Any],
    log_path: Path,
    before: Callable[[], None],
    after: Callable[[], None],
) -> dict[str, Any]:
    """Run one load.py phase; `before`/`after` bracket the measured part.

    spec needs "setup_timeout" (connect, create topic) and the measured
    part's own limit under "timeout" or, for latency, its duration.
    """
    worker = _Worker(spec, log_path)
    try:
        _expect(worker, "READY", time.monotonic() + spec["setup_timeout"] + 15)
        before()
        worker.go()
        measured_limit = spec.get("timeout") or spec["warmup"] + spec["duration"] + spec["drain"]
        result = json.loads(_expect(worker, "RESULT", time.monotonic() + measured_limit + 30))
        after()
        return dict(result)
    finally:
        worker.stop()
