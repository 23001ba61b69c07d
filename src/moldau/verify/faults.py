"""The faults ``moldau verify`` injects while its workload runs, and their undoing.

Three kinds (``KINDS``), each with its undo:

- ``kill``: kill -9 the target; started again ``fault_time`` seconds later.
- ``pause``: SIGSTOP; SIGCONT ``fault_time`` seconds later.
- ``restart``: a clean stop (SIGTERM); started again ``fault_time`` later.

A target is a broker of a ``moldau cluster up`` directory (``LocalBroker``:
its pid file, started again with the cluster's plan) or anything given as
shell commands (``CommandTarget``), one per action::

    --fault-cmd 'k1:kill=docker kill -s KILL kafka1' --fault-cmd 'k1:start=docker start kafka1'
    --fault-cmd 'k1:pause=docker pause kafka1' --fault-cmd 'k1:resume=docker unpause kafka1'

A kind is possible for a target with both its actions (kill+start,
pause+resume, stop+start). Every ``interval`` seconds the ``Nemesis`` picks a
possible kind at random (seeded) and a target by ``role``: ``random``, a
broker id, the ``leader`` of partition 0, the ``controller``, the group's
``coordinator``, or the ``txn-coordinator`` of a transactional run's producer
(a role resolves to a broker id; a command target named by that id is used).
Whatever is still broken when the nemesis exits is undone there, always.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

KINDS = ("kill", "pause", "restart")
#: kind -> (the action that injects it, the action that undoes it)
ACTIONS = {"kill": ("kill", "start"), "pause": ("pause", "resume"), "restart": ("stop", "start")}
COMMAND_ACTIONS = ("kill", "stop", "start", "pause", "resume")
ROLES = ("random", "leader", "controller", "coordinator", "txn-coordinator")


class FaultError(RuntimeError):
    """A fault could not be injected or undone; the message is one line."""


class Target(Protocol):
    name: str

    def can(self, action: str) -> bool: ...

    def act(self, action: str) -> None: ...


@dataclass
class CommandTarget:
    """A target whose actions are shell commands (``--fault-cmd``)."""

    name: str
    commands: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0

    def can(self, action: str) -> bool:
        return action in self.commands

    def act(self, action: str) -> None:
        command = self.commands[action]
        try:
            done = subprocess.run(
                command, shell=True, capture_output=True, text=True, timeout=self.timeout
            )
        except subprocess.TimeoutExpired:
            raise FaultError(
                f"{self.name} {action}: `{command}` ran over {self.timeout:g}s"
            ) from None
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            raise FaultError(
                f"{self.name} {action}: `{command}` exited {done.returncode}: {last[0]}"
            )


def parse_fault_commands(specs: Sequence[str]) -> list[CommandTarget]:
    """``NAME:ACTION=COMMAND`` flags as targets; ValueError on a bad one."""
    targets: dict[str, CommandTarget] = {}
    for spec in specs:
        name, colon, rest = spec.partition(":")
        action, equals, command = rest.partition("=")
        if not (colon and equals and name and command.strip()):
            raise ValueError(f"--fault-cmd wants NAME:ACTION=COMMAND, got {spec!r}")
        if action not in COMMAND_ACTIONS:
            raise ValueError(f"--fault-cmd {spec!r}: ACTION is one of {', '.join(COMMAND_ACTIONS)}")
        targets.setdefault(name, CommandTarget(name)).commands[action] = command
    return list(targets.values())


class LocalBroker:
    """Broker ``broker_id`` of the ``moldau cluster up`` in ``directory``,
    found through its pid file (``moldau.cluster.local``). Starting it again
    waits for the killed process's registration to expire, spawns it with the
    cluster's plan, and returns once it is ready."""

    def __init__(self, directory: Path, broker_id: int, ready_timeout: float = 90.0) -> None:
        from moldau.cluster.local import LocalCluster

        self.name = str(broker_id)
        self.directory = directory
        self.broker_id = broker_id
        self.ready_timeout = ready_timeout
        self._cluster = LocalCluster(directory)
        self._process: subprocess.Popen[bytes] | None = None

    def can(self, action: str) -> bool:
        return True

    def _pid(self) -> int:
        from moldau.cluster.local import broker_pid

        pid = broker_pid(self.directory, self.broker_id)
        if pid is None:
            raise FaultError(f"broker {self.broker_id} is not running (no live pid file)")
        return pid

    def act(self, action: str) -> None:
        if action == "start":
            self._start()
            return
        pid = self._pid()
        if action == "pause":
            os.kill(pid, signal.SIGSTOP)
        elif action == "resume":
            os.kill(pid, signal.SIGCONT)
        else:  # kill, stop
            if action == "stop":
                os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL if action == "kill" else signal.SIGTERM)
            self._wait(lambda: self._gone(), 30.0, "to exit")

    def _gone(self) -> bool:
        from moldau.cluster.local import broker_pid

        if self._process is not None:
            self._process.poll()  # reap our own child
        return broker_pid(self.directory, self.broker_id) is None

    def _start(self) -> None:
        from kazoo.client import KazooClient

        from moldau.cluster.local import answers_api_versions, broker_pid
        from moldau.cluster.zk import paths as zp

        if broker_pid(self.directory, self.broker_id) is not None:
            return  # already running (an earlier undo got there)
        hosts, chroot = zp.parse_connect(self._cluster.zookeeper_connect)
        path = chroot + zp.broker_path(self.broker_id)
        zookeeper = KazooClient(hosts=hosts, timeout=5.0)
        zookeeper.start(timeout=10)
        try:
            self._wait(
                lambda: zookeeper.exists(path) is None, self.ready_timeout, "to leave ZooKeeper"
            )
            process = self._process = self._cluster.spawn_broker(self.broker_id)
            port = self._cluster.port(self.broker_id)
            self._wait(
                lambda: (
                    process.poll() is None
                    and answers_api_versions(port)
                    and zookeeper.exists(path) is not None
                ),
                self.ready_timeout,
                "to be ready",
            )
        finally:
            zookeeper.stop()
            zookeeper.close()

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() >= deadline:
                raise FaultError(f"broker {self.broker_id} took over {timeout:g}s {what}")
            time.sleep(0.05)


