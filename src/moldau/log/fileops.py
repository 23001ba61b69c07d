"""The file operations through which the log writes: the seam for fault injection.

Every write, fsync, truncate, rename and unlink of segment files, indexes,
checkpoints and producer snapshots goes through the functions bound here, and
the callers look them up on this module at each call
(``fileops.pwritev(...)``). In production they *are* the ``os`` functions, so
the cost is one module attribute lookup. Tests swap them with
:func:`inject`, which makes the Nth matching call fail with a chosen errno
(optionally after writing part of its bytes, as a real ENOSPC can), so that
every failure point of an append can be tried.
"""

from __future__ import annotations

import errno as errno_codes
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KINDS",
    "FaultPlan",
    "fsync",
    "ftruncate",
    "inject",
    "open_fd",
    "pwrite",
    "pwritev",
    "replace",
    "truncate",
    "unlink",
]

Buffer = bytes | bytearray | memoryview

open_fd = os.open
pwritev = os.pwritev
pwrite = os.pwrite
fsync = os.fsync
ftruncate = os.ftruncate
truncate = os.truncate
replace = os.replace
unlink = os.unlink

#: The name of each seam function and the kind of operation it is.
KINDS: dict[str, str] = {
    "open_fd": "open",
    "pwritev": "write",
    "pwrite": "write",
    "fsync": "fsync",
    "ftruncate": "truncate",
    "truncate": "truncate",
    "replace": "rename",
    "unlink": "unlink",
}


@dataclass
class FaultPlan:
    """Which calls fail: the ``fail_at``-th call (1-based) of the ``kinds``
    given, on a path ending with one of ``suffixes`` (any path if empty), and
    the ``repeat - 1`` matching calls after it. ``partial`` makes a failing
    write store the first half of its bytes before it raises.

    ``calls`` and ``failed`` count matching calls and raised errors, so a test
    knows whether the fault was reached.
    """

    fail_at: int
    error: int = errno_codes.ENOSPC
    kinds: frozenset[str] = frozenset(KINDS.values())
    suffixes: tuple[str, ...] = ()
    repeat: int = 1
    partial: bool = False
    calls: int = 0
    failed: int = 0
    paths: dict[int, str] = field(default_factory=dict)

    def _path(self, target: Any) -> str:
        return target if isinstance(target, str) else self.paths.get(target, "")

    def _strikes(self, kind: str, target: Any) -> bool:
        if kind not in self.kinds:
            return False
        if self.suffixes and not self._path(target).endswith(self.suffixes):
            return False
        self.calls += 1
        if self.fail_at <= self.calls < self.fail_at + self.repeat:
            self.failed += 1
            return True
        return False

    def _raise(self, target: Any) -> None:
        raise OSError(self.error, os.strerror(self.error), self._path(target) or None)


@contextmanager
def inject(plan: FaultPlan) -> Iterator[FaultPlan]:
    """Run the block with the seam functions failing as ``plan`` says."""
    real = {name: globals()[name] for name in KINDS}
    for name, kind in KINDS.items():
        globals()[name] = _wrap(name, kind, real[name], plan)
    try:
        yield plan
    finally:
        globals().update(real)


def _wrap(name: str, kind: str, function: Callable[..., Any], plan: FaultPlan) -> Any:
    if name == "open_fd":

        def opened(path: str, *args: Any) -> int:
            if plan._strikes(kind, path):
                plan._raise(path)
            fd: int = function(path, *args)
            plan.paths[fd] = path
            return fd

        return opened

    def call(target: Any, *args: Any) -> Any:
        if plan._strikes(kind, target):
            if plan.partial and name in ("pwrite", "pwritev"):
                _write_half(name, function, target, *args)
            plan._raise(target)
        return function(target, *args)

    return call


def _write_half(name: str, function: Callable[..., Any], fd: int, data: Any, offset: int) -> None:
    """Store the first half of what a failing write was given."""
    buffers: Sequence[Buffer] = [data] if name == "pwrite" else data
    joined = b"".join(bytes(b) for b in buffers)
    if len(joined) > 1:
        os.pwrite(fd, joined[: len(joined) // 2], offset)
