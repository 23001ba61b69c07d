"""A cluster on one machine: the plan, ``moldau cluster up`` and ``status``,
and the ``moldau_cluster`` fixture.

The status tests read a real ZooKeeper that ``ZkStore`` wrote as brokers and
a controller would. The process tests start real brokers in cluster mode;
they skip while the broker refuses ``zookeeper.connect`` and run by
themselves once it accepts it.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import pytest
from kazoo.client import KazooClient

from moldau.cli.cluster import render_status
from moldau.cli.main import main
from moldau.cluster import local_zookeeper
from moldau.cluster.local import LocalCluster
from moldau.cluster.local_plan import (
    CHROOT,
    BrokerPlan,
    PlanError,
    make_plan,
    read_plan,
    write_plan,
)
from moldau.cluster.status import fetch_status
from moldau.cluster.zk import paths as zp
from moldau.cluster.zk.client import ZkClient
from moldau.cluster.zk.store import ZkStore
from support.zookeeper import ZooKeeper

pytestmark = pytest.mark.cluster
pytest_plugins = ["pytester"]

MOLDAU = [sys.executable, "-m", "moldau"]


# -- the plan ------------------------------------------------------------------


def ports_from(start: int) -> Iterator[int]:
    """Ports as a fake OS would hand them out, with a repeat to show it is skipped."""
    yield start
    yield start  # the OS may give a port twice
    yield from range(start + 1, start + 100)


def test_a_fresh_plan_has_ids_from_zero_distinct_ports_and_its_own_zookeeper() -> None:
    ports = ports_from(40000)
    plan = make_plan(None, free=lambda: next(ports))
    assert plan.brokers == (
        BrokerPlan(0, 40000),
        BrokerPlan(1, 40001),
        BrokerPlan(2, 40002),
    )
    assert plan.zookeeper_port == 40003
    assert plan.zookeeper_connect == f"127.0.0.1:40003{CHROOT}"


def test_base_port_racks_and_config() -> None:
    plan = make_plan(
        None, 5, racks=["a", "b"], base_port=9092, broker_config={"num.partitions": "6"}
    )
    assert [(b.broker_id, b.port, b.rack) for b in plan.brokers] == [
        (0, 9092, "a"),
        (1, 9093, "b"),
        (2, 9094, "a"),
        (3, 9095, "b"),
        (4, 9096, "a"),
    ]
    assert plan.zookeeper_port not in range(9092, 9097)
    assert plan.broker_config == {"num.partitions": "6"}


def test_a_restart_keeps_ports_racks_zookeeper_and_merges_config(tmp_path: Path) -> None:
    ports = ports_from(41000)
    first = make_plan(
        None, 2, racks=["r1"], broker_config={"a": "1", "b": "1"}, free=lambda: next(ports)
    )
    write_plan(tmp_path, first)
    saved = read_plan(tmp_path)
    assert saved == first
    again = make_plan(saved, broker_config={"b": "2"}, free=lambda: next(ports))
    assert again.brokers == first.brokers
    assert again.zookeeper_connect == first.zookeeper_connect
    assert again.zookeeper_port == first.zookeeper_port
    assert again.broker_config == {"a": "1", "b": "2"}
    grown = make_plan(saved, 3, free=lambda: next(ports))
    assert grown.brokers[:2] == first.brokers
    assert grown.brokers[2].port not in {b.port for b in first.brokers}
    assert grown.brokers[2].port != first.zookeeper_port


def test_an_existing_zookeeper_is_used_as_given() -> None:
    plan = make_plan(None, 1, zookeeper_connect="zk1:2181,zk2:2181/kafka")
    assert (plan.zookeeper_connect, plan.zookeeper_port) == ("zk1:2181,zk2:2181/kafka", None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"broker_config": {"broker.id": "7"}}, "broker.id: set for each broker"),
        ({"broker_config": {"listeners": "x", "log.dirs": "y"}}, "listeners, log.dirs"),
        ({"brokers": 0}, "at least one broker"),
        ({"base_port": 65535}, "no room"),
        ({"racks": ["a", ""]}, "empty rack"),
    ],
)
def test_impossible_plans_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        make_plan(None, **kwargs)  # type: ignore[arg-type]


def test_a_damaged_plan_file_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "cluster.json").write_text('{"brokers": [}')
    with pytest.raises(PlanError, match="is not a moldau cluster plan"):
        read_plan(tmp_path)


# -- the command line --------------------------------------------------------------


def test_up_arguments() -> None:
    from moldau.cli.main import build_parser

    args = build_parser().parse_args(
        [
            *("cluster", "up", "--brokers", "5", "--racks", "a,b", "--port", "9092"),
            *("--override", "num.partitions=3", "--override", "x=y", "--dir", "d"),
        ]
    )
    assert (args.brokers, args.racks, args.port, args.dir) == (5, ["a", "b"], 9092, Path("d"))
    assert args.override == [("num.partitions", "3"), ("x", "y")]
    defaults = build_parser().parse_args(["cluster", "up"])
    # None: from the directory's saved plan when there is one, else the defaults
    assert [defaults.brokers, defaults.dir, defaults.racks, defaults.port] == [None] * 4


@pytest.mark.parametrize(
    "argv",
    [
        ["cluster", "up", "--brokers", "0"],
        ["cluster", "up", "--racks", "a,,b"],
        ["cluster", "up", "--override", "novalue"],
        ["cluster", "status", "--zookeeper", "127.0.0.1:2181", "--dir", "d"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: moldau cluster" in capsys.readouterr().err


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_a_per_broker_override_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    argv = ["cluster", "up", "--dir", str(tmp_path / "c"), "--override", "broker.id=4"]
    assert main(argv) == 1
    assert "broker.id: set for each broker" in one_line_error(capsys)
    assert not (tmp_path / "c").exists()


def test_missing_zookeeper_names_the_debian_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(local_zookeeper, "ZOOKEEPER_JAR", tmp_path / "no" / "zookeeper.jar")
    assert main(["cluster", "up", "--dir", str(tmp_path / "c")]) == 1
    line = one_line_error(capsys)
    assert "ZooKeeper is not installed" in line and "apt-get install zookeeper" in line


def test_missing_java_names_the_debian_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no java there
    assert main(["cluster", "up", "--dir", str(tmp_path / "c")]) == 1
    line = one_line_error(capsys)
    assert "java is not on PATH" in line and "apt-get install zookeeper" in line


# -- status, from a ZooKeeper written through the store -------------------------------


def registration(broker_id: int, rack: str | None) -> zp.BrokerRegistration:
    return zp.BrokerRegistration(
        broker_id, (zp.Endpoint("PLAINTEXT", "127.0.0.1", 9090 + broker_id),), rack, 1
    )


@asynccontextmanager
async def populated(zookeeper: ZooKeeper) -> AsyncIterator[ZkStore]:
    """Brokers 0 and 1 alive (2 is gone), broker 0 the controller, and topics:

    orders    p0 leader 0 isr 0,1,2   healthy
              p1 leader 1 isr 1,0     under-replicated
              p2 leader 2 isr 2       under-replicated and offline (2 is dead)
    payments  p0 no state yet         under-replicated (no ISR) and offline
    gone      p0 leader 0 isr 0       marked for deletion
    """
    client = ZkClient(zookeeper.connect, session_timeout_ms=6000)
    await client.start()
    try:
        store = ZkStore(client)
        await store.create_top_level_paths()
        await store.get_or_create_cluster_id(lambda: "test-cluster-id")
        await store.register_broker(registration(0, "a"))
        await store.register_broker(registration(1, "b"))
        lease = await store.elect_controller(0, 1)
        replicas = {
            p: zp.ReplicaAssignment(r) for p, r in enumerate([(0, 1, 2), (1, 2, 0), (2, 0, 1)])
        }
        await store.create_topic("orders", zp.TopicAssignment(uuid.uuid4(), replicas))
        await store.create_partition_states(
            "orders",
            {
                0: zp.PartitionState(0, 3, (0, 1, 2), lease.epoch),
                1: zp.PartitionState(1, 1, (1, 0), lease.epoch),
                2: zp.PartitionState(2, 0, (2,), lease.epoch),
            },
            lease,
        )
        await store.create_topic(
            "payments", zp.TopicAssignment(uuid.uuid4(), {0: zp.ReplicaAssignment((1, 0))})
        )
        await store.create_topic(
            "gone", zp.TopicAssignment(uuid.uuid4(), {0: zp.ReplicaAssignment((0,))})
        )
        await store.create_partition_states(
            "gone", {0: zp.PartitionState(0, 0, (0,), lease.epoch)}, lease
        )
        await store.mark_topic_for_deletion("gone")
        yield store
    finally:
        await client.close()


async def moldau_output(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the moldau command without blocking the loop that holds the store's session."""
    process = await asyncio.create_subprocess_exec(
        *MOLDAU,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def run(check: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(check, 60))


def test_status_shows_brokers_controller_and_partitions_in_trouble(
    zookeeper: ZooKeeper,
) -> None:
    async def check() -> None:
        async with populated(zookeeper):
            code, out, err = await moldau_output(
                "cluster", "status", "--zookeeper", zookeeper.connect
            )
        assert (code, err) == (0, "")
        assert out.splitlines() == [
            f"zookeeper   {zookeeper.connect}",
            "cluster id  test-cluster-id",
            "controller  broker 0 (epoch 1)",
            "brokers     2 alive of 3",
            "",
            "BROKER  ALIVE  RACK  ENDPOINT                    REPLICAS  LEADS  PREFERRED",
            "0       yes    a     PLAINTEXT://127.0.0.1:9090  5         2      2",
            "1       yes    b     PLAINTEXT://127.0.0.1:9091  4         1      2",
            "2       no     -     -                           3         1      1",
            "",
            "partitions: 5 in 3 topics, 3 under-replicated, 2 offline",
            "replicas per broker: imbalanced (they differ by 2; "
            "`moldau cluster rebalance` plans moves)",
            "preferred leaders per broker: balanced; leaders: all on the preferred replicas",
            "reassignments in progress: 0",
            "under-replicated:",
            "  TOPIC     PARTITION  LEADER  EPOCH  REPLICAS  ISR",
            "  orders    1          1       1      1,2,0     1,0",
            "  orders    2          2       0      2,0,1     2",
            "  payments  0          none    -1     1,0       -",
            "offline:",
            "  TOPIC     PARTITION  LEADER  EPOCH  REPLICAS  ISR",
            "  orders    2          2       0      2,0,1     2",
            "  payments  0          none    -1     1,0       -",
            "topics being deleted: gone",
        ]

    run(check())


def test_status_json(zookeeper: ZooKeeper) -> None:
    async def check() -> None:
        async with populated(zookeeper):
            code, out, _ = await moldau_output(
                "cluster", "status", "--zookeeper", zookeeper.connect, "--json"
            )
        assert code == 0
        status = json.loads(out)
        assert status["cluster_id"] == "test-cluster-id"
        assert (status["controller"], status["controller_epoch"]) == (0, 1)
        brokers = {b["id"]: b for b in status["brokers"]}
        assert {i: (b["alive"], b["rack"]) for i, b in brokers.items()} == {
            0: (True, "a"),
            1: (True, "b"),
            2: (False, None),
        }
        assert brokers[0]["endpoints"] == ["PLAINTEXT://127.0.0.1:9090"]
        assert brokers[0]["leads"] == [
            {"topic": "gone", "partition": 0},
            {"topic": "orders", "partition": 0},
        ]
        assert len(brokers[2]["hosts"]) == 3
        assert status["under_replicated"] == [
            {"topic": "orders", "partition": 1},
            {"topic": "orders", "partition": 2},
            {"topic": "payments", "partition": 0},  # no ISR at all yet
        ]
        assert status["offline"] == [
            {"topic": "orders", "partition": 2},
            {"topic": "payments", "partition": 0},
        ]
        orders_0 = next(
            p for p in status["partitions"] if (p["topic"], p["partition"]) == ("orders", 0)
        )
        assert orders_0 == {
            "topic": "orders",
            "partition": 0,
            "leader": 0,
            "leader_epoch": 3,
            "replicas": [0, 1, 2],
            "isr": [0, 1, 2],
            "under_replicated": False,
            "offline": False,
            "adding_replicas": [],
            "removing_replicas": [],
        }
        assert status["topics_being_deleted"] == ["gone"]
        assert (status["reassigning"], status["replicas_imbalanced"]) == ([], True)

    run(check())


def test_status_finds_the_cluster_by_its_directory_or_the_last_one_started(
    zookeeper: ZooKeeper, tmp_path: Path
) -> None:
    (tmp_path / "c").mkdir()
    write_plan(tmp_path / "c", make_plan(None, 1, zookeeper_connect=zookeeper.connect))
    note = tmp_path / "cache" / "moldau" / "last-cluster"
    note.parent.mkdir(parents=True)
    note.write_text(f"{tmp_path / 'c'}\n")

    async def check() -> None:
        async with populated(zookeeper):
            by_dir = await moldau_output("cluster", "status", "--dir", str(tmp_path / "c"))
            by_note = await moldau_output(
                "cluster", "status", env={"XDG_CACHE_HOME": str(tmp_path / "cache")}
            )
        assert by_dir[0] == 0 and "controller  broker 0 (epoch 1)" in by_dir[1]
        assert by_note == by_dir

    run(check())


def test_status_without_a_cluster_is_one_line_and_creates_nothing(
    zookeeper: ZooKeeper, tmp_path: Path
) -> None:
    async def check() -> None:
        missing = await moldau_output("cluster", "status", "--zookeeper", zookeeper.connect)
        no_plan = await moldau_output("cluster", "status", "--dir", str(tmp_path))
        no_note = await moldau_output(
            "cluster", "status", env={"XDG_CACHE_HOME": str(tmp_path / "cache")}
        )
        for code, out, err in (missing, no_plan, no_note):
            assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
        assert f"{zookeeper.chroot} does not exist" in missing[2]
        assert "has no cluster.json" in no_plan[2]
        assert "which cluster?" in no_note[2]

    run(check())
    root = KazooClient(hosts=zookeeper.server.connect)
    root.start(timeout=10)
    try:
        assert root.exists(zookeeper.chroot) is None
    finally:
        root.stop()
        root.close()


def test_status_of_an_empty_chroot(zookeeper: ZooKeeper) -> None:
    async def check() -> None:
        client = ZkClient(zookeeper.connect)
        await client.start()  # creates the chroot, nothing in it
        try:
            status = await fetch_status(zookeeper.connect)
        finally:
            await client.close()
        assert render_status(status)[1:4] == [
            "cluster id  none yet",
            "controller  none",
            "brokers     0 alive of 0",
        ]

    run(check())


# -- real processes (cluster mode) ---------------------------------------------------


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (a test's own directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def read_lines(stream: IO[str], into: queue.Queue[str]) -> None:
    """Each line of ``stream``, then "" at its end."""
    for line in stream:
        into.put(line)
    into.put("")


@contextmanager
def moldau_up(
    directory: Path, *argv: str
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """``moldau cluster up`` as a subprocess; yields it once it printed the
    addresses (key -> value of its indented lines, and the "Ctrl-C" line that
    ends them). Killed, with everything it started, in the finally."""
    process = subprocess.Popen(
        [*MOLDAU, "cluster", "up", "--dir", str(directory), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(directory.parent / "cache")},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None and process.stderr is not None
    threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True).start()
    try:
        printed: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while not printed.get("Ctrl-C"):  # the last line of the block
            remaining = deadline - time.monotonic()
            assert remaining > 0, "cluster up did not print its addresses in time"
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if not line:
                process.wait(10)
                raise AssertionError(f"cluster up exited: {process.stderr.read()}")
            if line.startswith("  "):
                key, _, value = line.strip().partition("  ")
                printed[key] = value.strip()
            elif line.startswith("Ctrl-C"):
                printed["Ctrl-C"] = line.strip()
        yield process, printed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        for pid in processes_mentioning(str(directory)):
            os.kill(pid, signal.SIGKILL)


def test_cluster_up_metadata_status_and_ctrl_c(tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient

    directory = tmp_path / "cluster"
    with moldau_up(directory, "--brokers", "3", "--racks", "a,b,c") as (process, printed):
        bootstrap = printed["bootstrap.servers"]
        assert len(bootstrap.split(",")) == 3
        assert printed["zookeeper.connect"].endswith(CHROOT)
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
        ports = sorted(int(a.rsplit(":", 1)[1]) for a in bootstrap.split(","))
        assert sorted(b.port for b in metadata.brokers.values()) == ports
        assert sorted(metadata.brokers) == [0, 1, 2]

        status = json.loads(
            subprocess.run(
                [*MOLDAU, "cluster", "status", "--dir", str(directory), "--json"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout
        )
        assert [(b["id"], b["alive"], b["rack"]) for b in status["brokers"]] == [
            (0, True, "a"),
            (1, True, "b"),
            (2, True, "c"),
        ]
        assert status["controller"] in (0, 1, 2)

        started = processes_mentioning(str(directory))
        assert len(started) == 5  # up itself, ZooKeeper and three brokers
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        assert processes_mentioning(str(directory)) == []
    assert read_plan(directory) is not None  # the data stays


def test_brokers_killed_stopped_and_paused_come_back_on_their_ports(tmp_path: Path) -> None:
    config = {"zookeeper.session.timeout.ms": "3000"}
    with LocalCluster(tmp_path / "c", 3, broker_config=config) as cluster:
        port = cluster.port(1)
        cluster.kill(1)
        cluster.wait_until_registered({0, 2}, timeout=30)  # its session expired
        cluster.start_broker(1)
        assert cluster.registered_broker_ids() == {0, 1, 2}
        assert cluster.port(1) == port
        assert cluster.stop_broker(0) == 0  # a clean stop leaves ZooKeeper at once
        assert cluster.registered_broker_ids() == {1, 2}
        cluster.kill(2, signal.SIGSTOP)
        assert not cluster.ready(2)
        cluster.restore()
        assert all(cluster.ready(b) for b in cluster.broker_ids)
        assert cluster.registered_broker_ids() == {0, 1, 2}
        assert cluster.wait_until_controller() in (0, 1, 2)
        pids = [cluster.pid(b) for b in cluster.broker_ids]
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)


def test_a_broker_another_process_started_again_is_stopped_with_the_cluster(
    tmp_path: Path,
) -> None:
    """``moldau verify --dir`` kills a broker and starts it again from its own
    process: the owner's stop finds it by its pid file and stops it too
    (it used to take that pid file for its own dead process's and leave the
    broker running, to join whatever cluster later got its ZooKeeper port)."""
    config = {"zookeeper.session.timeout.ms": "3000"}
    with LocalCluster(tmp_path / "c", 2, broker_config=config) as cluster:
        cluster.kill(1)
        cluster.wait_until_registered({0}, timeout=30)
        restarted = LocalCluster(cluster.directory).spawn_broker(1)  # as verify does
        cluster.wait_until_registered({0, 1}, timeout=30)
    try:
        assert restarted.wait(10) is not None
    finally:
        if restarted.poll() is None:
            restarted.kill()
            restarted.wait()


INNER_TEST = """
def test_a_cluster(moldau_cluster):
    from confluent_kafka.admin import AdminClient

    assert moldau_cluster.broker_ids == [0, 1]
    metadata = AdminClient({"bootstrap.servers": moldau_cluster.bootstrap_servers}).list_topics(
        timeout=10
    )
    assert sorted(metadata.brokers) == [0, 1]
    moldau_cluster.stop_broker(1)


def test_the_stopped_broker_is_back(moldau_cluster):
    assert moldau_cluster.running(1)
    assert moldau_cluster.registered_broker_ids() == {0, 1}
"""


def test_the_fixture_as_a_user_sees_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
import pytest


@pytest.fixture(scope="session")
def moldau_cluster_size():
    return 2
"""
    )
    pytester.makepyfile(test_inner=INNER_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
