"""CPU time and memory of a broker process (and any children), from /proc.

A broker may fork helpers, so both readings cover the whole process tree
rooted at the pid we started; threads are already included in a process's
own counters.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is index 0)."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain spaces or ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """The root pid followed by all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree = [root]
    for pid in tree:
        tree.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """User plus system CPU seconds consumed so far by the tree under `root`."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / _TICKS


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(root: int) -> int:
    """Current resident set size of the tree under `root`."""
    return sum(_status_kib(pid, "VmRSS") for pid in process_tree(root)) * 1024


def peak_rss_bytes(root: int) -> int:
    """High-water resident set size (VmHWM) of the tree under `root`."""
    return sum(_status_kib(pid, "VmHWM") for pid in process_tree(root)) * 1024
