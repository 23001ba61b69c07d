"""The operator's tools on a real 3-broker cluster: DescribeLogDirs on every
broker; ``moldau cluster rebalance`` and ``reassign --plan`` as dry runs and
their one-line errors; a reassignment file executed, watched, left with
Ctrl-C and cancelled. (Rebalances under load: test_operations.py.)"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient

from conftest import confluent_produce, sample_records, wait_for
from moldau.cli.cluster_rebalance import FOLLOWER_REPLICAS, LEADER_REPLICAS, RATE_KEYS
from moldau.client.admin import (
    Admin,
    ConfigResourceType,
    ConfigSource,
    LogDirDescription,
    NewTopic,
)
from moldau.cluster.local import LocalCluster
from moldau.testing import CLUSTER_TEST_DEFAULTS

pytestmark = pytest.mark.cluster

MOLDAU = [sys.executable, "-m", "moldau"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    directory = tmp_path_factory.mktemp("rebalance-cli")
    with LocalCluster(directory, 3, broker_config=CLUSTER_TEST_DEFAULTS) as local:
        yield local


def create(cluster: LocalCluster, topic: NewTopic) -> None:
    async def go() -> None:
        async with Admin(cluster.bootstrap_servers) as admin:
            (error,) = (await admin.create_topics([topic])).values()
            assert error is None, error

    asyncio.run(go())
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    wait_for(
        lambda: (
            all(
                p.leader >= 0
                for p in admin.list_topics(topic.name, timeout=5)
                .topics[topic.name]
                .partitions.values()
            )
            and admin.list_topics(topic.name, timeout=5).topics[topic.name].partitions
        ),
        15,
        what=f"topic {topic.name}",
    )


def moldau(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MOLDAU, *argv], capture_output=True, text=True, timeout=60)


def test_every_replica_is_sized_on_its_broker(cluster: LocalCluster) -> None:
    create(cluster, NewTopic("sized", 2, 3))
    confluent_produce(
        cluster.bootstrap_servers, "sized", sample_records("s", 40, 1_700_000_000_000)
    )
    wanted = [("sized", 0), ("sized", 1)]

    async def describe() -> dict[int, list[LogDirDescription]]:
        async with Admin(cluster.bootstrap_servers) as admin:
            answers = await admin.describe_log_dirs(partitions=wanted)
        assert all(isinstance(a, list) for a in answers.values()), answers
        return {b: a for b, a in answers.items() if isinstance(a, list)}

    def in_step() -> dict[int, list[LogDirDescription]] | None:
        answers = asyncio.run(describe())
        sizes = {
            tp: {
                r.size
                for dirs in answers.values()
                for d in dirs
                for tp2, r in d.replicas.items()
                if tp2 == tp
            }
            for tp in wanted
        }
        return answers if all(len(s) == 1 and s != {0} for s in sizes.values()) else None

    answers = wait_for(in_step, 20, what="followers with the leader's size")
    assert set(answers) == {0, 1, 2}
    for dirs in answers.values():
        (log_dir,) = dirs
        assert log_dir.error is None and 0 < log_dir.usable_bytes <= log_dir.total_bytes
        assert set(log_dir.replicas) == set(wanted)
        assert all(r.offset_lag == 0 and not r.is_future for r in log_dir.replicas.values())

    # kafka-python asks each broker in turn and sees the same.
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:
        seen = admin.describe_log_dirs({"sized": [0, 1]})
    finally:
        admin.close()
    assert sorted(a["broker"] for a in seen) == [0, 1, 2]
    for answer in seen:
        (result,) = answer["log_dirs"]
        assert [p["partition_index"] for t in result["topics"] for p in t["partitions"]] == [0, 1]


def test_rebalance_and_reassign_dry_runs(cluster: LocalCluster, tmp_path: Path) -> None:
    create(
        cluster,
        NewTopic("skewed", assignments={0: [0, 1], 1: [1, 0], 2: [0, 1], 3: [1, 0]}),
    )
    bootstrap = ["--bootstrap-server", cluster.bootstrap_servers]
    done = moldau("cluster", "rebalance", *bootstrap, "--add-broker", "2", "--topics", "skewed")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # 8 replicas over 3 brokers: 3, 3, 2; two moves onto broker 2.
    broker_rows = [line.split() for line in lines if line[:1].isdigit() and "->" in line]
    assert broker_rows == [
        ["0", "4", "->", "3", "2", "->", "1"],
        ["1", "4", "->", "3", "2", "->", "1"],
        ["2", "0", "->", "2", "0", "->", "2"],
    ], done.stdout
    assert (
        "2 partitions change, 2 replicas move (0 B to copy)" in lines
        and "(a dry run: --execute runs it)" in lines
    )

    unbalanced = moldau("cluster", "rebalance", *bootstrap, "--topics", "skewed")
    assert "nothing to move" in unbalanced.stdout, unbalanced.stdout  # 2 not named

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": "skewed", "partition": 0, "replicas": [2, 1], "log_dirs": ["any", "any"]},
    ]}))  # fmt: skip
    shown = moldau("cluster", "reassign", *bootstrap, "--plan", str(plan))
    assert shown.returncode == 0, shown.stderr
    assert "skewed-0   0,1       ->  2,1     +2 -0" in shown.stdout, shown.stdout

    bad = {
        "not json": "{",
        "log_dirs": json.dumps({"partitions": [
            {"topic": "skewed", "partition": 0, "replicas": [2], "log_dirs": ["/data"]}]}),
        "twice": json.dumps({"partitions": [
            {"topic": "skewed", "partition": 0, "replicas": [2, 2]}]}),
        "unknown broker": json.dumps({"partitions": [
            {"topic": "skewed", "partition": 0, "replicas": [7]}]}),
    }  # fmt: skip
    failures = [("rebalance", "--remove-broker", "9"), ("rebalance", "--throttle", "10")]
    for name, text in bad.items():
        (tmp_path / f"{name}.json").write_text(text)
        failures.append(("reassign", "--plan", str(tmp_path / f"{name}.json")))
    for argv in failures:
        failed = moldau("cluster", *argv[:1], *bootstrap, *argv[1:])
        assert failed.returncode == 1, (argv, failed.stdout, failed.stderr)
        assert len(failed.stderr.strip().splitlines()) == 1, (argv, failed.stderr)


def throttles(cluster: LocalCluster, brokers: list[int]) -> dict[str, str]:
    """The throttle configs set on ``brokers`` and on topic "moving"."""

    async def ask() -> dict[str, str]:
        found = {}
        bootstrap = ",".join(cluster.address(b) for b in brokers)
        async with Admin(bootstrap, request_timeout_ms=5000) as admin:
            for broker_id in brokers:
                for entry in await admin.describe_configs(
                    ConfigResourceType.BROKER, str(broker_id), RATE_KEYS
                ):
                    if entry.source == ConfigSource.DYNAMIC_BROKER_CONFIG:
                        found[f"{broker_id}:{entry.name}"] = entry.value or ""
            for entry in await admin.describe_configs(
                ConfigResourceType.TOPIC, "moving", (LEADER_REPLICAS, FOLLOWER_REPLICAS)
            ):
                if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG:
                    found[entry.name] = entry.value or ""
        return found

    return asyncio.run(ask())


def test_reassign_a_file_then_watch_stop_and_cancel(cluster: LocalCluster, tmp_path: Path) -> None:
    controller = cluster.controller_id()
    x, y = (b for b in cluster.broker_ids if b != controller)
    create(cluster, NewTopic("moving", assignments={0: [x]}))
    producer = Producer({"bootstrap.servers": cluster.bootstrap_servers})
    for _ in range(600):
        producer.produce("moving", b"v" * 1000, partition=0)
    assert producer.flush(30) == 0
    bootstrap = ["--bootstrap-server", cluster.bootstrap_servers]

    def plan(replicas: list[int]) -> str:
        path = tmp_path / f"to-{replicas[0]}.json"
        entry = {"topic": "moving", "partition": 0, "replicas": replicas}
        path.write_text(json.dumps({"version": 1, "partitions": [entry]}))
        return str(path)

    def replicas() -> tuple[int, ...]:
        async def ask() -> tuple[int, ...]:
            async with Admin(cluster.bootstrap_servers) as admin:
                (info,) = await admin.describe_topics(["moving"])
                return info.partitions[0].replicas

        return asyncio.run(ask())

    # 600 KB copied at 100 KB/s: the throttle is there while the move runs
    # (Kafka's keys on both brokers and on the topic), and gone once done.
    out = tmp_path / "move.out"
    with out.open("w") as sink:
        mover = subprocess.Popen(
            [*MOLDAU, "cluster", "reassign", *bootstrap, "--plan", plan([y]), "--execute",
             "--throttle", "100000"],
            stdout=sink, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    try:
        wait_for(lambda: "submitted" in out.read_text(), 30, interval=0.1, what="submitted")
        assert throttles(cluster, cluster.broker_ids) == {
            f"{x}:leader.replication.throttled.rate": "100000",
            f"{x}:follower.replication.throttled.rate": "100000",
            f"{y}:leader.replication.throttled.rate": "100000",
            f"{y}:follower.replication.throttled.rate": "100000",
            LEADER_REPLICAS: f"0:{x}",
            FOLLOWER_REPLICAS: f"0:{y}",
        }
        _, err = mover.communicate(timeout=60)
    finally:
        if mover.poll() is None:
            mover.kill()
    moved = out.read_text()
    assert mover.returncode == 0, moved + err
    assert "1/1 partitions done" in moved and "throttle removed" in moved, moved
    assert "preferred leaders:" in moved, moved
    assert throttles(cluster, cluster.broker_ids) == {}
    assert wait_for(lambda: replicas() == (y,), 15, interval=0.2, what="moving on y")

    # Back to x while x is paused: the move cannot finish. Ctrl-C stops the
    # watching only and says how to cancel; the cancel puts it back on y.
    cluster.kill(x, signal.SIGSTOP)
    awake = ",".join(cluster.address(b) for b in (controller, y))
    bootstrap = ["--bootstrap-server", awake]  # a paused broker would hold up requests
    try:
        out = tmp_path / "watch.out"
        with out.open("w") as sink:
            watcher = subprocess.Popen(
                [*MOLDAU, "cluster", "reassign", *bootstrap, "--plan", plan([x]), "--execute"],
                stdout=sink, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        try:
            wait_for(lambda: "submitted" in out.read_text(), 30, interval=0.1, what="submitted")
            watcher.send_signal(signal.SIGINT)
            _, err = watcher.communicate(timeout=30)
        finally:
            if watcher.poll() is None:
                watcher.kill()
        assert watcher.returncode == 130, err
        assert "the reassignment goes on" in err, err
        assert f"moldau cluster reassign --bootstrap-server {awake} --plan " in err, err
        # The paused broker cannot be asked whether it is throttled: named, exit 1.
        cancelled = moldau(
            "cluster", "reassign", *bootstrap, "--plan", plan([x]), "--cancel",
            "--timeout-ms", "2000",
        )  # fmt: skip
        assert "1 reassignment cancelled" in cancelled.stdout, cancelled.stdout
        assert cancelled.returncode == 1 and f"broker {x}" in cancelled.stderr, cancelled.stderr
    finally:
        cluster.restore()
    assert wait_for(lambda: replicas() == (y,), 15, interval=0.2, what="back on y")
    again = moldau("cluster", "reassign", *bootstrap, "--plan", plan([x]), "--cancel")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no reassignment in progress" in again.stdout, again.stdout


def test_a_new_order_moves_the_preferred_leader(cluster: LocalCluster, tmp_path: Path) -> None:
    create(cluster, NewTopic("ordered", assignments={0: [0, 1]}))
    path = tmp_path / "order.json"
    entry = {"topic": "ordered", "partition": 0, "replicas": [1, 0]}
    path.write_text(json.dumps({"version": 1, "partitions": [entry]}))
    bootstrap = ["--bootstrap-server", cluster.bootstrap_servers]
    done = moldau("cluster", "reassign", *bootstrap, "--plan", str(path), "--execute")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ordered-0  0,1       ->  1,0     order" in done.stdout, done.stdout
    assert "preferred leaders: 1 elected" in done.stdout, done.stdout
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    (partition,) = admin.list_topics("ordered", timeout=10).topics["ordered"].partitions.values()
    assert (partition.replicas, partition.leader) == ([1, 0], 1)
