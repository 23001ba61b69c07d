"""``moldau verify`` against a real 3-broker cluster: a clean run is clean, a
history with a lost value is caught by ``--check``, and a local broker is
killed, paused, stopped and started again through its pid file, and the
cluster's owner still stops the broker that verify started.

No faults here: these tests judge the tool, not the cluster (the figures
under faults come from runs of ``moldau verify`` against ``moldau cluster
up``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from moldau.cluster.local import LocalCluster, broker_pid
from moldau.cluster.local_zookeeper import ZooKeeperServer
from moldau.testing import CLUSTER_TEST_DEFAULTS
from moldau.verify.faults import ACTIONS, LocalBroker, Nemesis
from moldau.verify.history import FINAL_READER

pytestmark = pytest.mark.cluster

MOLDAU = [sys.executable, "-m", "moldau"]


def verify(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MOLDAU, "verify", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def clean_run(
    moldau_cluster_shared: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    path = tmp_path_factory.mktemp("verify") / "history.json"
    done = verify(
        "--dir", moldau_cluster_shared.directory,
        "--duration", "4", "--partitions", "3", "--consumers", "2",
        "--rate", "500", "--history", path,
    )  # fmt: skip
    return done, json.loads(path.read_text())


def test_a_run_without_faults_is_clean(
    clean_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    done, history = clean_run
    assert done.returncode == 0, done.stdout + done.stderr
    assert "VERDICT: clean" in done.stdout
    assert "replicas: 0 partitions diverged" in done.stdout
    assert "compared 9 replicas of 3 partitions" in done.stdout  # RF 3
    acked = [s for s in history["sends"] if s["outcome"] == "ok"]
    assert len(acked) > 1000
    assert all(f["complete"] for f in history["final"]) and len(history["final"]) == 3
    final_values = {r["value"] for r in history["reads"] if r["consumer"] == FINAL_READER}
    group_values = {r["value"] for r in history["reads"] if r["consumer"] != FINAL_READER}
    assert {s["value"] for s in acked} <= final_values & group_values
    assert history["commits"] and history["assignments"]


def test_check_catches_a_lost_value(
    clean_run: tuple[subprocess.CompletedProcess[str], dict[str, Any]], tmp_path: Path
) -> None:
    _, history = clean_run
    path = tmp_path / "clean.json"
    path.write_text(json.dumps(history))
    again = verify("--check", path)
    assert again.returncode == 0, again.stdout + again.stderr
    victim = next(s for s in history["sends"] if s["outcome"] == "ok" and s["offset"] > 5)
    history["reads"] = [r for r in history["reads"] if r["value"] != victim["value"]]
    path.write_text(json.dumps(history))
    caught = verify("--check", path)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "lost             1" in caught.stdout
    assert victim["value"] in caught.stdout
    assert "VERDICT: VIOLATIONS: lost 1" in caught.stdout


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    for args in (("--faults", "kill"), ("--faults", "explode", "--fault-cmd", "a:kill=true")):
        done = verify(*args)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_local_broker_faults_and_their_undoing(
    moldau_zookeeper: ZooKeeperServer, tmp_path: Path
) -> None:
    cluster = LocalCluster(
        tmp_path / "cluster",
        1,
        zookeeper_connect=f"{moldau_zookeeper.connect}/verify-{uuid.uuid4().hex[:8]}",
        broker_config=CLUSTER_TEST_DEFAULTS,
    )
    with cluster:
        target = LocalBroker(cluster.directory, 0)
        first = cluster.pid(0)
        assert broker_pid(cluster.directory, 0) == first
        nemesis = Nemesis([target], ["restart"], interval=3600, fault_time=0)
        assert nemesis.inject_one() is not None
        assert broker_pid(cluster.directory, 0) is None  # stopped, SIGTERM
        nemesis.heal_all()  # started again by us, not by the cluster's owner
        second = broker_pid(cluster.directory, 0)
        assert second is not None and second != first
        # The owner's own process is gone; it sees the one verify started.
        assert cluster.running(0) and cluster.pid(0) == second
        target.act(ACTIONS["pause"][0])
        target.act(ACTIONS["pause"][1])
        target.act(ACTIONS["kill"][0])
        assert broker_pid(cluster.directory, 0) is None
        target.act(ACTIONS["kill"][1])  # waits for the killed session to expire
        third = broker_pid(cluster.directory, 0)
        assert third is not None and third != second
    assert broker_pid(cluster.directory, 0) is None  # the owner stopped ours too
