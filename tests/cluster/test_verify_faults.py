"""``moldau verify`` under real faults: the cluster keeps every acknowledged
record, in order, once, and every committed offset; and, with transactions,
shows committed ones whole and once and aborted ones never.

Three brokers, RF 3, min.insync.replicas 2, an idempotent acks=all producer
and a two-member consumer group; each scenario runs ``moldau verify`` for a
few seconds while it kills (-9) or pauses (SIGSTOP past the 3 s session) the
leader, the controller or the group coordinator, pauses followers so they
fall behind and catch up, or restarts ZooKeeper itself. Any violation fails
the test with the verifier's report.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from moldau.cluster.local import LocalCluster
from moldau.testing import TEST_DEFAULTS

pytestmark = pytest.mark.cluster

SESSION_MS = 3000
CONFIG = {
    **TEST_DEFAULTS,
    "zookeeper.session.timeout.ms": str(SESSION_MS),
    "replica.lag.time.max.ms": "4000",
    "replica.fetch.backoff.ms": "200",
}
MOLDAU = [sys.executable, "-m", "moldau"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("faults"), 3, broker_config=CONFIG) as local:
        yield local


def verify(cluster: LocalCluster, *args: str, duration: int = 10) -> str:
    """Run ``moldau verify`` on the cluster; the report, after checking it is clean."""
    cluster.restore()
    done = subprocess.run(
        [
            *MOLDAU, "verify", "--dir", str(cluster.directory),
            "--duration", str(duration), "--partitions", "3", "--consumers", "2",
            "--rate", "400", "--seed", "7",
            "--history", str(cluster.directory / "history.json"), *args,
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "VERDICT: clean" in done.stdout, report
    return done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--faults", "kill", "--target", "leader", "--interval", "4"),
        ("--faults", "kill", "--target", "controller", "--interval", "4"),
        ("--faults", "kill", "--target", "coordinator", "--interval", "4"),
        ("--faults", "pause", "--target", "leader", "--interval", "5", "--fault-time", "4.5"),
        ("--faults", "pause", "--target", "random", "--interval", "3", "--fault-time", "2"),
        # Transactions (every 5th aborted): committed ones seen whole and once
        # by read_committed consumers, aborted ones never.
        ("--transactional", "--faults", "kill", "--target", "leader", "--interval", "4"),
        ("--transactional", "--faults", "kill", "--target", "txn-coordinator", "--interval", "4"),
    ],
    ids=[
        "kill-leader",
        "kill-controller",
        "kill-coordinator",
        "pause-leader",
        "lagging",
        "txn-kill-leader",
        "txn-kill-txn-coordinator",
    ],
)
def test_verify_is_clean_under(cluster: LocalCluster, args: tuple[str, ...]) -> None:
    report = verify(cluster, *args)
    assert "faults" in report


def test_verify_is_clean_across_a_zookeeper_restart(cluster: LocalCluster) -> None:
    finished = threading.Event()
    restarts: list[bool] = []
    failure: list[BaseException] = []

    def restart_later() -> None:
        try:
            if not finished.wait(4):  # let the workload start first
                cluster.restart_zookeeper()
                restarts.append(True)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)

    worker = threading.Thread(target=restart_later)
    worker.start()
    try:
        verify(cluster, duration=10)
    finally:
        finished.set()
        worker.join(60)
    assert not failure, failure
    assert restarts == [True], "ZooKeeper was restarted while verify ran"
