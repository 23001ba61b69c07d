"""Cluster mode end to end: a real ZooKeeper and three broker processes.

The read-mostly tests share one cluster (module scope); the ones that kill,
pause or restart brokers get a cluster of their own. Session timeouts are
short (3 s) so failover tests stay fast; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import KafkaException
from confluent_kafka import Producer as ConfluentProducer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from kazoo.client import KazooClient

from conftest import BrokerProcess
from moldau.client import Producer
from moldau.client.connection import connect
from moldau.cluster.local import LocalCluster
from moldau.cluster.zk import paths as zp
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode
from support.zookeeper import ZooKeeper

T = TypeVar("T")

SESSION_MS = 3000
#: The shared cluster's racks: brokers 1 and 2 share one.
RACKS = ("r0", "r1", "r1")
BROKER_CONFIG = {"zookeeper.session.timeout.ms": str(SESSION_MS), "num.partitions": "1"}
KCAT = shutil.which("kcat") or shutil.which("kafkacat")
MOLDAU = str(Path(sys.executable).parent / "moldau")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    directory = tmp_path_factory.mktemp("cluster")
    with LocalCluster(directory, 3, racks=RACKS, broker_config=BROKER_CONFIG) as local:
        yield local


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", 3, broker_config=BROKER_CONFIG) as local:
        try:
            yield local
        finally:
            print_broker_logs(local)


def print_broker_logs(cluster: LocalCluster) -> None:
    """The brokers' own lines (pytest shows them when the test failed)."""
    for broker_id in cluster.broker_ids:
        lines = cluster.log_path(broker_id).read_text(errors="replace").splitlines()
        print(f"--- broker {broker_id}")
        print("\n".join([line for line in lines if "kazoo" not in line][-40:]))


