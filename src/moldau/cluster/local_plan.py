"""Where a local cluster's processes listen and what they are told: the plan
``moldau cluster up`` saves as ``DIR/cluster.json``.

A restart on the same directory reads the plan back, so each broker keeps
its id, port and rack and the cluster keeps its ZooKeeper: clients' bootstrap
addresses stay valid, and ``moldau cluster status --dir`` finds the
ZooKeeper. Pure but for reading the file and asking the OS for free ports.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "cluster.json"
#: The chroot of a ZooKeeper started for the cluster.
CHROOT = "/moldau"
#: Keys set per broker; one value for every broker would break the cluster.
PER_BROKER_KEYS = frozenset(
    {
        "broker.id",
        "node.id",
        "broker.rack",
        "listeners",
        "advertised.listeners",
        "log.dir",
        "log.dirs",
        "zookeeper.connect",
    }
)
DEFAULT_BROKERS = 3


class PlanError(ValueError):
    """A plan that cannot be: a bad argument or a damaged ``cluster.json``."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class BrokerPlan:
    """Where one broker listens and in which rack."""

    broker_id: int
    port: int
    rack: str | None = None


@dataclass(frozen=True)
class ClusterPlan:
    """The brokers' ``zookeeper.connect``; ``zookeeper_port`` is set when the
    cluster starts its own ZooKeeper (None: an existing one is used)."""

    zookeeper_connect: str
    zookeeper_port: int | None
    brokers: tuple[BrokerPlan, ...]
    broker_config: Mapping[str, str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterPlan:
        obj = json.loads(text)
        return cls(
            zookeeper_connect=str(obj["zookeeper_connect"]),
            zookeeper_port=obj.get("zookeeper_port"),
            brokers=tuple(BrokerPlan(**b) for b in obj["brokers"]),
            broker_config={str(k): str(v) for k, v in (obj.get("broker_config") or {}).items()},
        )


def read_plan(directory: Path) -> ClusterPlan | None:
    """The plan a cluster in ``directory`` was started with, None if there is none."""
    path = directory / STATE_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return ClusterPlan.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PlanError(f"{path} is not a moldau cluster plan: {exc!r}") from None


def write_plan(directory: Path, plan: ClusterPlan) -> None:
    """Replace ``cluster.json`` whole: a reader never sees half of it."""
    path = directory / STATE_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(plan.to_json())
    temporary.replace(path)


def make_plan(
    saved: ClusterPlan | None,
    brokers: int | None = None,
    racks: Sequence[str] | None = None,
    base_port: int | None = None,
    zookeeper_connect: str | None = None,
    broker_config: Mapping[str, str] | None = None,
    free: Callable[[], int] = free_port,
) -> ClusterPlan:
    """The plan for this start: what is given, else what was saved, else defaults.

    Broker ids are 0..N-1. With ``base_port`` broker N listens on
    ``base_port + N``; racks are dealt round-robin; ``broker_config`` is
    merged over the saved one.
    """
    bad = sorted(PER_BROKER_KEYS & set(broker_config or {}))
    if bad:
        raise PlanError(f"{', '.join(bad)}: set for each broker by the local cluster")
    count = brokers if brokers is not None else len(saved.brokers) if saved else DEFAULT_BROKERS
    if count < 1:
        raise PlanError(f"a cluster needs at least one broker, not {count}")
    if base_port is not None and not 0 < base_port <= 65536 - count:
        raise PlanError(f"base port {base_port} leaves no room for {count} brokers")
    if racks is not None and not all(racks):
        raise PlanError(f"empty rack name in {list(racks)}")
    old = {b.broker_id: b for b in saved.brokers} if saved else {}
    taken = {b.port for b in old.values()} | ({saved.zookeeper_port} if saved else set())

    def unused() -> int:
        """A free port no other process of the plan has (the OS may repeat one)."""
        while (port := free()) in taken:
            pass
        taken.add(port)
        return port

    plans = []
    for broker_id in range(count):
        before = old.get(broker_id)
        port = (
            base_port + broker_id if base_port is not None else before.port if before else unused()
        )
        taken.add(port)
        rack = racks[broker_id % len(racks)] if racks else before.rack if before else None
        plans.append(BrokerPlan(broker_id, port, rack))
    if zookeeper_connect is not None:
        connect, zookeeper_port = zookeeper_connect, None
    elif saved is not None:
        connect, zookeeper_port = saved.zookeeper_connect, saved.zookeeper_port
    else:
        zookeeper_port = unused()
        connect = f"127.0.0.1:{zookeeper_port}{CHROOT}"
    config = {**(saved.broker_config if saved else {}), **(broker_config or {})}
    return ClusterPlan(connect, zookeeper_port, tuple(plans), config)
