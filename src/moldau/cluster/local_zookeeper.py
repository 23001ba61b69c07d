"""A standalone ZooKeeper on 127.0.0.1, from Debian's ``zookeeper`` package.

What ``moldau cluster up``, the ``moldau_cluster`` pytest fixture and the
cluster tests run. The server is Java: ``/usr/share/java/zookeeper.jar``
names its own dependencies in its manifest, so it is the whole class path;
with no SLF4J binding on it the server logs nothing (its log file holds only
what the JVM itself prints). ``tickTime=500`` lets sessions be as short as a
second, so failover tests stay fast. Readiness is a kazoo connection that
succeeds (ZooKeeper 3.8 disables ``ruok`` by default), with a deadline.

``stop`` kills the server (SIGKILL): ZooKeeper writes every transaction to
its log before it answers, so nothing acknowledged is lost, and a stop never
waits on a JVM. Callers stop it in a finally.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

from moldau.cluster.local_plan import free_port

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
#: What installs the jar and a Java runtime on Debian.
INSTALL_HINT = "apt-get install zookeeper"


class ZooKeeperError(RuntimeError):
    """ZooKeeper is not installed, or did not start; the message is one line."""


def check_installed() -> None:
    """Raise ZooKeeperError naming the Debian package when the jar or java is missing."""
    if not ZOOKEEPER_JAR.exists():
        raise ZooKeeperError(
            f"ZooKeeper is not installed ({ZOOKEEPER_JAR} is missing): {INSTALL_HINT}"
        )
    if shutil.which("java") is None:
        raise ZooKeeperError(f"java is not on PATH, ZooKeeper needs it: {INSTALL_HINT}")


def last_line(path: Path) -> str:
    """The last non-empty line of a log file, for a one-line error ("" if none)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


class ZooKeeperServer:
    """One standalone server on 127.0.0.1 with its data under ``workdir``.

    Started again on the same ``workdir`` and port, it has the same znodes
    (sessions of the previous run expire after their timeout, as ZooKeeper's
    sessions do across a restart).
    """

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def connect(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "zookeeper.log"

    def start(self, timeout: float = 30.0) -> None:
        check_installed()
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    "tickTime=500",
                    f"dataDir={data}",
                    f"clientPort={self.port}",
                    "clientPortAddress=127.0.0.1",
                    "admin.enableServer=false",
                    "minSessionTimeout=1000",
                    "maxSessionTimeout=60000",
                    "",
                ]
            )
        )
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                ["java", "-Xmx256m", "-cp", str(ZOOKEEPER_JAR), MAIN_CLASS, str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ZooKeeperError(
                    f"ZooKeeper on {self.connect} exited with {self.process.returncode} "
                    f"({self.log_path}: {last_line(self.log_path) or 'empty'})"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ZooKeeperError(
                    f"ZooKeeper on {self.connect} not ready in {timeout}s (log: {self.log_path})"
                )
            client = KazooClient(hosts=self.connect, timeout=2.0)
            try:
                client.start(timeout=min(1.0, remaining))
            except KazooTimeoutError:
                continue
            finally:
                client.stop()
                client.close()
            return

    def pause(self) -> None:
        """SIGSTOP the server: every client loses its connection, no session ends yet."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGCONT)  # a paused JVM cannot die of SIGTERM
        self.process.kill()
        self.process.wait(timeout=10)
