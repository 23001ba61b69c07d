"""A cluster on one machine: a ZooKeeper and N ``moldau broker`` processes.

What ``moldau cluster up`` and the ``moldau_cluster`` pytest fixture run, and
what cluster tests drive: start it, kill -9 / SIGSTOP / restart one broker,
wait for a condition with a deadline, stop it all. Everything lives under one
directory::

    DIR/cluster.json          the plan: ZooKeeper, each broker's id, port, rack
                              and the extra broker config (read again on restart
                              and by ``moldau cluster status --dir``)
    DIR/zookeeper/            the ZooKeeper started here: data, zoo.cfg, log
    DIR/broker-N/data/        broker N's log.dirs
    DIR/broker-N/broker.log   its stdout and stderr (appended across restarts)
    DIR/broker-N/pid          the pid of its process while it runs, so that a
                              tool that does not own the cluster (``moldau
                              verify --dir``) can signal it and start it again;
                              ``stop`` stops such a restarted broker too

Brokers are ``python -m moldau broker`` with Kafka's keys, ids 0..N-1, each
listening on its own port of 127.0.0.1; they run in sessions of their own, so
a Ctrl-C at the terminal reaches only the process that owns the cluster, which
stops brokers first (they leave ZooKeeper cleanly) and ZooKeeper last.

A broker is ready when its process runs, its port answers ApiVersions, its
ephemeral /brokers/ids/N exists and its Metadata lists every registered
broker. A broker started on an id whose registration from a killed process is
still in ZooKeeper would be refused, so a start first waits for that
registration to expire (at most the session timeout).

Where this departs from Kafka, which has no such tool: the brokers of one
cluster share one machine and one ZooKeeper under the chroot ``/moldau``, and
``offsets.topic.replication.factor`` defaults to ``min(3, brokers)`` so that
groups work in a cluster of one or two brokers (Kafka's docker examples do the
same), and ``controlled.shutdown.retry.backoff.ms`` is 500 rather than 5000,
since stopping a whole local cluster at once leaves the last brokers nobody
to hand leaderships to; an explicit setting wins.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from moldau.cluster.local_plan import ClusterPlan, make_plan, read_plan, write_plan
from moldau.cluster.local_zookeeper import ZooKeeperServer, last_line
from moldau.cluster.zk import paths as zp

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_FILE = "cluster.lock"
PID_FILE = "pid"
#: Kafka's zookeeper.session.timeout.ms default.
DEFAULT_SESSION_TIMEOUT_MS = 18_000


class LocalClusterError(RuntimeError):
    """The cluster could not start or a broker failed; the message is one line."""


class WaitTimeout(LocalClusterError):
    """A wait reached its deadline."""


def answers_api_versions(port: int, timeout: float = 1.0) -> bool:
    """True if something on 127.0.0.1:``port`` answers ApiVersions v0 without error."""
    body = _ask(port, 18, 0, {}, timeout)
    return body is not None and body["error_code"] == 0


def metadata_broker_ids(port: int, timeout: float = 1.0) -> set[int] | None:
    """The broker ids the broker on ``port`` lists in Metadata (no topics asked);
    None if it does not answer."""
    body = _ask(port, 3, 1, {"topics": []}, timeout)
    return None if body is None else {int(b["node_id"]) for b in body["brokers"]}


def _ask(
    port: int, api_key: int, version: int, request: dict[str, object], timeout: float
) -> dict[str, Any] | None:
    """One request to 127.0.0.1:``port``; its decoded body, None if it failed."""
    from moldau.protocol.messages import decode_response, encode_request

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(encode_request(api_key, version, 1, "moldau-cluster", request))
            size = int.from_bytes(_read(sock, 4), "big")
            _, body = decode_response(api_key, version, _read(sock, size))
    except (OSError, ValueError):
        return None
    return dict(body)


def _read(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return bytes(data)


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.02
) -> T:
    """Poll ``condition`` until it returns something truthy (and return that);
    WaitTimeout at the deadline. An exception from the condition ends the wait
    at once."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def broker_pid(directory: Path, broker_id: int) -> int | None:
    """The pid in ``DIR/broker-N/pid`` if that process is alive and is broker
    N of a local cluster (a pid is reused once its process is gone)."""
    try:
        pid = int((directory / f"broker-{broker_id}" / PID_FILE).read_text())
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            args = cmdline.read().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    alive = state not in (b"Z", b"X")
    return pid if alive and f"broker.id={broker_id}".encode() in args else None


