"""``moldau cluster``: run a cluster on this machine (``up``), show any
cluster's state from its ZooKeeper (``status``), move leadership back to the
preferred replicas (``elect-leaders``).

``up`` starts a ZooKeeper (Debian's ``zookeeper`` package) and N brokers
(``moldau.cluster.local``), prints the addresses, and stays in the
foreground until Ctrl-C, SIGTERM or SIGHUP (its terminal closed: the
brokers, in sessions of their own, would outlive it), which stop the brokers,
then ZooKeeper, and exit 0. The data stays in the directory; ``up --dir`` on
it again restarts the same cluster. ``status`` reads ZooKeeper only
(``moldau.cluster.status``), so it works while brokers are down; with no
``--zookeeper`` or ``--dir`` it shows the cluster last started by ``up``
(whose directory ``up`` notes in ``$XDG_CACHE_HOME/moldau/last-cluster``).
``elect-leaders`` sends ElectLeaders (API key 43) to the controller, found
from ``--bootstrap-server`` or the brokers of ``--dir`` (or of the last
``up``), and prints each partition's outcome; it exits 1 if any election
failed (one not needed is no failure, as in Kafka's kafka-leader-election.sh).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from .common import CliError, key_value, run_async

#: What ``--type`` names (Kafka's ElectionType on the wire).
ELECTION_TYPES = {"preferred": 0, "unclean": 1}

if TYPE_CHECKING:
    from moldau.cluster.local import LocalCluster
    from moldau.cluster.local_plan import ClusterPlan
    from moldau.cluster.status import ClusterStatus
    from moldau.protocol.errors import KafkaError


def register(commands: Any) -> None:
    parser = commands.add_parser("cluster", help="run a local cluster, show a cluster's state")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    up = actions.add_parser(
        "up",
        help="start ZooKeeper and N brokers on this machine",
        description="Start a local ZooKeeper and N brokers with their data under one "
        "directory; Ctrl-C stops them all.",
    )
    up.add_argument("--brokers", type=_positive, help="how many brokers (default 3)")
    up.add_argument(
        "--dir",
        type=Path,
        help="where the data goes (default: a new temporary directory); "
        "a cluster that ran there before starts again",
    )
    up.add_argument("--racks", type=_names, metavar="A,B,...", help="broker.rack, dealt in turn")
    up.add_argument(
        "--port", type=_positive, metavar="BASE", help="broker N listens on BASE+N (default: free)"
    )
    up.add_argument(
        "--zookeeper",
        metavar="HOST:PORT[/CHROOT]",
        help="use this ZooKeeper instead of starting one",
    )
    up.add_argument(
        "--override",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a broker config key for every broker (repeatable)",
    )
    up.set_defaults(run=_up)

    status = actions.add_parser(
        "status",
        help="brokers, controller, leaders, under-replicated and offline partitions",
        description="Read a cluster's state from its ZooKeeper.",
    )
    where = status.add_mutually_exclusive_group()
    where.add_argument(
        "--zookeeper", metavar="HOST:PORT[/CHROOT]", help="the cluster's zookeeper.connect"
    )
    where.add_argument("--dir", type=Path, help="the directory of a `moldau cluster up`")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(run=_status)

    elect = actions.add_parser(
        "elect-leaders",
        help="move leadership to the preferred replicas (or elect uncleanly)",
        description="Ask the controller for leader elections (ElectLeaders): every "
        "partition, a topic's, or one; prints each outcome and exits 1 if any failed.",
    )
    found = elect.add_mutually_exclusive_group()
    found.add_argument(
        "--bootstrap-server", metavar="HOST:PORT[,HOST:PORT...]", help="brokers to ask first"
    )
    found.add_argument("--dir", type=Path, help="the directory of a `moldau cluster up`")
    elect.add_argument("--topic", help="only this topic's partitions")
    elect.add_argument("--partition", type=int, help="only this partition (needs --topic)")
    elect.add_argument(
        "--type",
        choices=sorted(ELECTION_TYPES),
        default="preferred",
        help="preferred (default): back to the first replica; unclean: "
        "partitions without a leader may elect an out-of-sync replica",
    )
    elect.add_argument(
        "--timeout-ms", type=int, default=30_000, help="how long to wait (default 30000)"
    )
    elect.set_defaults(run=_elect_leaders)

    from . import cluster_rebalance_args

    cluster_rebalance_args.register(actions)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return names


def last_cluster_note() -> Path:
    """Where ``up`` notes its directory for a ``status`` without arguments."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "moldau" / "last-cluster"