def _admin(address: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": address})


def create_topic(cluster: LocalCluster, name: str, partitions: int, rf: int = 1) -> None:
    """Create through broker 0 and wait until every broker sees every leader."""
    admin = _admin(cluster.address(0))
    admin.create_topics([NewTopic(name, partitions, rf)], operation_timeout=20)[name].result(30)
    for broker_id in cluster.broker_ids:
        wait_for(
            lambda b=broker_id: _leaders(cluster.address(b), name, partitions),
            10,
            f"leaders of {name} on broker {broker_id}",
        )


def _leaders(address: str, topic: str, partitions: int) -> dict[int, int] | None:
    metadata = _admin(address).list_topics(topic, timeout=10)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or len(found.partitions) != partitions:
        return None
    leaders = {p.id: p.leader for p in found.partitions.values()}
    return leaders if all(leader >= 0 for leader in leaders.values()) else None


def request(
    cluster: LocalCluster,
    broker_id: int,
    api_key: ApiKey,
    body: dict[str, Any],
    version: int | None = None,
) -> dict[str, Any]:
    """One request to one broker over a fresh connection."""

    async def send() -> dict[str, Any]:
        conn = await connect("127.0.0.1", cluster.port(broker_id), request_timeout_ms=10_000)
        try:
            return await conn.request(api_key, body, version=version)
        finally:
            conn.close()

    return asyncio.run(send())


def produce_confluent(address: str, topic: str, count: int, prefix: str) -> None:
    producer = ConfluentProducer(
        {"bootstrap.servers": address, "enable.idempotence": True, "linger.ms": 5}
    )
    errors: list[Any] = []
    for i in range(count):
        producer.produce(
            topic,
            value=f"{prefix}-{i}".encode(),
            key=str(i).encode(),
            on_delivery=lambda err, _msg: err and errors.append(err),
        )
    assert producer.flush(30) == 0
    assert errors == []


def consume_confluent(address: str, topic: str, partitions: int, expected: int) -> list[str]:
    consumer = ConfluentConsumer(
        {
            "bootstrap.servers": address,
            "group.id": f"reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([ConfluentTopicPartition(topic, p, 0) for p in range(partitions)])
        values: list[str] = []
        deadline = time.monotonic() + 30
        while len(values) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            values.append(message.value().decode())
        return values
    finally:
        consumer.close()


# -- shared cluster --------------------------------------------------------------------


def test_every_broker_describes_the_same_cluster(cluster: LocalCluster) -> None:
    create_topic(cluster, "spread", 6)
    views = [_admin(cluster.address(b)).list_topics(timeout=10) for b in cluster.broker_ids]
    controller = views[0].controller_id
    assert controller in cluster.broker_ids
    assert controller == cluster.controller_id()
    leaders = {p.leader for p in views[0].topics["spread"].partitions.values()}
    assert leaders == set(cluster.broker_ids), "6 partitions spread over 3 brokers"
    for view in views:
        assert view.cluster_id == views[0].cluster_id
        assert view.controller_id == controller
        assert sorted(view.brokers) == cluster.broker_ids
        assert {
            p.id: (p.leader, tuple(p.replicas), tuple(p.isrs))
            for p in view.topics["spread"].partitions.values()
        } == {
            p.id: (p.leader, tuple(p.replicas), tuple(p.isrs))
            for p in views[0].topics["spread"].partitions.values()
        }


def test_placement_is_rack_aware_and_spreads_preferred_leaders(cluster: LocalCluster) -> None:
    create_topic(cluster, "racked", 6, rf=2)
    answer = request(
        cluster,
        0,
        ApiKey.METADATA,
        {"topics": [{"name": "racked", "topic_id": None}], "allow_auto_topic_creation": False},
        version=12,
    )
    assert {b["node_id"]: b["rack"] for b in answer["brokers"]} == dict(enumerate(RACKS))
    partitions = answer["topics"][0]["partitions"]
    for partition in partitions:
        assert {RACKS[r] for r in partition["replica_nodes"]} == {"r0", "r1"}
    firsts = sorted(p["replica_nodes"][0] for p in partitions)
    assert firsts == [0, 0, 1, 1, 2, 2] or sorted(set(firsts)) == [0, 1, 2]


def test_confluent_produces_and_consumes_across_leaders(cluster: LocalCluster) -> None:
    create_topic(cluster, "confluent", 6)
    produce_confluent(cluster.address(1), "confluent", 300, "c")
    values = consume_confluent(cluster.address(2), "confluent", 6, 300)
    assert sorted(values) == sorted(f"c-{i}" for i in range(300))


def test_kafka_python_and_aiokafka_follow_leaders(cluster: LocalCluster) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaConsumer, KafkaProducer

    create_topic(cluster, "pyclients", 6)
    producer = KafkaProducer(bootstrap_servers=cluster.address(0), linger_ms=5)
    for i in range(60):
        producer.send("pyclients", value=f"kp-{i}".encode(), partition=i % 6)
    producer.flush(30)
    producer.close()

    async def aio() -> list[str]:
        aio_producer = AIOKafkaProducer(bootstrap_servers=cluster.address(2))
        await aio_producer.start()
        try:
            for i in range(60):
                await aio_producer.send_and_wait("pyclients", f"ak-{i}".encode(), partition=i % 6)
        finally:
            await aio_producer.stop()
        consumer = AIOKafkaConsumer(
            "pyclients", bootstrap_servers=cluster.address(1), auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            seen: list[str] = []
            async with asyncio.timeout(30):
                while len(seen) < 120:
                    batches = await consumer.getmany(timeout_ms=500)
                    seen += [r.value.decode() for rs in batches.values() for r in rs]
            return seen
        finally:
            await consumer.stop()

    seen = asyncio.run(aio())
    assert sorted(seen) == sorted([f"kp-{i}" for i in range(60)] + [f"ak-{i}" for i in range(60)])
    consumer = KafkaConsumer(
        "pyclients",
        bootstrap_servers=cluster.address(0),
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        assert len([m for m in consumer]) == 120
    finally:
        consumer.close()


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed")
def test_kcat_and_moldaus_client_follow_leaders(cluster: LocalCluster) -> None:
    assert KCAT is not None
    create_topic(cluster, "kcat", 3)
    lines = "".join(f"k{i}:v{i}\n" for i in range(30))
    subprocess.run(
        [KCAT, "-b", cluster.address(1), "-P", "-t", "kcat", "-K:"],
        input=lines,
        text=True,
        check=True,
        timeout=30,
    )

    async def moldau_client() -> None:
        async with Producer(cluster.address(2), linger_ms=0) as producer:
            futures = [await producer.send("kcat", b"m%d" % i, partition=i % 3) for i in range(30)]
            for future in futures:
                await asyncio.wait_for(future, 15)

    asyncio.run(moldau_client())
    out = subprocess.run(
        [KCAT, "-b", cluster.address(0), "-C", "-t", "kcat", "-e", "-q", "-f", "%s\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    assert sorted(out) == sorted([f"v{i}" for i in range(30)] + [f"m{i}" for i in range(30)])


def test_a_topic_is_auto_created_on_first_use(cluster: LocalCluster) -> None:
    first = request(
        cluster,
        1,
        ApiKey.METADATA,
        {"topics": [{"name": "auto", "topic_id": None}], "allow_auto_topic_creation": True},
        version=12,
    )["topics"][0]
    assert first["error_code"] in (ErrorCode.NONE, ErrorCode.LEADER_NOT_AVAILABLE)
    produce_confluent(cluster.address(2), "auto", 10, "a")
    assert sorted(consume_confluent(cluster.address(0), "auto", 1, 10)) == sorted(
        f"a-{i}" for i in range(10)
    )


def test_a_broker_that_does_not_lead_says_who_does(cluster: LocalCluster) -> None:
    create_topic(cluster, "routing", 1)
    leaders = _leaders(cluster.address(0), "routing", 1)
    assert leaders is not None
    leader = leaders[0]
    other = next(b for b in cluster.broker_ids if b != leader)

    answer = request(
        cluster,
        other,
        ApiKey.PRODUCE,
        {
            "transactional_id": None,
            "acks": 1,
            "timeout_ms": 5000,
            "topic_data": [{"name": "routing", "partition_data": [{"index": 0, "records": None}]}],
        },
        version=10,
    )
    partition = answer["responses"][0]["partition_responses"][0]
    assert partition["error_code"] == ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert partition["current_leader"]["leader_id"] == leader
    assert [e["node_id"] for e in answer["node_endpoints"]] == [leader]


def test_admin_on_any_broker_takes_effect_everywhere(cluster: LocalCluster) -> None:
    create_topic(cluster, "admin", 2)
    admin = _admin(cluster.address(1))
    admin.create_partitions([NewPartitions("admin", 5)], operation_timeout=20)["admin"].result(30)
    for broker_id in cluster.broker_ids:
        wait_for(lambda b=broker_id: _leaders(cluster.address(b), "admin", 5), 10, "5 partitions")
    entry = ConfigEntry("retention.ms", "123456", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", "admin", incremental_configs=[entry])
    admin.incremental_alter_configs([resource])[resource].result(30)

    def seen_on(broker_id: int) -> bool:
        other = _admin(cluster.address(broker_id))
        described = other.describe_configs([ConfigResource("topic", "admin")])
        configs = next(iter(described.values())).result(10)
        return configs["retention.ms"].value == "123456"

    for broker_id in cluster.broker_ids:
        wait_for(lambda b=broker_id: seen_on(b), 5, f"the config on broker {broker_id}")
    deleter = _admin(cluster.address(2))
    deleter.delete_topics(["admin"], operation_timeout=20)["admin"].result(30)
    for broker_id in cluster.broker_ids:
        wait_for(
            lambda b=broker_id: (
                "admin" not in _admin(cluster.address(b)).list_topics(timeout=10).topics
            ),
            10,
            "the deletion",
        )
    for broker_id in cluster.broker_ids:
        data = cluster.broker_dir(broker_id) / "data"
        wait_for(
            lambda d=data: not any(p.name.startswith("admin-") for p in d.iterdir()),
            10,
            "the replicas removed from disk",
        )
    with pytest.raises(KafkaException) as caught:
        admin.create_topics([NewTopic("too-many", 1, 4)])["too-many"].result(30)
    assert caught.value.args[0].code() == ErrorCode.INVALID_REPLICATION_FACTOR


def test_groups_have_one_coordinator_found_from_any_broker(cluster: LocalCluster) -> None:
    create_topic(cluster, "grouped", 3)
    produce_confluent(cluster.address(0), "grouped", 90, "g")

    def coordinators() -> set[int] | None:
        body = {"key_type": 0, "coordinator_keys": ["the-group"]}
        found = [
            request(cluster, b, ApiKey.FIND_COORDINATOR, body)["coordinators"][0]
            for b in cluster.broker_ids
        ]
        if any(c["error_code"] for c in found):
            return None
        return {c["node_id"] for c in found}

    answer = wait_for(coordinators, 20, "the offsets topic and its leaders")
    assert len(answer) == 1
    consumer = ConfluentConsumer(
        {
            "bootstrap.servers": cluster.address(2),
            "group.id": "the-group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe(["grouped"])
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 90 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen += 1
        assert seen == 90
        consumer.commit(asynchronous=False)
        committed = consumer.committed(
            [ConfluentTopicPartition("grouped", p) for p in range(3)], timeout=10
        )
        assert sum(tp.offset for tp in committed) == 90
    finally:
        consumer.close()


def test_producer_ids_are_unique_across_brokers(cluster: LocalCluster) -> None:
    body = {"transactional_id": None, "transaction_timeout_ms": -1}
    answers = [
        request(cluster, b, ApiKey.INIT_PRODUCER_ID, body)
        for b in cluster.broker_ids
        for _ in range(2)
    ]
    assert all(a["error_code"] == 0 for a in answers)
    ids = [int(a["producer_id"]) for a in answers]
    assert len(set(ids)) == len(ids)
    client = KazooClient(hosts=cluster.zookeeper_connect, timeout=10)
    client.start(10)
    try:
        data, _ = client.get(zp.PRODUCER_ID_BLOCK)
        assert int(json.loads(data)["block_end"]) >= max(ids)  # Kafka writes a string
    finally:
        client.stop()
        client.close()


# -- clusters of their own ---------------------------------------------------------------


def test_controller_kill_9_fails_over_and_nothing_is_lost(own_cluster: LocalCluster) -> None:
    cluster = own_cluster
    create_topic(cluster, "survive", 6)
    produce_confluent(cluster.address(0), "survive", 120, "s")
    old = cluster.wait_until_controller()
    killed_at = time.monotonic()
    cluster.kill(old, signal.SIGKILL)
    new = wait_for(
        lambda: (c := cluster.controller_id()) is not None and c != old and (c,),
        SESSION_MS / 1000 + 5,
        "a new controller",
    )[0]
    assert time.monotonic() - killed_at < SESSION_MS / 1000 + 3
    assert new != old
    survivor = next(b for b in cluster.broker_ids if b not in (old,))
    create_topic_on = _admin(cluster.address(survivor))
    create_topic_on.create_topics([NewTopic("after", 2, 1)], operation_timeout=20)["after"].result(
        30
    )
    cluster.start_broker(old)
    for broker_id in cluster.broker_ids:
        wait_for(lambda b=broker_id: _leaders(cluster.address(b), "survive", 6), 20, "leaders")
    values = consume_confluent(cluster.address(new), "survive", 6, 120)
    assert sorted(values) == sorted(f"s-{i}" for i in range(120))


def test_a_paused_controller_is_deposed_and_changes_nothing(own_cluster: LocalCluster) -> None:
    cluster = own_cluster
    old = cluster.wait_until_controller()
    client = KazooClient(hosts=cluster.zookeeper_connect, timeout=10)
    client.start(10)
    try:
        _, stat = client.get(zp.CONTROLLER_EPOCH)
        epoch_before = int(client.get(zp.CONTROLLER_EPOCH)[0])
        cluster.kill(old, signal.SIGSTOP)
        new = wait_for(
            lambda: (c := cluster.controller_id()) is not None and c != old and (c,),
            SESSION_MS / 1000 + 8,
            "a new controller",
        )[0]
        create_topic_on = _admin(cluster.address(new))
        create_topic_on.create_topics([NewTopic("while-paused", 3, 1)], operation_timeout=20)[
            "while-paused"
        ].result(30)
        states_before = {
            p: client.get(f"{zp.partition_state_path('while-paused', p)}") for p in range(3)
        }
        cluster.kill(old, signal.SIGCONT)
        # The old controller comes back, finds its session gone and registers again.
        wait_for(lambda: old in cluster.registered_broker_ids(), 20, "the old controller back")
        assert cluster.controller_id() == new
        assert int(client.get(zp.CONTROLLER_EPOCH)[0]) == epoch_before + 1
        for p, (data, state_stat) in states_before.items():
            now_data, now_stat = client.get(zp.partition_state_path("while-paused", p))
            assert now_stat.version == state_stat.version, "a deposed controller wrote a state"
            assert now_data == data
    finally:
        client.stop()
        client.close()
    assert stat.version >= 1


def test_deleting_a_topic_with_a_replica_down_finishes_when_it_returns(
    own_cluster: LocalCluster,
) -> None:
    cluster = own_cluster
    create_topic(cluster, "doomed", 3)
    leaders = _leaders(cluster.address(0), "doomed", 3)
    assert leaders is not None
    down = leaders[0]
    alive = next(b for b in cluster.broker_ids if b != down)
    cluster.kill(down, signal.SIGKILL)
    cluster.wait_until_registered(set(cluster.broker_ids) - {down}, SESSION_MS / 1000 + 10)
    deleter = _admin(cluster.address(alive))
    deleter.delete_topics(["doomed"], operation_timeout=0)["doomed"].result(30)
    client = KazooClient(hosts=cluster.zookeeper_connect, timeout=10)
    client.start(10)
    try:
        wait_for(lambda: client.exists(zp.delete_topic_path("doomed")), 10, "the deletion mark")
        data = cluster.broker_dir(down) / "data"
        assert any(p.name.startswith("doomed-") for p in data.iterdir())
        cluster.start_broker(down)
        wait_for(lambda: not client.exists(zp.topic_path("doomed")), 20, "the topic's znodes gone")
        wait_for(lambda: not client.exists(zp.delete_topic_path("doomed")), 20, "the mark gone")
        wait_for(
            lambda: not any(p.name.startswith("doomed-") for p in data.iterdir()),
            20,
            "the returned broker's replica deleted",
        )
    finally:
        client.stop()
        client.close()


def test_a_restarted_broker_rejoins_with_its_partitions(own_cluster: LocalCluster) -> None:
    cluster = own_cluster
    create_topic(cluster, "kept", 3)
    produce_confluent(cluster.address(0), "kept", 60, "k")
    cluster.stop_broker(1)
    cluster.start_broker(1)
    for broker_id in cluster.broker_ids:
        wait_for(lambda b=broker_id: _leaders(cluster.address(b), "kept", 3), 20, "leaders back")
    values = consume_confluent(cluster.address(1), "kept", 3, 60)
    assert sorted(values) == sorted(f"k-{i}" for i in range(60))
    properties = (cluster.broker_dir(1) / "data" / "meta.properties").read_text()
    assert "broker.id=1" in properties and "cluster.id=" in properties


def test_groups_wait_for_enough_brokers_for_the_offsets_topic(tmp_path: Path) -> None:
    config = {**BROKER_CONFIG, "offsets.topic.replication.factor": "3"}
    with LocalCluster(tmp_path / "two", 2, broker_config=config) as cluster:
        body = {"key_type": 0, "coordinator_keys": ["g"]}
        answer = request(cluster, 0, ApiKey.FIND_COORDINATOR, body)["coordinators"][0]
        assert answer["error_code"] == ErrorCode.COORDINATOR_NOT_AVAILABLE
        assert "offsets.topic.replication.factor=3" in (answer["error_message"] or "")
        assert "offsets.topic.replication.factor=3" in cluster.log_path(0).read_text()


@pytest.mark.parametrize("fault", ["killed", "paused"])
def test_a_broker_stops_on_sigterm_while_zookeeper_is_down(
    own_cluster: LocalCluster, fault: str
) -> None:
    """Without ZooKeeper no controller can move leaderships, and a request to
    it would wait for its return: SIGTERM stops the broker soon, its logs
    closed cleanly, rather than hanging. A paused ZooKeeper is noticed only
    by the session's pings, so the broker has begun its controlled shutdown
    (the controller's answer waiting on ZooKeeper) when it learns of it."""
    cluster = own_cluster
    create_topic(cluster, "led", 3, rf=3)  # broker 0 leads one: moving it needs ZooKeeper
    if fault == "killed":
        cluster.stop_zookeeper()
    else:
        cluster.pause_zookeeper()
    try:
        started = time.monotonic()
        assert cluster.stop_broker(0, timeout=30) == 0
        assert time.monotonic() - started < SESSION_MS / 1000 + 5
        log = cluster.log_path(0).read_text()
        assert "stops without a controlled shutdown" in log and "stopped" in log
    finally:
        if fault == "killed":
            cluster.start_zookeeper()
        else:
            cluster.resume_zookeeper()


def test_a_log_dir_of_another_cluster_is_refused(own_cluster: LocalCluster, tmp_path: Path) -> None:
    cluster = own_cluster
    cluster.stop_broker(2)
    properties = cluster.broker_dir(2) / "data" / "meta.properties"
    text = properties.read_text()
    properties.write_text(
        "\n".join(
            "cluster.id=someone-else" if line.startswith("cluster.id=") else line
            for line in text.splitlines()
        )
        + "\n"
    )
    done = subprocess.run(
        [
            MOLDAU,
            "broker",
            "--override",
            f"zookeeper.connect={cluster.zookeeper_connect}",
            "--override",
            "broker.id=2",
            "--override",
            f"listeners=PLAINTEXT://127.0.0.1:{cluster.port(2)}",
            "--override",
            f"log.dirs={cluster.broker_dir(2) / 'data'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("moldau: cannot start the broker: ") and "wrong cluster" in last


def test_an_unreachable_zookeeper_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            MOLDAU,
            "broker",
            "--override",
            "zookeeper.connect=127.0.0.1:1",
            "--override",
            "zookeeper.connection.timeout.ms=1000",
            "--override",
            f"log.dirs={tmp_path}",
            "--override",
            "listeners=PLAINTEXT://127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("moldau: cannot start the broker: cannot reach ZooKeeper at 127.0.0.1:1")


def test_a_generated_broker_id_is_kept_across_restarts(
    tmp_path: Path, zookeeper: ZooKeeper
) -> None:
    data = tmp_path / "data"
    broker = BrokerProcess(
        data, zookeeper_connect=zookeeper.connect, zookeeper_session_timeout_ms=str(SESSION_MS)
    )
    client = KazooClient(hosts=zookeeper.connect, timeout=10)
    try:
        broker.start(timeout=30)
        client.start(10)
        ids = wait_for(lambda: client.get_children(zp.BROKER_IDS), 10, "a registration")
        assert ids == ["1001"], "generated above reserved.broker.max.id, as Kafka does"
        assert "broker.id=1001" in (data / "meta.properties").read_text()
        assert broker.stop() == 0
        wait_for(lambda: not client.get_children(zp.BROKER_IDS), 10, "the registration gone")
        broker.start(timeout=30)
        assert wait_for(lambda: client.get_children(zp.BROKER_IDS), 10, "again") == ["1001"]
    finally:
        broker.kill()
        client.stop()
        client.close()


def test_a_stopping_broker_hands_its_leaderships_over_first(own_cluster: LocalCluster) -> None:
    cluster = own_cluster
    create_topic(cluster, "handover", 3, rf=3)
    produce_confluent(cluster.address(0), "handover", 90, "h")
    leaders = _leaders(cluster.address(0), "handover", 3)
    assert leaders is not None
    leaving = leaders[0]
    assert cluster.stop_broker(leaving) == 0
    assert f"controlled shutdown of broker {leaving} done" in cluster.log_path(leaving).read_text()
    staying = next(b for b in cluster.broker_ids if b != leaving)
    now = wait_for(lambda: _leaders(cluster.address(staying), "handover", 3), 10, "leaders")
    assert leaving not in now.values()
    values = consume_confluent(cluster.address(staying), "handover", 3, 90)
    assert sorted(values) == sorted(f"h-{i}" for i in range(90))
