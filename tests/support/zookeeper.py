"""A real standalone ZooKeeper for tests, from Debian's ``zookeeper`` package.

The server is Java: ``/usr/share/java/zookeeper.jar`` names its own
dependencies in its manifest, so it is the whole class path; with no SLF4J
binding on it the server logs nothing. ``tickTime=500`` lets sessions be as
short as a second, so failover tests stay fast. Readiness is a kazoo
connection that succeeds (ZooKeeper 3.8 disables ``ruok`` by default), with a
deadline. The process is always killed by ``stop`` (callers use a finally).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kazoo.client import KazooClient
from kazoo.handlers.threading import KazooTimeoutError

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ZooKeeperServer:
    """One standalone server on 127.0.0.1 with its data under ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def connect(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        if not ZOOKEEPER_JAR.exists():
            raise RuntimeError(
                f"{ZOOKEEPER_JAR} is missing: install ZooKeeper with scripts/setup.sh --test"
            )
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
        log = (self.workdir / "zookeeper.log").open("wb")
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
                log = (self.workdir / "zookeeper.log").read_text(errors="replace")
                raise RuntimeError(f"ZooKeeper exited with {self.process.returncode}:\n{log}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"ZooKeeper on {self.connect} not ready in {timeout}s")
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


@dataclass(frozen=True)
class ZooKeeper:
    """What a test gets: the shared server and a chroot of its own.

    The chroot does not exist yet: whoever connects creates it, as Kafka's
    client does with the chroot of ``zookeeper.connect``.
    """

    server: ZooKeeperServer
    chroot: str

    @property
    def connect(self) -> str:
        """A ``zookeeper.connect`` string with this test's chroot."""
        return f"{self.server.connect}{self.chroot}"


def expire_session(connect: str, session_id: int, password: bytes, timeout: float = 10.0) -> None:
    """End a client's session from outside, as ZooKeeper does when it expires.

    A second client joins the same session (id and password) and closes it;
    the server then deletes the session's ephemeral znodes and the first
    client learns that its session is gone when it next talks to the server.
    This is ZooKeeper's own test technique, and needs no sleep.
    """
    intruder = KazooClient(hosts=connect, client_id=(session_id, password), timeout=timeout)
    intruder.start(timeout=timeout)
    try:
        if intruder.client_id is None or intruder.client_id[0] != session_id:
            raise RuntimeError("could not join the session to expire it")
    finally:
        intruder.stop()
        intruder.close()