def zookeeper_controller(zookeeper_connect: str) -> int | None:
    """The broker id in /controller, None while there is none."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoNodeError

    from moldau.cluster.zk import paths as zp

    hosts, chroot = zp.parse_connect(zookeeper_connect)
    client = KazooClient(hosts=hosts, timeout=5.0)
    client.start(timeout=10)
    try:
        data, _ = client.get(chroot + zp.CONTROLLER)
        return zp.decode_controller(data).broker_id
    except NoNodeError:
        return None
    finally:
        client.stop()
        client.close()


#: role -> the broker id playing it now (None: nobody)
RoleResolver = Callable[[str], int | None]


def kafka_roles(
    bootstrap_servers: str,
    topic: str,
    group: str,
    zookeeper_connect: str | None = None,
    client_config: Mapping[str, str] | None = None,
    transactional_id: str | None = None,
) -> RoleResolver:
    """Resolve roles by asking the cluster: Metadata for the leader of
    partition 0 (and the controller without ZooKeeper), FindCoordinator
    (DescribeGroups) for the group's coordinator, FindCoordinator of the
    transactional id for the transaction coordinator."""

    def resolve(role: str) -> int | None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {"bootstrap.servers": bootstrap_servers, "log_level": 2, **(client_config or {})}
        )
        try:
            if role == "controller" and zookeeper_connect:
                return zookeeper_controller(zookeeper_connect)
            if role in ("leader", "controller"):
                metadata = admin.list_topics(topic, timeout=5)
                if role == "controller":
                    return metadata.controller_id if metadata.controller_id >= 0 else None
                partition = metadata.topics[topic].partitions.get(0)
                return partition.leader if partition and partition.leader >= 0 else None
            if role == "coordinator":
                description = admin.describe_consumer_groups([group])[group].result(timeout=10)
                return int(description.coordinator.id)
            if role == "txn-coordinator" and transactional_id is not None:
                return transaction_coordinator(bootstrap_servers, transactional_id)
        except Exception as exc:  # a cluster in trouble (it is under faults): no target now
            log.warning("cannot find the %s: %r", role, exc)
        return None

    return resolve


def transaction_coordinator(bootstrap_servers: str, transactional_id: str) -> int | None:
    """The broker id FindCoordinator names for ``transactional_id`` (None:
    none now). librdkafka has no call for it: moldau's client asks."""
    import asyncio

    from moldau.client.cluster import TRANSACTION_KEY, Cluster
    from moldau.protocol.errors import KafkaError

    async def ask() -> int | None:
        async with Cluster(bootstrap_servers, request_timeout_ms=10_000) as cluster:
            try:
                node_id, _ = await cluster.coordinator(transactional_id, TRANSACTION_KEY)
            except KafkaError:
                return None
            return node_id

    return asyncio.run(ask())


