"""Operating a cluster under load (issue 10): real ZooKeeper, four broker
processes, and ``moldau verify`` running an idempotent acks=all producer
and a two-member consumer group the whole time, auditing every record.

(a) a broker added and ``moldau cluster rebalance --add-broker --execute``
moves replicas onto it; (b) a broker decommissioned with
``--remove-broker``; (c) every broker restarted in turn with SIGTERM
(controlled shutdown) without one failed send; (d) a broker killed -9 and
restarted gets its preferred leaderships back from the auto rebalance.
Every scenario ends with a clean verdict: no acknowledged record lost,
duplicated or reordered, replicas identical below the high watermark.

The tests share one cluster and run in file order: (a) starts with broker
3 stopped; each test leaves every broker running.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from conftest import wait_for
from moldau.client.admin import Admin
from moldau.cluster.local import LocalCluster
from moldau.cluster.status import BrokerStatus, ClusterStatus, fetch_status
from moldau.testing import CLUSTER_TEST_DEFAULTS

pytestmark = pytest.mark.cluster

MOLDAU = [sys.executable, "-m", "moldau"]
CONFIG = {
    **CLUSTER_TEST_DEFAULTS,
    "offsets.topic.num.partitions": "6",
    "replica.fetch.backoff.ms": "200",
    "replica.lag.time.max.ms": "4000",
    "leader.imbalance.check.interval.seconds": "2",
}
#: What librdkafka may report while a broker restarts: it retries these.
RETRIABLE = {
    "_TRANSPORT",
    "_ALL_BROKERS_DOWN",
    "_TIMED_OUT",
    "REQUEST_TIMED_OUT",
    "NOT_COORDINATOR",
    "COORDINATOR_NOT_AVAILABLE",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "REBALANCE_IN_PROGRESS",
    "NOT_LEADER_OR_FOLLOWER",
    "LEADER_NOT_AVAILABLE",
    "NOT_ENOUGH_REPLICAS",
}
NEEDS_REASSIGN = pytest.mark.skipif(
    not hasattr(Admin, "alter_partition_reassignments"),
    reason="needs AlterPartitionReassignments (the reassign branch)",
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("operations"), 4, broker_config=CONFIG) as local:
        try:
            yield local
        finally:
            for broker_id in local.broker_ids:
                lines = local.log_path(broker_id).read_text(errors="replace").splitlines()
                print(f"--- broker {broker_id}")
                print("\n".join([line for line in lines if "kazoo" not in line][-20:]))


def status(cluster: LocalCluster) -> ClusterStatus:
    return asyncio.run(fetch_status(cluster.zookeeper_connect))


def wait_status(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """``wait_for`` at the pace of a ZooKeeper read every half second."""
    return wait_for(condition, timeout, interval=0.5, what=what)


def broker(now: ClusterStatus, broker_id: int) -> BrokerStatus:
    return next(b for b in now.brokers if b.broker_id == broker_id)


def settled(cluster: LocalCluster) -> ClusterStatus | None:
    """The status once nothing is under-replicated, offline or moving."""
    now = status(cluster)
    busy = now.under_replicated or now.offline or now.reassigning
    return None if busy else now


@contextmanager
def audited(cluster: LocalCluster, name: str, duration: int) -> Iterator[dict[str, object]]:
    """``moldau verify`` for ``duration`` seconds; the body runs once its
    topic has records. Then the verdict must be clean; the history is put
    in the yielded dict (key "history") for more checks."""
    before = set(
        AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_topics(timeout=10).topics
    )
    path = cluster.directory / f"{name}.history.json"
    process = subprocess.Popen(
        [
            *MOLDAU, "verify", "--dir", str(cluster.directory), "--duration", str(duration),
            "--partitions", "3", "--consumers", "2", "--rate", "300", "--history", str(path),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    result: dict[str, object] = {}
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})

        def producing() -> bool:
            new = [
                t
                for t in admin.list_topics(timeout=10).topics
                if t.startswith("verify-") and t not in before
            ]
            return bool(new) and process.poll() is None

        wait_status(producing, 60, "moldau verify producing")
        yield result
        out, _ = process.communicate(timeout=duration + 180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0 and "VERDICT: clean" in out, out
    result["history"] = json.loads(path.read_text())


def moldau(*argv: str) -> str:
    done = subprocess.run([*MOLDAU, *argv], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@NEEDS_REASSIGN
def test_a_new_broker_takes_its_share(cluster: LocalCluster) -> None:
    cluster.stop_broker(3)
    with audited(cluster, "add", duration=25):
        cluster.start_broker(3)
        out = moldau(
            "cluster",
            "rebalance",
            "--dir",
            str(cluster.directory),
            "--add-broker",
            "3",
            "--execute",
        )
        assert "preferred leaders:" in out, out
    after = wait_status(lambda: settled(cluster), 30, "a settled cluster")
    assert broker(after, 3).hosts and not after.replicas_imbalanced, out


@NEEDS_REASSIGN
def test_a_broker_is_decommissioned(cluster: LocalCluster) -> None:
    with audited(cluster, "remove", duration=25):
        out = moldau(
            "cluster",
            "rebalance",
            "--dir",
            str(cluster.directory),
            "--remove-broker",
            "0",
            "--execute",
        )
    after = wait_status(lambda: settled(cluster), 30, "a settled cluster")
    brokers = {b.broker_id: b for b in after.brokers}
    assert not brokers[0].hosts and not brokers[0].leads, out
    assert not any((cluster.broker_dir(0) / "data").glob("verify-*")), (
        "the removed replicas' data was deleted"
    )


def test_rolling_restart_with_controlled_shutdown(cluster: LocalCluster) -> None:
    cluster.restore()
    with audited(cluster, "rolling", duration=35) as result:
        for broker_id in cluster.broker_ids:
            wait_status(lambda: settled(cluster), 30, "every ISR full before a restart")
            assert cluster.stop_broker(broker_id) == 0
            cluster.start_broker(broker_id)
    history = result["history"]
    assert isinstance(history, dict)
    failed = [s for s in history["sends"] if s.get("outcome") == "failed"]
    assert not failed, failed[:5]
    errors = history["info"]["client_errors"] + [
        c["error"] for c in history["commits"] if not c["ok"]
    ]
    unexpected = [e for e in errors if re.sub(r".*code=(\w+).*", r"\1", e) not in RETRIABLE]
    assert not unexpected, unexpected


def test_a_killed_broker_gets_its_preferred_leaderships_back(cluster: LocalCluster) -> None:
    cluster.restore()
    wait_status(lambda: settled(cluster), 30, "a settled cluster")
    victim = next(b for b in cluster.broker_ids if b != cluster.controller_id())
    with audited(cluster, "kill", duration=20):
        cluster.kill(victim)
        wait_status(lambda: not broker(status(cluster), victim).leads, 30, "leaders moved away")
        cluster.start_broker(victim)

    def given_back() -> ClusterStatus | None:
        now = settled(cluster)
        return now if now is not None and not now.not_preferred else None

    after = wait_status(given_back, 40, "the preferred leaders back")
    back = broker(after, victim)
    assert back.preferred and set(back.leads) == set(back.preferred)
