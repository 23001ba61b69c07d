"""``moldau verify``: audit a Kafka-compatible cluster under faults, Jepsen-style.

Runs ``moldau.verify.workload`` (optionally with ``moldau.verify.faults``),
checks the history with ``moldau.verify.checker``, prints the verdict,
writes the history as JSON, and exits 0 when clean, 1 on any violation (or
when the run could not be made), 2 on bad arguments. ``--check FILE`` only
checks a history saved before. With ``--dir`` (a ``moldau cluster up``) the
bootstrap address comes from the plan, faults can name brokers by id or
role, and the replicas' segment files are compared below the high watermark.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import CliError

if TYPE_CHECKING:
    from moldau.verify.checker import Verdict
    from moldau.verify.faults import Nemesis
    from moldau.verify.history import History
    from moldau.verify.replicas import ReplicaReport
    from moldau.verify.workload import Workload


class _BadArguments(Exception):
    """Exit 2 with this one line."""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "verify",
        help="audit a cluster under faults: lost, duplicated, reordered records",
        description="Write unique values with an idempotent acks=all producer, read them "
        "with a consumer group, inject faults, and check the history. Exit 0: clean; "
        "1: a violation; 2: bad arguments.",
    )
    parser.add_argument(
        "--bootstrap-server",
        "--bootstrap-servers",
        dest="bootstrap_server",
        metavar="HOST:PORT[,...]",
        help="the cluster (default: the --dir cluster's brokers, else 127.0.0.1:9092)",
    )
    parser.add_argument("--dir", type=Path, help="the directory of a `moldau cluster up`")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of producing")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--consumers", type=int, default=2, help="members of the group")
    parser.add_argument("--replication-factor", type=int, default=3)
    parser.add_argument("--min-insync-replicas", type=int, default=2)
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="values per second (0: unbounded)"
    )
    parser.add_argument(
        "--faults",
        default="",
        metavar="KIND,...",
        help="kill (-9, then start), pause (SIGSTOP, then SIGCONT), restart (SIGTERM, then start)",
    )
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between faults")
    parser.add_argument(
        "--fault-time", type=float, help="seconds a fault lasts (default: interval / 2)"
    )
    parser.add_argument(
        "--target",
        default="random",
        help="random, leader (of partition 0), controller, coordinator (the group's), "
        "txn-coordinator (with --transactional), or broker ids 0,2",
    )
    parser.add_argument(
        "--fault-cmd",
        action="append",
        default=[],
        metavar="NAME:ACTION=COMMAND",
        help="a shell command for ACTION (kill, stop, start, pause, resume) on target NAME "
        "(repeatable; name targets by broker id to use roles)",
    )
    parser.add_argument(
        "--transactional",
        action="store_true",
        help="send in transactions, abort some, and check that read_committed consumers "
        "see committed ones whole and exactly once and aborted ones never",
    )
    parser.add_argument("--txn-size", type=int, default=10, help="values per transaction")
    parser.add_argument(
        "--abort-every", type=int, default=5, help="abort every Nth transaction (0: none)"
    )
    parser.add_argument("--history", type=Path, help="where to write the history (JSON)")
    parser.add_argument("--seed", type=int, help="seed of the fault schedule")
    parser.add_argument(
        "--check", type=Path, metavar="HISTORY.json", help="only check a saved history"
    )
    parser.add_argument(
        "--no-replica-check",
        action="store_true",
        help="with --dir: do not compare the replicas' segment files",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.check is not None:
            return _check_saved(args.check)
        return _verify(args)
    except _BadArguments as exc:
        print(f"moldau verify: {exc}", file=sys.stderr)
        return 2


def _check_saved(path: Path) -> int:
    from moldau.verify.checker import check
    from moldau.verify.history import History

    try:
        history = History.from_json(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise _BadArguments(f"cannot read history {path}: {exc}") from None
    verdict = check(history)
    print("\n".join(render(history, verdict, None)))
    return 0 if verdict.ok else 1


def _verify(args: argparse.Namespace) -> int:
    from moldau.verify.checker import check
    from moldau.verify.workload import Workload, WorkloadConfig, WorkloadError

    logging.basicConfig(level=logging.WARNING, format="moldau verify: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    _validate(args)
    bootstrap = args.bootstrap_server or _plan_bootstrap(args.dir) or "127.0.0.1:9092"
    config = WorkloadConfig(
        bootstrap,
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        min_insync_replicas=args.min_insync_replicas,
        consumers=args.consumers,
        duration=args.duration,
        rate=args.rate,
        transactional=args.transactional,
        txn_size=args.txn_size,
        abort_every=args.abort_every,
    )
    workload = Workload(config)
    nemesis = _nemesis(args, workload)
    print(
        f"moldau verify: topic {config.topic} on {bootstrap}: {config.partitions} partitions, "
        f"RF {config.replication_factor}, min.insync.replicas {config.min_insync_replicas}, "
        f"{config.consumers} consumers, {config.duration:g}s"
        + (
            f", transactions of {config.txn_size} (every {config.abort_every}th aborted)"
            if config.transactional
            else ""
        )
        + (f", faults {args.faults} every {args.interval:g}s on {args.target}" if nemesis else ""),
        flush=True,
    )
    try:
        history = workload.run(nemesis)
    except WorkloadError as exc:
        raise CliError(str(exc)) from None
    if nemesis is not None:
        history.info["faults"] = nemesis.report()
    replicas = None
    if args.dir is not None and not args.no_replica_check:
        replicas = _compare_replicas(args.dir, workload)
        history.info["replicas"] = replicas.to_json()
    verdict = check(history)
    path = args.history or Path(f"{config.topic}.history.json")
    path.write_text(json.dumps(history.to_json()) + "\n")
    lines = render(history, verdict, replicas)
    print("\n".join([*lines[:-1], f"  history: {path}", lines[-1]]))
    return 0 if verdict.ok and (replicas is None or replicas.identical) else 1


def _validate(args: argparse.Namespace) -> None:
    from moldau.verify.faults import KINDS

    for name in ("duration", "interval"):
        if getattr(args, name) <= 0:
            raise _BadArguments(f"--{name} must be above 0")
    counts = ("partitions", "consumers", "replication_factor", "min_insync_replicas", "txn_size")
    for name in counts:
        if getattr(args, name) < 1:
            raise _BadArguments(f"--{name.replace('_', '-')} must be at least 1")
    if args.abort_every < 0:
        raise _BadArguments("--abort-every must be 0 (no aborts) or more")
    unknown = sorted(set(_kinds(args)) - set(KINDS))
    if unknown:
        raise _BadArguments(f"unknown fault {unknown[0]!r}: --faults takes {', '.join(KINDS)}")
    if _kinds(args) and args.dir is None and not args.fault_cmd:
        raise _BadArguments("--faults needs targets: --dir of a `moldau cluster up` or --fault-cmd")
    if args.dir is not None and not (args.dir / "cluster.json").is_file():
        raise _BadArguments(f"{args.dir} holds no moldau cluster (no cluster.json)")


def _kinds(args: argparse.Namespace) -> list[str]:
    return [kind.strip() for kind in args.faults.split(",") if kind.strip()]


def _plan_bootstrap(directory: Path | None) -> str | None:
    from moldau.cluster.local_plan import read_plan

    plan = read_plan(directory) if directory is not None else None
    if plan is None:
        return None
    return ",".join(f"127.0.0.1:{b.port}" for b in plan.brokers)


def _nemesis(args: argparse.Namespace, workload: Workload) -> Nemesis | None:
    from moldau.cluster.local_plan import read_plan
    from moldau.verify.faults import (
        Nemesis,
        Target,
        kafka_roles,
        local_targets,
        parse_fault_commands,
    )

    kinds = _kinds(args)
    if not kinds:
        return None
    try:
        targets: list[Target] = list(parse_fault_commands(args.fault_cmd))
    except ValueError as exc:
        raise _BadArguments(str(exc)) from None
    plan = None
    if args.dir is not None:
        plan = read_plan(args.dir)
        named = {t.name for t in targets}
        targets += [t for t in local_targets(args.dir) if t.name not in named]
    config = workload.config
    return Nemesis(
        targets,
        kinds,
        interval=args.interval,
        fault_time=args.fault_time if args.fault_time is not None else args.interval / 2,
        role=args.target,
        resolve=kafka_roles(
            config.bootstrap_servers,
            config.topic,
            config.group,
            plan.zookeeper_connect if plan is not None else None,
            transactional_id=config.transactional_id if config.transactional else None,
        ),
        seed=args.seed,
        clock=workload.clock,
    )


def _compare_replicas(directory: Path, workload: Workload) -> ReplicaReport:
    """Compare once the followers have caught up (or after 15 s: then the
    replicas behind are reported)."""
    from moldau.verify.replicas import compare_replicas

    deadline = time.monotonic() + 15
    while True:
        ends = workload.high_watermarks() or {}
        report = compare_replicas(directory, workload.config.topic, ends)
        if (ends and not report.behind) or time.monotonic() >= deadline:
            return report
        time.sleep(0.5)


def render(history: History, verdict: Verdict, replicas: ReplicaReport | None) -> list[str]:
    """The verdict as lines: figures, faults, replicas, counts, first examples."""
    stats, info = verdict.stats, history.info
    per_second = stats.get("acked_per_second")
    rate = f"; {per_second:,.0f} acked/s (first send to last acknowledgement)" if per_second else ""
    lines = [
        f"  sent {stats['sent']}, acknowledged {stats['acknowledged']}, failed "
        f"{stats['failed']}, unknown {stats['unknown']}{rate}",
    ]
    if stats.get("transactions"):
        lines.append(
            f"  transactions {stats['transactions']}: values committed {stats['acknowledged']}, "
            f"aborted {stats['aborted']}, of unknown outcome {stats['failed']}"
        )
    lines += [
        f"  read by the group {stats['group_reads']} ({stats['commits']} commits, "
        f"{stats['rebalances']} assignment changes); final read {stats['final_reads']} "
        f"({stats['partitions_fully_read']}/{history.partitions} partitions complete)",
    ]
    faults = info.get("faults")
    if faults is not None:
        injected = [f for f in faults if f.get("injected") is not None]
        failed = [f for f in faults if f.get("error")]
        kinds = ", ".join(f"{f['kind']}({f['target']})" for f in injected) or "none"
        lines.append(f"  faults: {len(injected)} injected ({kinds}), {len(failed)} with errors")
        lines += [f"    {f['kind']} {f['target']}: {f['error']}" for f in failed[:3]]
    if replicas is not None:
        lines.append(
            f"  replicas: {len(replicas.diverged)} partitions diverged below the high "
            f"watermark, {len(replicas.behind)} replicas behind "
            f"(compared {sum(len(r) for r in replicas.compared.values())} replicas of "
            f"{len(replicas.compared)} partitions)"
        )
        lines += [f"    diverged: {d}" for d in replicas.diverged[:5]]
    errors = info.get("client_errors") or []
    if errors:
        lines.append(f"  client errors: {len(errors)}, first: {errors[0]}")
    for kind, count in verdict.counts.items():
        lines.append(f"  {kind:<16} {count}")
        lines += [f"    e.g. {json.dumps(e)}" for e in verdict.examples.get(kind, [])[:3]]
    problems = [f"{k} {n}" for k, n in verdict.counts.items() if n]
    if replicas is not None and replicas.diverged:
        problems.append(f"replicas diverged {len(replicas.diverged)}")
    lines.append(f"VERDICT: {'VIOLATIONS: ' + ', '.join(problems) if problems else 'clean'}")
    return lines