@dataclass
class FaultEvent:
    """One fault as it happened (monotonic times)."""

    kind: str
    target: str
    role: str
    injected: float | None = None
    healed: float | None = None
    error: str | None = None


class Nemesis:
    """Every ``interval`` seconds, one fault of ``kinds`` on a target chosen
    by ``role``, undone ``fault_time`` seconds later; a context manager whose
    exit stops it and undoes whatever is still broken."""

    def __init__(
        self,
        targets: Sequence[Target],
        kinds: Sequence[str],
        *,
        interval: float,
        fault_time: float,
        role: str = "random",
        resolve: RoleResolver | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targets = {t.name: t for t in targets}
        self.kinds = list(kinds)
        self.interval = interval
        self.fault_time = fault_time
        self.role = role
        self.resolve = resolve
        self.clock = clock
        self.random = random.Random(seed)
        self.events: list[FaultEvent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="nemesis", daemon=True)
        self._broken: list[tuple[Target, FaultEvent]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Nemesis:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.heal_all()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self.inject_one()
                self._stop.wait(self.fault_time)
                self.heal_all()
        except Exception as exc:  # recorded; the exit still heals
            log.warning("nemesis stopped: %r", exc)
            self.events.append(FaultEvent("nemesis", "-", self.role, error=repr(exc)))

    def _choose(self) -> tuple[str, Target] | None:
        if self.role == "random":
            candidates = list(self.targets.values())
        elif self.role in ROLES:
            playing = self.resolve(self.role) if self.resolve is not None else None
            candidates = [self.targets[str(playing)]] if str(playing) in self.targets else []
        else:
            candidates = [self.targets[n] for n in self.role.split(",") if n in self.targets]
        options = [
            (kind, target)
            for target in candidates
            for kind in self.kinds
            if all(target.can(action) for action in ACTIONS[kind])
        ]
        return self.random.choice(options) if options else None

    def inject_one(self) -> FaultEvent | None:
        choice = self._choose()
        if choice is None:
            event = FaultEvent("none", "-", self.role, error=f"no target plays {self.role}")
            self.events.append(event)
            return event
        kind, target = choice
        event = FaultEvent(kind, target.name, self.role)
        self.events.append(event)
        with self._lock:
            self._broken.append((target, event))
        try:
            target.act(ACTIONS[kind][0])
            event.injected = self.clock()
            log.info("fault: %s %s", kind, target.name)
        except (FaultError, OSError) as exc:
            event.error = str(exc)
        return event

    def heal_all(self) -> None:
        """Undo every fault still in place (each undo is tried even if one fails)."""
        with self._lock:
            broken, self._broken = self._broken, []
        for target, event in broken:
            try:
                target.act(ACTIONS[event.kind][1])
                event.healed = self.clock()
                log.info("healed: %s %s", event.kind, target.name)
            except (FaultError, OSError) as exc:
                event.error = f"{event.error + '; ' if event.error else ''}undo: {exc}"

    def report(self) -> list[dict[str, Any]]:
        return [dict(vars(e)) for e in self.events]


def local_targets(directory: Path) -> list[Target]:
    """Every broker of the ``moldau cluster up`` in ``directory``."""
    from moldau.cluster.local_plan import read_plan

    plan = read_plan(directory)
    if plan is None:
        raise FaultError(f"{directory} holds no moldau cluster (no cluster.json)")
    return [LocalBroker(directory, b.broker_id) for b in plan.brokers]
