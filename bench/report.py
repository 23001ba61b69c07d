"""Turn the raw samples of a run into Markdown tables, brokers side by side.

Every figure is the median over the repeats that completed; a ratio is
always moldau's median over Tansu's median from the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MB = 1e6
GB = 1e9


@dataclass
class Samples:
    """Everything measured in one run, as flat JSON-friendly records."""

    brokers: list[str]
    labels: dict[str, str]
    workloads: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, kind: str, broker: str, round_: int, **values: Any) -> None:
        self.records.append({"kind": kind, "broker": broker, "round": round_, **values})

    def select(self, kind: str, broker: str, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if r["kind"] == kind
            and r["broker"] == broker
            and all(r.get(k) == v for k, v in match.items())
        ]


def median(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 0, unit: str = "") -> str:
    if value is None:
        return "failed"
    return f"{value:,.{digits}f}{unit}"


def _ratio(values: dict[str, float | None]) -> str:
    mine, peer = values.get("moldau"), values.get("tansu")
    if mine is None or not peer:
        return "-"
    return f"{mine / peer:.2f}x"


def _has_ratio(samples: Samples) -> bool:
    return {"moldau", "tansu"} <= set(samples.brokers)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def median_rate(
    samples: Samples, broker: str, workload: str, phase: str
) -> tuple[float | None, float | None]:
    """Median records/s and MB/s of one broker (or setting), workload and phase."""
    runs = samples.select("throughput", broker, workload=workload, phase=phase)
    return (
        median(r["records"] / r["elapsed"] for r in runs),
        median(r["bytes"] / r["elapsed"] / MB for r in runs),
    )


def _cpu_per_gb(runs: list[dict[str, Any]]) -> float | None:
    return median(r["cpu_seconds"] / (r["bytes"] / GB) for r in runs if r["bytes"])


def _cpu_per_gb_overall(samples: Samples, broker: str, phase: str) -> float | None:
    """Total broker CPU over total bytes, across every workload and repeat."""
    runs = samples.select("throughput", broker, phase=phase)
    total = sum(r["bytes"] for r in runs)
    return sum(r["cpu_seconds"] for r in runs) / (total / GB) if total else None


def throughput_table(samples: Samples) -> str:
    header = ["Workload", "Phase"]
    for b in samples.brokers:
        header += [f"{samples.labels[b]} records/s", f"{samples.labels[b]} MB/s"]
    if _has_ratio(samples):
        header.append("moldau/Tansu")
    rows = []
    for workload in samples.workloads:
        for phase in ("produce", "consume"):
            row = [workload, phase]
            rates: dict[str, float | None] = {}
            for b in samples.brokers:
                rates[b], mbps = median_rate(samples, b, workload, phase)
                row += [fmt(rates[b]), fmt(mbps, 1)]
            if _has_ratio(samples):
                row.append(_ratio(rates))
            rows.append(row)
    return table(header, rows)


def cpu_table(samples: Samples) -> str:
    header = ["Workload", "Phase", *(samples.labels[b] for b in samples.brokers)]
    if _has_ratio(samples):
        header.append("moldau/Tansu")
    rows = []
    cells: list[tuple[str, str, dict[str, float | None]]] = []
    for workload in samples.workloads:
        for phase in ("produce", "consume"):
            per_broker = {
                b: _cpu_per_gb(samples.select("throughput", b, workload=workload, phase=phase))
                for b in samples.brokers
            }
            cells.append((workload, phase, per_broker))
    for phase in ("produce", "consume"):
        overall = {b: _cpu_per_gb_overall(samples, b, phase) for b in samples.brokers}
        cells.append(("**all workloads**", phase, overall))
    for workload, phase, values in cells:
        row = [workload, phase, *(fmt(values[b], 1) for b in samples.brokers)]
        if _has_ratio(samples):
            row.append(_ratio(values))
        rows.append(row)
    return table(header, rows)


def _scalar(samples: Samples, kind: str, key: str, broker: str, scale: float = 1.0) -> float | None:
    return median(r[key] * scale for r in samples.select(kind, broker))


_SCALARS = [
    ("End-to-end latency p50 (ms)", "latency", "p50_ms", 1.0, 2),
    ("End-to-end latency p99 (ms)", "latency", "p99_ms", 1.0, 2),
    ("End-to-end latency max (ms)", "latency", "max_ms", 1.0, 2),
    ("Start to first answered request (s)", "start", "seconds", 1.0, 3),
    ("Idle RSS (MB)", "idle_rss", "bytes", 1 / MB, 1),
    ("Peak RSS after the workloads (MB)", "peak_rss", "bytes", 1 / MB, 1),
]


def scalar_table(samples: Samples) -> str:
    header = ["Metric", *(samples.labels[b] for b in samples.brokers)]
    if _has_ratio(samples):
        header.append("moldau/Tansu")
    rows = []
    for title, kind, key, scale, digits in _SCALARS:
        values = {b: _scalar(samples, kind, key, b, scale) for b in samples.brokers}
        row = [title, *(fmt(values[b], digits) for b in samples.brokers)]
        if _has_ratio(samples):
            row.append(_ratio(values))
        rows.append(row)
    return table(header, rows)


def _worst_ratio(samples: Samples, phase: str) -> float | None:
    ratios = []
    for workload in samples.workloads:
        mine, _ = median_rate(samples, "moldau", workload, phase)
        peer, _ = median_rate(samples, "tansu", workload, phase)
        if mine is None or not peer:
            return None
        ratios.append(mine / peer)
    return min(ratios) if ratios else None


def _cpu_ratio(samples: Samples, phase: str) -> float | None:
    mine = _cpu_per_gb_overall(samples, "moldau", phase)
    peer = _cpu_per_gb_overall(samples, "tansu", phase)
    return mine / peer if mine is not None and peer else None


@dataclass(frozen=True)
class Target:
    """One of an issue's targets, judged on a run's figure."""

    title: str
    value: float | None
    unit: str
    limit: float
    at_least: bool  # True: value >= limit passes; False: value <= limit passes

    def row(self) -> list[str]:
        if self.value is None:
            return [self.title, "failed", "no"]
        met = self.value >= self.limit if self.at_least else self.value <= self.limit
        return [self.title, f"{self.value:.2f}{self.unit}", "yes" if met else "**no**"]


def targets_table(samples: Samples) -> str:
    """The issue's targets, judged on this run's numbers."""
    targets: list[Target] = []
    if _has_ratio(samples):
        targets += [
            Target("Produce throughput >= Tansu (worst workload)",
                    _worst_ratio(samples, "produce"), "x", 1.0, True),
            Target("Consume throughput >= Tansu (worst workload)",
                    _worst_ratio(samples, "consume"), "x", 1.0, True),
            Target("Broker CPU per GB produced <= 0.5x Tansu",
                    _cpu_ratio(samples, "produce"), "x", 0.5, False),
            Target("Broker CPU per GB consumed <= 0.3x Tansu",
                    _cpu_ratio(samples, "consume"), "x", 0.3, False),
        ]  # fmt: skip
    if "moldau" in samples.brokers:
        targets += [
            Target("End-to-end p99 <= 10 ms",
                    _scalar(samples, "latency", "p99_ms", "moldau"), " ms", 10.0, False),
            Target("Start <= 0.5 s",
                    _scalar(samples, "start", "seconds", "moldau"), " s", 0.5, False),
            Target("Idle RSS <= 60 MB",
                    _scalar(samples, "idle_rss", "bytes", "moldau", 1 / MB), " MB", 60.0, False),
        ]  # fmt: skip
    return table(["Target (moldau)", "Measured", "Met"], [t.row() for t in targets])


def markdown(samples: Samples, preamble: list[str]) -> str:
    parts = [
        *preamble,
        "",
        "Throughput (median; MB = 10^6 bytes of record values):",
        "",
        throughput_table(samples),
        "",
        "Broker CPU-seconds per GB of record values"
        " (median; all workloads = total CPU / total GB):",
        "",
        cpu_table(samples),
        "",
        "Latency, start-up and memory (median):",
        "",
        scalar_table(samples),
    ]
    targets = targets_table(samples)
    if targets.count("\n") > 1:
        parts += ["", "Targets:", "", targets]
    if samples.failures:
        parts += ["", "Problems seen during the run:", ""]
        parts += [f"- {line}" for line in samples.failures]
    return "\n".join(parts) + "\n"
