"""Shared fixtures: real moldau brokers as subprocesses, and ways to wait.

Tests talk to brokers over real sockets with real clients. A broker runs as a
``moldau broker`` subprocess so that tests can kill -9 it, SIGSTOP it and
restart it on the same data directory; every process started here is killed
in a finally, and every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MOLDAU = str(Path(sys.executable).parent / "moldau")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the condition may fail until it holds
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}: {last_error}")


def answers_api_versions(port: int) -> bool:
    """True once a broker on ``port`` answers an ApiVersions v0 request."""
    request = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        header = sock.recv(8)
        return len(header) == 8 and struct.unpack(">ii", header)[1] == 1


class BrokerProcess:
    """A ``moldau broker`` subprocess on a fixed port and data directory."""

    def __init__(self, data_dir: Path, port: int | None = None, **overrides: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.overrides = overrides
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"broker-{self.port}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> BrokerProcess:
        args = [
            MOLDAU,
            "broker",
            "--override",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "--override",
            f"log.dirs={self.data_dir}",
        ]
        for key, value in self.overrides.items():
            args += ["--override", f"{key.replace('_', '.')}={value}"]
        log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        try:
            wait_for(
                lambda: self._alive() and answers_api_versions(self.port),
                timeout,
                what=f"broker on port {self.port}",
            )
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"broker did not start:\n{self.output()}") from None
        return self

    def _alive(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"broker exited:\n{self.output()}")
        return True

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        """kill -9, if still running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    """Start brokers as subprocesses; all are killed when the test ends."""
    started: list[BrokerProcess] = []

    def make(data_dir: Path | None = None, **overrides: str) -> BrokerProcess:
        broker = BrokerProcess(data_dir or tmp_path / f"data-{len(started)}", **overrides)
        started.append(broker)
        return broker.start()

    try:
        yield make
    finally:
        for broker in started:
            broker.kill()


@pytest.fixture
def broker(broker_factory: Callable[..., BrokerProcess]) -> BrokerProcess:
    """One fresh broker subprocess for this test."""
    return broker_factory()