class LocalCluster:
    """ZooKeeper (started here unless ``zookeeper_connect`` names one) and
    ``brokers`` broker processes with their data under ``directory``.

    Every argument left None comes from the plan saved in the directory by a
    previous start, else from the defaults (3 brokers, free ports, no racks).
    ``broker_config`` is Kafka broker keys for every broker. Use it as a
    context manager, or call ``start`` and then ``stop`` in a finally.
    """

    def __init__(
        self,
        directory: Path | str,
        brokers: int | None = None,
        *,
        racks: Sequence[str] | None = None,
        base_port: int | None = None,
        zookeeper_connect: str | None = None,
        broker_config: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.plan: ClusterPlan = make_plan(
            read_plan(self.directory), brokers, racks, base_port, zookeeper_connect, broker_config
        )
        self._brokers = {b.broker_id: b for b in self.plan.brokers}
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._paused: set[int] = set()
        self._zookeeper: ZooKeeperServer | None = None
        self._zk: KazooClient | None = None
        self._chroot = ""
        self._lock: IO[str] | None = None

    # -- what clients need -------------------------------------------------

    @property
    def broker_ids(self) -> list[int]:
        return sorted(self._brokers)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(self.address(b) for b in self.broker_ids)

    @property
    def zookeeper_connect(self) -> str:
        return self.plan.zookeeper_connect

    def port(self, broker_id: int) -> int:
        return self._brokers[broker_id].port

    def address(self, broker_id: int) -> str:
        return f"127.0.0.1:{self.port(broker_id)}"

    def broker_dir(self, broker_id: int) -> Path:
        return self.directory / f"broker-{broker_id}"

    def log_path(self, broker_id: int) -> Path:
        return self.broker_dir(broker_id) / "broker.log"

    def pid(self, broker_id: int) -> int | None:
        """The broker's live process: started here, or again by another
        process (its pid file); None when it runs nowhere."""
        process = self._processes.get(broker_id)
        if process is not None and process.poll() is None:
            return process.pid
        return broker_pid(self.directory, broker_id)

    @property
    def session_timeout(self) -> float:
        """The brokers' ZooKeeper session timeout, in seconds."""
        ms = self.plan.broker_config.get("zookeeper.session.timeout.ms")
        return int(ms or DEFAULT_SESSION_TIMEOUT_MS) / 1000

    # -- lifecycle -----------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> LocalCluster:
        """Start ZooKeeper (if ours) and every broker; return when all are ready."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._take_lock()
            write_plan(self.directory, self.plan)
            if self.plan.zookeeper_port is not None:
                self._zookeeper = ZooKeeperServer(
                    self.directory / "zookeeper", self.plan.zookeeper_port
                )
                log.info("starting ZooKeeper on %s", self._zookeeper.connect)
                self._zookeeper.start()
            self._connect_zookeeper(timeout)
            self._wait_unregistered(self.broker_ids)
            for broker_id in self.broker_ids:
                self._spawn(broker_id)
            self.wait_until_ready(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every broker, kill what is left at ``timeout``, then ZooKeeper."""
        try:
            for broker_id, process in self._processes.items():
                if process.poll() is None:
                    self._signal(broker_id, signal.SIGCONT)
                    self._signal(broker_id, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for broker_id, process in self._processes.items():
                try:
                    process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("broker %d did not stop in %gs: killed", broker_id, timeout)
                    process.kill()
                    process.wait()
            for broker_id in self.broker_ids:
                self._stop_restarted_elsewhere(broker_id, deadline)
            self._processes.clear()
            self._paused.clear()
        finally:
            try:
                if self._zk is not None:
                    self._zk.stop()
                    self._zk.close()
                    self._zk = None
            finally:
                try:
                    if self._zookeeper is not None:
                        self._zookeeper.stop()
                        self._zookeeper = None
                finally:
                    if self._lock is not None:
                        self._lock.close()
                        self._lock = None

    def _stop_restarted_elsewhere(self, broker_id: int, deadline: float) -> None:
        """SIGTERM (SIGKILL at ``deadline``) broker ``broker_id`` if another
        process started it again (``spawn_broker``); remove its pid file."""
        pid = broker_pid(self.directory, broker_id)
        # Not the process started here (stopped already): another's. Asking
        # ``self.pid``/``running`` would answer with the pid file itself.
        own = self._processes.get(broker_id)
        if pid is not None and (own is None or own.pid != pid):
            for sig in (signal.SIGCONT, signal.SIGTERM):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            try:
                wait_until(
                    lambda: broker_pid(self.directory, broker_id) is None,
                    max(0.0, deadline - time.monotonic()),
                    f"broker {broker_id} to stop",
                )
            except WaitTimeout:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        (self.broker_dir(broker_id) / PID_FILE).unlink(missing_ok=True)

    def _take_lock(self) -> None:
        """One owner per directory: a second ``up`` on it fails at once."""
        lock = (self.directory / LOCK_FILE).open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise LocalClusterError(f"a cluster is already running in {self.directory}") from None
        self._lock = lock

    def _connect_zookeeper(self, timeout: float) -> None:
        """A reader of the cluster's znodes; it creates the chroot, as a broker would."""
        hosts, self._chroot = zp.parse_connect(self.zookeeper_connect)
        self._zk = KazooClient(hosts=hosts, timeout=10.0)
        try:
            self._zk.start(timeout=timeout)
            if self._chroot:
                self._zk.ensure_path(self._chroot)
        except Exception as exc:
            raise LocalClusterError(f"cannot use ZooKeeper at {hosts}: {exc!r}") from None

    # -- one broker ------------------------------------------------------------

    def _spawn(self, broker_id: int) -> None:
        plan = self._brokers[broker_id]
        data = self.broker_dir(broker_id) / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = {
            "offsets.topic.replication.factor": str(min(3, len(self._brokers))),
            "controlled.shutdown.retry.backoff.ms": "500",
            **self.plan.broker_config,
            "broker.id": str(broker_id),
            "listeners": f"PLAINTEXT://127.0.0.1:{plan.port}",
            "log.dirs": str(data),
            "zookeeper.connect": self.zookeeper_connect,
        }
        if plan.rack is not None:
            config["broker.rack"] = plan.rack
        args = [sys.executable, "-m", "moldau", "broker"]
        for key, value in config.items():
            args += ["--override", f"{key}={value}"]
        with self.log_path(broker_id).open("ab") as output:
            process = subprocess.Popen(
                args, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._processes[broker_id] = process
        (self.broker_dir(broker_id) / PID_FILE).write_text(f"{process.pid}\n")
        self._paused.discard(broker_id)

    def spawn_broker(self, broker_id: int) -> subprocess.Popen[bytes]:
        """Start broker ``broker_id``'s process and return at once: for a tool
        that does not own the cluster (``moldau verify`` restarting a broker it
        killed). The owner's ``stop`` finds it by its pid file."""
        self._spawn(broker_id)
        return self._processes[broker_id]

    def running(self, broker_id: int) -> bool:
        """True while the broker's process exists (paused or not): the one
        started here, or one another process (``moldau verify``) started
        again on its pid file."""
        process = self._processes.get(broker_id)
        if process is not None and process.poll() is None:
            return True
        return broker_pid(self.directory, broker_id) is not None

    def start_broker(self, broker_id: int, timeout: float = 60.0) -> None:
        """Start a stopped or killed broker again on its port and data; return
        when it is ready. Waits first for the registration of a killed process
        to expire."""
        if self.running(broker_id):
            raise LocalClusterError(f"broker {broker_id} is running")
        self._wait_unregistered([broker_id])
        self._spawn(broker_id)
        self.wait_until_ready([broker_id], timeout)

    def stop_broker(self, broker_id: int, timeout: float = 10.0) -> int:
        """The clean shutdown: SIGTERM and wait (kill at ``timeout``); its exit status."""
        process = self._processes[broker_id]
        self.kill(broker_id, signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def restart_zookeeper(self, timeout: float = 30.0) -> None:
        """kill -9 the ZooKeeper this cluster started and start it again on the
        same port and data (its sessions survive if it is back within their
        timeout, as with a real ZooKeeper restart)."""
        self.stop_zookeeper()
        self.start_zookeeper(timeout)

    def stop_zookeeper(self) -> None:
        """kill -9 the ZooKeeper this cluster started (``start_zookeeper``
        brings it back)."""
        self._own_zookeeper().stop()

    def start_zookeeper(self, timeout: float = 30.0) -> None:
        self._own_zookeeper().start(timeout)

    def pause_zookeeper(self) -> None:
        """SIGSTOP the ZooKeeper this cluster started: connections stay open
        and nothing answers, so brokers notice only by their pings
        (``resume_zookeeper`` lets it go on)."""
        self._own_zookeeper().pause()

    def resume_zookeeper(self) -> None:
        self._own_zookeeper().resume()

    def _own_zookeeper(self) -> ZooKeeperServer:
        if self._zookeeper is None:
            raise LocalClusterError("this cluster uses a ZooKeeper it did not start")
        return self._zookeeper

    def kill(self, broker_id: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the broker: SIGKILL (waited for), SIGSTOP, SIGCONT, SIGTERM."""
        if not self.running(broker_id):
            raise LocalClusterError(f"broker {broker_id} is not running")
        if sig == signal.SIGTERM:
            self._signal(broker_id, signal.SIGCONT)  # a stopped process handles no SIGTERM
        self._signal(broker_id, sig)
        if sig == signal.SIGKILL:
            process = self._processes.get(broker_id)
            if process is not None and process.poll() is None:
                process.wait()
            else:  # another process's child: wait until it is gone
                wait_until(lambda: not self.running(broker_id), 10, f"broker {broker_id} dead")

    def _signal(self, broker_id: int, sig: int) -> None:
        pid = self.pid(broker_id)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):  # it died in between
                os.kill(pid, sig)
        if sig == signal.SIGSTOP:
            self._paused.add(broker_id)
        elif sig == signal.SIGCONT:
            self._paused.discard(broker_id)

    def restore(self, timeout: float = 60.0) -> None:
        """Bring every broker back: resume the paused, start the stopped; return
        when all are ready (what a shared fixture does between tests)."""
        for broker_id in sorted(self._paused):
            if self.running(broker_id):
                self._signal(broker_id, signal.SIGCONT)
        self._paused.clear()
        for broker_id in self.broker_ids:
            if not self.running(broker_id):
                self._wait_unregistered([broker_id])
                self._spawn(broker_id)
        self.wait_until_ready(timeout=timeout)

    # -- ZooKeeper's view ------------------------------------------------------

    def _client(self) -> KazooClient:
        if self._zk is None:
            raise LocalClusterError("the cluster is not started")
        return self._zk

    def registered_broker_ids(self) -> set[int]:
        """The ids under /brokers/ids: the brokers ZooKeeper sees alive."""
        try:
            names = self._client().get_children(self._chroot + zp.BROKER_IDS)
        except NoNodeError:
            return set()
        return {int(name) for name in names if name.isdigit()}

    def controller_id(self) -> int | None:
        """The broker in /controller, None while there is none."""
        try:
            data, _ = self._client().get(self._chroot + zp.CONTROLLER)
        except NoNodeError:
            return None
        return zp.decode_controller(data).broker_id

    # -- waiting ---------------------------------------------------------------

    def wait_until(
        self, condition: Callable[[], T | None], timeout: float = 30.0, what: str = "a condition"
    ) -> T:
        """Poll ``condition`` until truthy (returned); WaitTimeout at the deadline."""
        return wait_until(condition, timeout, what)

    def ready(self, broker_id: int) -> bool:
        """Running, answering ApiVersions, registered in ZooKeeper, and told of
        the cluster: its Metadata lists every registered broker (the
        controller's UpdateMetadata has reached it, so a client bootstrapping
        from it sees the whole cluster). Raises LocalClusterError if the
        process has exited."""
        process = self._processes.get(broker_id)
        if not self.running(broker_id):
            code = None if process is None else process.returncode
            line = last_line(self.log_path(broker_id)) or "no output"
            raise LocalClusterError(
                f"broker {broker_id} exited ({code}): {line} (log: {self.log_path(broker_id)})"
            )
        if broker_id in self._paused or not answers_api_versions(self.port(broker_id)):
            return False
        registered = self.registered_broker_ids()
        if broker_id not in registered:
            return False
        listed = metadata_broker_ids(self.port(broker_id))
        return listed is not None and registered <= listed

    def wait_until_ready(
        self, broker_ids: Iterable[int] | None = None, timeout: float = 60.0
    ) -> None:
        """Until every broker of ``broker_ids`` (default all) is ``ready``."""
        ids = sorted(self.broker_ids if broker_ids is None else broker_ids)
        waiting = set(ids)

        def all_ready() -> bool:
            waiting.difference_update([b for b in sorted(waiting) if self.ready(b)])
            return not waiting

        try:
            wait_until(all_ready, timeout, "")
        except WaitTimeout:
            logs = ", ".join(str(self.log_path(b)) for b in sorted(waiting))
            raise LocalClusterError(
                f"brokers {sorted(waiting)} not ready in {timeout:g}s (logs: {logs})"
            ) from None

    def wait_until_registered(self, broker_ids: Iterable[int], timeout: float = 60.0) -> None:
        """Until /brokers/ids holds exactly ``broker_ids`` (a killed broker's
        registration goes when its session expires)."""
        want = set(broker_ids)
        wait_until(
            lambda: self.registered_broker_ids() == want,
            timeout,
            f"registered brokers {sorted(want)}",
        )

    def wait_until_controller(self, timeout: float = 60.0) -> int:
        """Until some broker is the controller; its id."""

        def elected() -> tuple[int] | None:  # a tuple: broker 0 is a controller too
            controller = self.controller_id()
            return None if controller is None else (controller,)

        return wait_until(elected, timeout, "a controller")[0]

    def _wait_unregistered(self, broker_ids: Iterable[int]) -> None:
        """Until no registration of ``broker_ids`` is left (none of our
        processes holds one, so any is a killed process's, or another run's)."""
        stale = self.registered_broker_ids() & set(broker_ids)
        if not stale:
            return
        timeout = self.session_timeout + 10
        log.info(
            "waiting up to %gs for the old registrations of brokers %s to expire",
            timeout,
            sorted(stale),
        )
        try:
            wait_until(
                lambda: not (self.registered_broker_ids() & stale), timeout, "", interval=0.1
            )
        except WaitTimeout:
            raise LocalClusterError(
                f"brokers {sorted(stale)} are still registered in ZooKeeper "
                f"({self.zookeeper_connect}) after {timeout:g}s: another cluster uses them"
            ) from None