# -- up ------------------------------------------------------------------------


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(Exception):
    """SIGINT, SIGTERM or SIGHUP: stop the cluster and exit 0."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Once: a second Ctrl-C must not interrupt the stop it started.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    raise _Stop()


def _up(args: argparse.Namespace) -> int:
    from moldau.cluster.local import LocalCluster, LocalClusterError
    from moldau.cluster.local_plan import PlanError
    from moldau.cluster.local_zookeeper import ZooKeeperError

    logging.basicConfig(level=logging.INFO, format="moldau cluster: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # its reconnect chatter
    directory = args.dir or Path(tempfile.mkdtemp(prefix="moldau-cluster-"))
    previous = {s: signal.signal(s, _on_signal) for s in STOP_SIGNALS}
    cluster: LocalCluster | None = None
    try:
        cluster = LocalCluster(
            directory,
            args.brokers,
            racks=args.racks,
            base_port=args.port,
            zookeeper_connect=args.zookeeper,
            broker_config=dict(args.override),
        )
        _note_last_cluster(directory)
        cluster.start()
        _print_up(cluster)
        _watch(cluster)
    except _Stop:
        pass
    except (LocalClusterError, PlanError, ZooKeeperError) as exc:
        raise CliError(str(exc)) from None
    finally:
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)
        try:
            if cluster is not None:
                cluster.stop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    print("moldau cluster: stopped", flush=True)
    return 0


def _note_last_cluster(directory: Path) -> None:
    note = last_cluster_note()
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(f"{directory.resolve()}\n")
    except OSError as exc:  # only a convenience for `status`
        logging.getLogger(__name__).warning("cannot note the cluster in %s: %s", note, exc)


def _print_up(cluster: LocalCluster) -> None:
    rows = [
        ["bootstrap.servers", cluster.bootstrap_servers],
        ["zookeeper.connect", cluster.zookeeper_connect],
    ]
    for broker in cluster.plan.brokers:
        rack = f" (rack {broker.rack})" if broker.rack else ""
        rows.append([f"broker {broker.broker_id}", f"{cluster.address(broker.broker_id)}{rack}"])
    print(f"moldau cluster: {len(rows) - 2} brokers up, data in {cluster.directory}")
    for line in table(rows):
        print(f"  {line}")
    print(
        f"Ctrl-C stops it; `moldau cluster status --dir {cluster.directory}` shows it.",
        flush=True,
    )


def _watch(cluster: LocalCluster) -> None:
    """Until a signal: say once when a broker exits (it stays down until the next ``up``)."""
    reported: set[int] = set()
    while True:
        for broker_id in cluster.broker_ids:
            if broker_id not in reported and not cluster.running(broker_id):
                reported.add(broker_id)
                print(
                    f"moldau cluster: broker {broker_id} exited "
                    f"(log: {cluster.log_path(broker_id)})",
                    file=sys.stderr,
                    flush=True,
                )
        time.sleep(0.5)


# -- status --------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    from moldau.cluster.status import StatusError, fetch_status

    logging.getLogger("kazoo").setLevel(logging.CRITICAL)  # a failure is our one line
    connect = args.zookeeper or _connect_of(args.dir)
    try:
        status = run_async(fetch_status(connect))
    except StatusError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print("\n".join(render_status(status)))
    return 0


def _connect_of(directory: Path | None) -> str:
    """The ``zookeeper.connect`` of the cluster ``up`` ran in ``directory``
    (default: the last one it started)."""
    return _plan_of(directory, "--zookeeper HOST:PORT/CHROOT").zookeeper_connect


def _plan_of(directory: Path | None, instead: str) -> ClusterPlan:
    """The plan of the cluster ``up`` ran in ``directory`` (default: the
    last one it started); ``instead`` is the flag that names a cluster
    otherwise."""
    from moldau.cluster.local_plan import PlanError, read_plan

    if directory is None:
        try:
            directory = Path(last_cluster_note().read_text().strip())
        except OSError:
            raise CliError(
                f"which cluster? give {instead} or --dir DIR (no `moldau cluster up` noted here)"
            ) from None
    try:
        plan = read_plan(directory)
    except PlanError as exc:
        raise CliError(str(exc)) from None
    if plan is None:
        raise CliError(f"no cluster in {directory} (it has no cluster.json)")
    return plan


# -- elect-leaders -------------------------------------------------------------


def _elect_leaders(args: argparse.Namespace) -> int:
    from moldau.protocol.errors import ErrorCode, KafkaError

    if args.partition is not None and args.topic is None:
        raise CliError("--partition needs --topic")
    bootstrap = args.bootstrap_server or bootstrap_of(args.dir)
    try:
        outcomes = run_async(_elect(bootstrap, args))
    except KafkaError as exc:
        raise CliError(f"leader election failed: {exc}") from None
    failed = 0
    for (topic, partition), error in sorted(outcomes.items()):
        if error is None:
            text = "elected"
        elif error.code == ErrorCode.ELECTION_NOT_NEEDED:
            text = "not needed, the leader is already the one wanted"
        else:
            failed += 1
            text = f"failed: {error.code.name}" + (f" ({error.message})" if error.message else "")
        print(f"{topic}-{partition}  {text}")
    if failed:
        print(f"{failed} of {len(outcomes)} elections failed", file=sys.stderr)
    return 1 if failed else 0


def bootstrap_of(directory: Path | None) -> str:
    """The brokers of the cluster ``up`` ran in ``directory`` (default: the
    last one it started)."""
    plan = _plan_of(directory, "--bootstrap-server HOST:PORT")
    return ",".join(f"127.0.0.1:{b.port}" for b in plan.brokers)


async def _elect(
    bootstrap: str, args: argparse.Namespace
) -> dict[tuple[str, int], KafkaError | None]:
    """Ask the controller: per partition None or its error. (The new leaders
    are not shown: the controller knows them, other brokers' metadata a
    moment later.)"""
    from moldau.client.admin import Admin

    async with Admin(bootstrap, request_timeout_ms=args.timeout_ms) as admin:
        wanted: list[tuple[str, int]] | None = None
        if args.topic is not None:
            (info,) = await admin.describe_topics([args.topic])
            indexes = sorted(info.partitions) if args.partition is None else [args.partition]
            wanted = [(args.topic, p) for p in indexes]
        return await admin.elect_leaders(ELECTION_TYPES[args.type], wanted)


def render_status(status: ClusterStatus) -> list[str]:
    """The text of ``moldau cluster status``."""
    alive = sum(1 for b in status.brokers if b.alive)
    if status.controller is not None:
        controller = f"broker {status.controller} (epoch {status.controller_epoch})"
    elif status.controller_epoch is not None:
        controller = f"none (last epoch {status.controller_epoch})"
    else:
        controller = "none"
    lines = table(
        [
            ["zookeeper", status.zookeeper_connect],
            ["cluster id", status.cluster_id or "none yet"],
            ["controller", controller],
            ["brokers", f"{alive} alive of {len(status.brokers)}"],
        ]
    )
    if status.brokers:
        lines.append("")
        lines += table(
            [["BROKER", "ALIVE", "RACK", "ENDPOINT", "REPLICAS", "LEADS", "PREFERRED"]]
            + [
                [
                    str(b.broker_id),
                    "yes" if b.alive else "no",
                    b.rack or "-",
                    ",".join(b.endpoints) or "-",
                    str(len(b.hosts)),
                    str(len(b.leads)),
                    str(len(b.preferred)),
                ]
                for b in status.brokers
            ]
        )
    topics = len({p.topic for p in status.partitions})
    lines += [
        "",
        f"partitions: {len(status.partitions)} in {topics} topic{'' if topics == 1 else 's'}, "
        f"{len(status.under_replicated)} under-replicated, {len(status.offline)} offline",
        *_balance(status),
    ]
    for title, partitions in (
        ("under-replicated", status.under_replicated),
        ("offline", status.offline),
    ):
        if partitions:
            lines.append(f"{title}:")
            rows = [["TOPIC", "PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"]] + [
                [
                    p.topic,
                    str(p.partition),
                    str(p.leader) if p.leader >= 0 else "none",
                    str(p.leader_epoch),
                    _ids(p.replicas),
                    _ids(p.isr) or "-",
                ]
                for p in partitions
            ]
            lines += [f"  {line}" for line in table(rows)]
    if status.reassigning:
        lines.append("reassignments in progress:")
        rows = [["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING", "ISR"]] + [
            [
                p.topic,
                str(p.partition),
                _ids(p.replicas),
                _ids(p.adding) or "-",
                _ids(p.removing) or "-",
                _ids(p.isr) or "-",
            ]
            for p in status.reassigning
        ]
        lines += [f"  {line}" for line in table(rows)]
    if status.deleting:
        lines.append(f"topics being deleted: {', '.join(status.deleting)}")
    return lines


def _balance(status: ClusterStatus) -> list[str]:
    """The balance lines: replica counts, preferred leaders, the leaders
    that are not the preferred ones; what to run when one is off."""
    if not status.partitions:
        return []
    replicas = (
        f"imbalanced (they differ by {status.spread('hosts')}; "
        "`moldau cluster rebalance` plans moves)"
        if status.replicas_imbalanced
        else "balanced"
    )
    for broker_id in status.empty_brokers:
        replicas += (
            f"; broker {broker_id} holds none "
            f"(`moldau cluster rebalance --add-broker {broker_id}` moves some onto it)"
        )
    preferred = "balanced" if status.spread("preferred") <= 1 else "imbalanced"
    away = len(status.not_preferred)
    leaders = (
        f"{away} not on the preferred replica (`moldau cluster elect-leaders` moves them back)"
        if away
        else "all on the preferred replicas"
    )
    return [
        f"replicas per broker: {replicas}",
        f"preferred leaders per broker: {preferred}; leaders: {leaders}",
        f"reassignments in progress: {len(status.reassigning)}",
    ]


def _ids(ids: tuple[int, ...]) -> str:
    return ",".join(map(str, ids))


def table(rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
