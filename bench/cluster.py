"""Benchmark a 3-broker moldau cluster: replication's cost, failover time, acks=all latency.

    .venv/bin/python bench/cluster.py [--quick] [--repeat N] [--kills N]
                                      [--session-timeout-ms MS] [--failover-only]
                                      [--metadata-refresh-ms MS] [--append-docs]

One run starts one local cluster (`moldau.cluster.local.LocalCluster`:
ZooKeeper from Debian's jar and three `moldau broker` processes) and takes,
in this order:

1. throughput: every workload is produced, then consumed, once per
   replication setting (RF 1 acks=1, RF 1 acks=all, RF 3 acks=all with
   min.insync.replicas=2; the order rotates between repeats), by the same
   bench/load.py workers as run.py; broker CPU is summed over the three
   broker processes;
2. end-to-end latency at 1,000 records/s, as run.py measures it, for RF 3
   acks=all (and RF 1 acks=1 beside it);
3. failover: leader kill -9 to the next acknowledged produce (bench/failover.py;
   ``--failover-only`` skips 1 and 2, ``--metadata-refresh-ms`` sets its
   producer's topic.metadata.refresh.interval.ms).

Markdown goes to stdout, progress to stderr; broker, ZooKeeper and client
logs and the raw samples are kept under bench/results/<timestamp>-cluster/.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka.admin import AdminClient

import brokers
import failover
import procstat
import report
import run
from load import CONSUMER_CONFIG, PRODUCER_CONFIG
from moldau.cluster.local import LocalCluster
from workers import run_phase

BROKERS = 3
PARTITIONS = 6
#: Short enough that the ten kills take a minute or two, long enough that a
#: broker busy on this loaded 2-core machine keeps its session (the cluster
#: tests use the same); Kafka's default is 18 s.
SESSION_TIMEOUT_MS = 3000
#: The issue's failover bound: the session timeout plus this.
FAILOVER_SLACK = 2.0


@dataclass(frozen=True)
class Setting:
    """A replication setting: the topic's replication factor and min ISR, the producer's acks."""

    name: str
    label: str
    replication_factor: int
    acks: str
    min_insync: int = 1

    def spec(self) -> dict[str, Any]:
        """The bench/load.py spec keys for it."""
        return {
            "replication_factor": self.replication_factor,
            "topic_config": {"min.insync.replicas": str(self.min_insync)},
            "producer_config": {"acks": self.acks},
        }


RF1_ACKS1 = Setting("rf1-acks1", "RF 1 acks=1", 1, "1")
RF1_ACKS_ALL = Setting("rf1-acksall", "RF 1 acks=all", 1, "all")
RF3_ACKS_ALL = Setting("rf3-acksall", "RF 3 acks=all", 3, "all", min_insync=2)
SETTINGS = [RF1_ACKS1, RF1_ACKS_ALL, RF3_ACKS_ALL]
LATENCY_SETTINGS = [RF3_ACKS_ALL, RF1_ACKS1]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cluster_cpu_seconds(cluster: LocalCluster) -> float:
    """User + system CPU of every broker process of the cluster (not ZooKeeper's)."""
    total = 0.0
    for broker_id in cluster.broker_ids:
        pid = cluster.pid(broker_id)
        if pid is not None:
            total += procstat.cpu_seconds(pid)
    return total


@dataclass(frozen=True)
class _Kind:
    name: str
    label: str


class _ClusterAsBroker:
    """What run.BrokerSession reads of its broker, for the whole cluster under one setting."""

    def __init__(self, cluster: LocalCluster, setting: Setting) -> None:
        self.cluster = cluster
        self.kind = _Kind(setting.name, setting.label)
        self.bootstrap = cluster.bootstrap_servers

    def alive(self) -> bool:
        return all(self.cluster.running(b) for b in self.cluster.broker_ids)


class SettingSession(run.BrokerSession):
    """run.py's throughput and latency phases, on the cluster under one setting.

    Differs from run.py in the topic and producer settings it passes to the
    workers and in measuring the CPU of all three brokers together.
    """

    def __init__(
        self, cluster: LocalCluster, setting: Setting, round_: int, plan: run.Plan,
        samples: report.Samples, clients_log: Path,
    ) -> None:  # fmt: skip
        target = _ClusterAsBroker(cluster, setting)
        super().__init__(target, round_, plan, samples, clients_log)  # type: ignore[arg-type]
        self.cluster = cluster
        self.setting = setting

    def _spec(self, mode: str, topic: str, **extra: Any) -> dict[str, Any]:
        return {**super()._spec(mode, topic, **extra), **self.setting.spec()}

    def _measured(self, spec: dict[str, Any]) -> tuple[dict[str, Any], float]:
        cpu: list[float] = []
        result = run_phase(
            spec,
            self.clients_log,
            before=lambda: cpu.append(cluster_cpu_seconds(self.cluster)),
            after=lambda: cpu.append(cluster_cpu_seconds(self.cluster)),
        )
        return result, cpu[1] - cpu[0]


def make_plan(args: argparse.Namespace) -> run.Plan:
    """run.py's counts, on 6 partitions only (two leaders on each broker)."""
    small, large = (100_000, 30_000) if args.quick else (1_000_000, 300_000)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    return run.Plan(
        workloads=[run.Workload(100, small, PARTITIONS), run.Workload(1024, large, PARTITIONS)],
        repeat=repeat,
        latency_seconds=3.0 if args.quick else 10.0,
        phase_timeout=args.phase_timeout,
        setup_timeout=60.0,
        start_timeout=60.0,
    )


def _rotated(items: list[Setting], by: int) -> list[Setting]:
    by %= len(items)
    return items[by:] + items[:by]


def _check_cluster(cluster: LocalCluster, samples: report.Samples) -> None:
    """A broker that died is reported with its log and started again."""
    for broker_id in cluster.broker_ids:
        if not cluster.running(broker_id):
            run.problem(samples, f"broker {broker_id} died", cluster.log_path(broker_id))
    cluster.restore()


@dataclass
class Load:
    """The machine's 1-minute load average around each part, for the report."""

    readings: list[tuple[str, float]]

    def note(self, when: str) -> None:
        self.readings.append((when, os.getloadavg()[0]))

    def line(self) -> str:
        return ", ".join(f"{when} {value:.1f}" for when, value in self.readings)


def _delete_topic(cluster: LocalCluster, topic: str, samples: report.Samples) -> None:
    """Delete a workload's topic and wait until no broker has its files.

    Every phase then writes into memory the phases before it freed. Kept,
    the run's data grows the page cache phase after phase into memory this
    VM has not touched for a while, which its host must fault in: writing
    300 MB into such memory took 0.5-0.7 s of kernel time here against
    0.05-0.4 s into memory just freed, so each phase measured the page
    cache's growth more than the brokers, and later phases ran slower than
    earlier ones. A broker under retention reuses its memory the same way.
    """
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    try:
        admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
    except Exception as exc:
        run.problem(samples, f"deleting {topic}: {exc}")
        return
    deadline = time.monotonic() + 60
    while any(
        entry.name.startswith(f"{topic}-")
        for broker_id in cluster.broker_ids
        for entry in (cluster.broker_dir(broker_id) / "data").iterdir()
    ):
        if time.monotonic() > deadline:
            run.problem(samples, f"deleting {topic}: its files were still there after 60 s")
            return
        time.sleep(0.05)


def measure(
    cluster: LocalCluster, plan: run.Plan, args: argparse.Namespace, kills: int,
    samples: report.Samples, run_dir: Path, load: Load,
) -> list[failover.Kill]:  # fmt: skip
    clients_log = run_dir / "clients.log"
    for round_ in range(0 if args.failover_only else plan.repeat):
        _say(f"[throughput, run {round_ + 1}/{plan.repeat}]")
        for workload in plan.workloads:
            for setting in _rotated(SETTINGS, round_):
                _check_cluster(cluster, samples)
                _say(f" {setting.label}:")
                session = SettingSession(cluster, setting, round_, plan, samples, clients_log)
                topic = session.throughput(workload)
                if not args.keep_data:
                    _delete_topic(cluster, topic, samples)
        load.note(f"after throughput run {round_ + 1}")
    for round_ in range(0 if args.failover_only else plan.repeat):
        _say(f"[latency, run {round_ + 1}/{plan.repeat}]")
        for setting in _rotated(LATENCY_SETTINGS, round_):
            _check_cluster(cluster, samples)
            _say(f" {setting.label}:")
            SettingSession(cluster, setting, round_, plan, samples, clients_log).latency()
    if not args.failover_only:
        load.note("after latency")
    _check_cluster(cluster, samples)
    _say(f"[failover, {kills} kills]")
    try:
        results, problems = failover.measure(
            cluster, kills, _say, metadata_refresh_ms=args.metadata_refresh_ms
        )
    except Exception as exc:  # e.g. the topic could not be made: report it, keep the rest
        results, problems = [], [f"failover: {type(exc).__name__}: {exc}"]
    for line in problems:
        run.problem(samples, line)
    load.note("after failover")
    return results


# -- report ---------------------------------------------------------------------


def _ratio(mine: float | None, base: float | None) -> float | None:
    return mine / base if mine is not None and base else None


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def replication_ratios(samples: report.Samples) -> dict[tuple[str, str, str], float | None]:
    """RF 3 acks=all's median over each RF 1 setting's, by (workload, phase, base)."""
    ratios = {}
    for workload in samples.workloads:
        for phase in ("produce", "consume"):
            mine, _ = report.median_rate(samples, RF3_ACKS_ALL.name, workload, phase)
            for base in (RF1_ACKS1, RF1_ACKS_ALL):
                theirs, _ = report.median_rate(samples, base.name, workload, phase)
                ratios[workload, phase, base.name] = _ratio(mine, theirs)
    return ratios


def ratio_table(samples: report.Samples) -> str:
    ratios = replication_ratios(samples)
    rows = [
        [workload, phase, *(_fmt_ratio(ratios[workload, phase, b.name]) for b in SETTINGS[:2])]
        for workload in samples.workloads
        for phase in ("produce", "consume")
    ]
    header = ["Workload", "Phase", *(f"RF 3 acks=all / {b.label}" for b in SETTINGS[:2])]
    return report.table(header, rows)


def _latency(samples: report.Samples, setting: Setting, key: str) -> float | None:
    return report.median(r[key] for r in samples.select("latency", setting.name))


def latency_table(samples: report.Samples) -> str:
    rows = [
        [s.label, *(report.fmt(_latency(samples, s, k), 2) for k in ("p50_ms", "p99_ms", "max_ms"))]
        for s in LATENCY_SETTINGS
    ]
    return report.table(["Setting", "p50 (ms)", "p99 (ms)", "max (ms)"], rows)


def failover_table(kills: list[failover.Kill]) -> str:
    rows = [
        [
            str(n),
            f"{k.broker}{' (controller)' if k.was_controller else ''}",
            "-" if k.new_leader is None else str(k.new_leader),
            report.fmt(k.elected_seconds, 2),
            report.fmt(k.seconds, 2),
        ]
        for n, k in enumerate(kills, 1)
    ]
    header = ["Kill", "Leader killed", "New leader", "New leader in ZooKeeper (s)", "Next ack (s)"]
    return report.table(header, rows)


def _failover_times(kills: list[failover.Kill]) -> list[float]:
    return [k.seconds for k in kills if k.seconds is not None]


def targets_table(
    samples: report.Samples, kills: list[failover.Kill], session_s: float, planned_kills: int,
    failover_only: bool = False,
) -> str:  # fmt: skip
    ratios = replication_ratios(samples)

    def worst(phase: str) -> float | None:
        values = [ratios[w, phase, RF1_ACKS1.name] for w in samples.workloads]
        return None if None in values else min(v for v in values if v is not None)

    times = _failover_times(kills)
    all_failed_over = len(times) == planned_kills
    targets = [
        report.Target("RF 3 acks=all produce >= 0.5x RF 1 acks=1 (worst workload)",
                      worst("produce"), "x", 0.5, True),
        report.Target("RF 3 acks=all consume >= 0.5x RF 1 acks=1 (worst workload)",
                      worst("consume"), "x", 0.5, True),
        report.Target(f"Failover max <= session timeout + {FAILOVER_SLACK:g} s "
                      f"({session_s + FAILOVER_SLACK:g} s)",
                      max(times) if times and all_failed_over else None, " s",
                      session_s + FAILOVER_SLACK, False),
        report.Target("RF 3 acks=all end-to-end p99 < 20 ms",
                      _latency(samples, RF3_ACKS_ALL, "p99_ms"), " ms", 20.0, False),
    ]  # fmt: skip
    if failover_only:
        targets = targets[2:3]
    elif planned_kills == 0:  # --kills 0: failover was not measured
        targets = targets[:2] + targets[3:]
    return report.table(["Target", "Measured", "Met"], [t.row() for t in targets])


def markdown(
    samples: report.Samples, kills: list[failover.Kill], preamble: list[str], session_s: float,
    planned_kills: int, failover_only: bool = False,
) -> str:  # fmt: skip
    times = _failover_times(kills)
    summary = (
        f"median {statistics.median(times):.2f} s, max {max(times):.2f} s over "
        f"{len(times)} kills (of {planned_kills})"
        if times
        else "no kill failed over"
    )
    measured = [
        "Throughput (median; MB = 10^6 bytes of record values; each setting on its own topic):",
        "",
        report.throughput_table(samples),
        "",
        "RF 3 acks=all (min.insync.replicas=2) against RF 1, medians from this run:",
        "",
        ratio_table(samples),
        "",
        "Broker CPU-seconds per GB of record values, summed over the three brokers"
        " (median; all workloads = total CPU / total GB):",
        "",
        report.cpu_table(samples),
        "",
        "End-to-end latency at 1,000 records/s x 100 B, 1 partition (median of the runs):",
        "",
        latency_table(samples),
        "",
    ]
    failover_part = [
        f"Failover (leader kill -9 to the next acknowledged produce): {summary}.",
        "",
        failover_table(kills),
        "",
    ]
    parts = [
        *preamble,
        "",
        *([] if failover_only else measured),
        *(failover_part if planned_kills else []),
        "Targets:",
        "",
        targets_table(samples, kills, session_s, planned_kills, failover_only),
    ]
    if samples.failures:
        parts += ["", "Problems seen during the run:", ""]
        parts += [f"- {line}" for line in samples.failures]
    return "\n".join(parts) + "\n"


def preamble(
    argv: list[str], plan: run.Plan, started: datetime.datetime, session_ms: int, load: Load,
    metadata_refresh_ms: int, failover_only: bool = False, keep_data: bool = False,
) -> list[str]:  # fmt: skip
    producer = ", ".join(f"{k}={v}" for k, v in PRODUCER_CONFIG.items() if k != "acks")
    consumer = ", ".join(f"{k}={v}" for k, v in CONSUMER_CONFIG.items())
    version = brokers.moldau_kind(Path(sys.executable).with_name("moldau")).version
    failover_producer = ", ".join(
        f"{k}={v}" for k, v in failover.producer_config(metadata_refresh_ms).items()
    )
    workloads = [
        f"- Client: confluent-kafka {confluent_kafka.version()} "
        f"(librdkafka {confluent_kafka.libversion()[0]}); producer: librdkafka defaults + "
        f"{producer}, acks per setting; consumer: assign() from offset 0, librdkafka "
        f"defaults + {consumer}",
        "- Each workload's topic is deleted after its consume phase"
        + (" (not in this run: --keep-data)" if keep_data else ""),
        f"- Repeats: {plan.repeat} on the same cluster (setting order rotating); latency: "
        f"{run.LATENCY_RATE} records/s x {run.LATENCY_RECORD_SIZE} B for "
        f"{plan.latency_seconds:g} s after 1 s warm-up",
    ]
    return [
        f"### Cluster, {started:%Y-%m-%d %H:%M} UTC",
        "",
        f"Command: `{shlex.join(['python', 'bench/cluster.py', *argv])}`",
        "",
        f"- Machine: {platform.machine()}, {run.cpu_model()}, {run.cores()} cores; "
        f"Python {platform.python_version()}; 1-minute load average: {load.line()}",
        f"- Cluster: moldau {version}, {BROKERS} brokers and one ZooKeeper on this machine, "
        f"zookeeper.session.timeout.ms={session_ms}, other broker settings at their defaults",
        *([] if failover_only else workloads),
        f"- Failover producer: {failover.RATE} records/s x {failover.RECORD_SIZE} B to a "
        f"1-partition RF 3 topic (min.insync.replicas=2), {failover_producer}",
    ]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="10x smaller counts, 3 s of latency, 1 repeat, 3 kills")  # fmt: skip
    parser.add_argument("--repeat", type=int, help="throughput and latency repeats (default 3)")
    parser.add_argument("--kills", type=int, help="leader kills (default 10, quick 3)")
    parser.add_argument("--session-timeout-ms", type=int, default=SESSION_TIMEOUT_MS,
                        help="the brokers' zookeeper.session.timeout.ms")  # fmt: skip
    parser.add_argument("--failover-only", action="store_true",
                        help="skip the throughput and latency parts")  # fmt: skip
    parser.add_argument("--metadata-refresh-ms", type=int, default=failover.METADATA_REFRESH_MS,
                        help="the failover producer's topic.metadata.refresh.interval.ms "
                        "(librdkafka's default: 300000)")  # fmt: skip
    parser.add_argument("--phase-timeout", type=float, default=180.0,
                        help="seconds allowed for one produce or consume phase")  # fmt: skip
    parser.add_argument("--keep-data", action="store_true",
                        help="keep each workload's topic (by default it is deleted after "
                        "its consume phase)")  # fmt: skip
    parser.add_argument("--append-docs", action="store_true", help=f"append results to {run.DOCS}")
    parser.add_argument("--data-root", type=Path, default=run.TMP,
                        help="parent of the cluster directory (must be on disk)")  # fmt: skip
    parser.add_argument("--results-dir", type=Path, default=run.BENCH_DIR / "results",
                        help="logs and raw samples go to a timestamped folder here")  # fmt: skip
    return parser.parse_args(argv)


def _keep_logs(cluster_dir: Path, run_dir: Path) -> None:
    for log in [*cluster_dir.glob("broker-*/broker.log"), cluster_dir / "zookeeper/zookeeper.log"]:
        if log.exists():
            shutil.copy(log, run_dir / f"{log.parent.name}.log")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    plan = make_plan(args)
    kills = args.kills if args.kills is not None else (3 if args.quick else 10)
    started = datetime.datetime.now(datetime.UTC)
    run_dir = args.results_dir / f"{started:%Y%m%d-%H%M%S}-cluster"
    run_dir.mkdir(parents=True, exist_ok=True)
    samples = report.Samples(
        brokers=[s.name for s in SETTINGS],
        labels={s.name: s.label for s in SETTINGS},
        workloads=[w.label for w in plan.workloads],
    )
    # kazoo's and librdkafka's (expected) connection errors go to a file.
    logging.basicConfig(
        filename=run_dir / "harness.log", level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )  # fmt: skip
    load = Load([])
    load.note("at start")
    clock = time.monotonic()
    cluster_dir = Path(tempfile.mkdtemp(prefix="moldau-cluster-bench-", dir=args.data_root))
    config = {"zookeeper.session.timeout.ms": str(args.session_timeout_ms)}
    cluster = LocalCluster(cluster_dir, BROKERS, broker_config=config)
    try:
        cluster.start(timeout=plan.start_timeout)
        results = measure(cluster, plan, args, kills, samples, run_dir, load)
    finally:
        cluster.stop()
        _keep_logs(cluster_dir, run_dir)
        shutil.rmtree(cluster_dir, ignore_errors=True)
    _say(f"done in {time.monotonic() - clock:.0f} s; logs in {run_dir}")
    text = markdown(
        samples, results,
        preamble(
            argv, plan, started, args.session_timeout_ms, load, args.metadata_refresh_ms,
            args.failover_only, args.keep_data,
        ),
        cluster.session_timeout, kills, args.failover_only,
    )  # fmt: skip
    (run_dir / "samples.json").write_text(
        json.dumps({**asdict(samples), "kills": [asdict(k) for k in results]}, indent=1)
    )
    print(text)
    if args.append_docs:
        run.append_to_docs(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
