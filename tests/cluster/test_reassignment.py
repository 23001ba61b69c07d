"""Partition reassignment end to end: real ZooKeeper, three broker processes.

A partition with data moves from two brokers to two others while a
producer (acks=all, idempotent) keeps writing: the new replica catches up
and joins the ISR, leadership moves into the target, the old replica's
directory is deleted, the replicas' logs end byte-identical and every
acknowledged record is read back. A reassignment whose new replica cannot
catch up (its broker is paused) is cancelled and reverts; one whose
controller is killed with SIGKILL is finished by the next controller.

The reassignments go through moldau's Admin and kafka-python's
KafkaAdminClient (AlterPartitionReassignments / ListPartitionReassignments,
sent to the controller).
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaTopicPartition
from kazoo.client import KazooClient

from conftest import confluent_read_all, wait_for
from moldau.client.admin import Admin, NewTopic, Reassignment
from moldau.client.connection import connect
from moldau.cluster.local import LocalCluster
from moldau.cluster.zk import paths as zp
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode

pytestmark = pytest.mark.cluster

T = TypeVar("T")


def admin_call(
    cluster: LocalCluster,
    call: Callable[[Admin], Awaitable[T]],
    avoid: int | None = None,
) -> T:
    """``call`` with moldau's Admin, bootstrapped from the live brokers but
    ``avoid`` (a paused one)."""
    bootstrap = ",".join(
        cluster.address(b) for b in sorted(cluster.registered_broker_ids()) if b != avoid
    )

    async def run() -> T:
        async with Admin(bootstrap, request_timeout_ms=20_000) as admin:
            return await call(admin)

    return asyncio.run(run())


def live_bootstrap(cluster: LocalCluster) -> str:
    return ",".join(
        cluster.address(b) for b in cluster.broker_ids if b in cluster.registered_broker_ids()
    )


def create(cluster: LocalCluster, topic: str, replicas: list[int]) -> None:
    new = NewTopic(topic, assignments={0: replicas})
    results = admin_call(cluster, lambda a: a.create_topics([new]))
    assert results == {topic: None}
    wait_for(lambda: len(replicas_seen(cluster, topic)) == 3, 20, what=f"{topic} everywhere")


def replicas_seen(cluster: LocalCluster, topic: str) -> dict[int, tuple[int, list[int]]]:
    """Per live broker, the (leader, replicas) its metadata shows for topic-0."""
    seen = {}
    for broker_id in sorted(cluster.registered_broker_ids()):
        found = AdminClient({"bootstrap.servers": cluster.address(broker_id)}).list_topics(
            topic, timeout=5
        )
        partition = found.topics[topic].partitions[0]
        seen[broker_id] = (partition.leader, sorted(partition.replicas))
    return seen


def moved_to(cluster: LocalCluster, topic: str, target: Sequence[int]) -> bool:
    """Every live broker shows topic-0 on ``target``, led by one of them, and
    the controller lists no reassignment."""
    seen = replicas_seen(cluster, topic)
    if any(
        replicas != sorted(target) or leader not in target for leader, replicas in seen.values()
    ):
        return False
    return admin_call(cluster, lambda a: a.list_partition_reassignments([(topic, 0)])) == {}


def partition_dir(cluster: LocalCluster, broker_id: int, topic: str) -> Path:
    return cluster.broker_dir(broker_id) / "data" / f"{topic}-0"


def log_bytes(cluster: LocalCluster, broker_id: int, topic: str) -> bytes:
    directory = partition_dir(cluster, broker_id, topic)
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.log")))


def wait_identical(cluster: LocalCluster, topic: str, broker_ids: Sequence[int]) -> bytes:
    def same() -> bytes | None:
        logs = {log_bytes(cluster, b, topic) for b in broker_ids}
        return logs.pop() if len(logs) == 1 and b"" not in logs else None

    found: bytes = wait_for(same, 30, what=f"identical logs of {topic}-0 on {list(broker_ids)}")
    return found


class Producing:
    """A confluent-kafka producer (acks=all, idempotent) sending numbered
    values in a thread until stopped; what was acknowledged, and any error."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.acked: list[bytes] = []
        self.errors: list[Any] = []
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"produce-{topic}", daemon=True)

    def __enter__(self) -> Producing:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _report(self, error: Any, message: Any) -> None:
        if error is not None:
            self.errors.append(error)
        else:
            self.acked.append(message.value())

    def _run(self) -> None:
        sent = 0
        while not self._stop.is_set():
            for _ in range(50):
                self._producer.produce(
                    self.topic, value=f"{self.topic}-{sent}".encode(), on_delivery=self._report
                )
                sent += 1
            self._producer.flush(10)  # paces the thread by the acknowledgements

    def wait_acked(self, count: int) -> None:
        wait_for(lambda: len(self.acked) >= count, 60, what=f"{count} records acknowledged")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(60)
        assert self._producer.flush(30) == 0, "records left undelivered"


def assert_every_acknowledged_record_read(cluster: LocalCluster, producing: Producing) -> None:
    assert producing.errors == []
    values = [r.value for r in confluent_read_all(live_bootstrap(cluster), producing.topic)]
    assert len(values) == len(set(values)), "a record was written twice"
    missing = set(producing.acked) - set(values)
    assert not missing, f"{len(missing)} acknowledged records lost"


@pytest.fixture
def cluster(moldau_cluster: LocalCluster) -> Iterator[LocalCluster]:
    try:
        yield moldau_cluster
    finally:
        for broker_id in moldau_cluster.broker_ids:
            lines = moldau_cluster.log_path(broker_id).read_text(errors="replace").splitlines()
            print(f"--- broker {broker_id}")
            print("\n".join([line for line in lines if "kazoo" not in line][-40:]))


def roles(cluster: LocalCluster) -> tuple[int, int, int]:
    """(controller, another broker, a third): the third is never the controller."""
    controller = cluster.wait_until_controller()
    x, n = (b for b in cluster.broker_ids if b != controller)
    return controller, x, n


def test_a_partition_moves_while_a_producer_writes(cluster: LocalCluster) -> None:
    topic = "moving"
    create(cluster, topic, [0, 1])
    with Producing(cluster.bootstrap_servers, topic) as producing:
        producing.wait_acked(3000)
        results = admin_call(
            cluster, lambda a: a.alter_partition_reassignments({(topic, 0): [1, 2]})
        )
        assert results == {(topic, 0): None}
        wait_for(lambda: moved_to(cluster, topic, [1, 2]), 60, what="the move done")
        producing.wait_acked(len(producing.acked) + 500)  # writes go on after the leader moved
    wait_for(
        lambda: not partition_dir(cluster, 0, topic).exists(), 20, what="broker 0's copy deleted"
    )
    wait_identical(cluster, topic, [1, 2])
    assert_every_acknowledged_record_read(cluster, producing)


def test_a_cancelled_reassignment_reverts(cluster: LocalCluster) -> None:
    topic = "cancelled"
    controller, x, n = roles(cluster)
    create(cluster, topic, [controller, x])
    with Producing(cluster.bootstrap_servers, topic) as producing:
        producing.wait_acked(1000)
    # not bootstrapped from the broker about to be paused
    admin = KafkaAdminClient(
        bootstrap_servers=f"{cluster.address(controller)},{cluster.address(x)}"
    )
    tp = KafkaTopicPartition(topic, 0)
    try:
        assert admin.list_partition_reassignments() == {}  # it knows the controller now
        cluster.kill(n, signal.SIGSTOP)  # it cannot catch up
        try:
            assert admin.alter_partition_reassignments({tp: [x, n]}) == {tp: None}
            listed = admin.list_partition_reassignments([tp])
            assert listed[tp]["replicas"] == [x, n, controller]
            assert (listed[tp]["adding_replicas"], listed[tp]["removing_replicas"]) == (
                [n],
                [controller],
            )
            assert admin.alter_partition_reassignments({tp: None}) == {tp: None}
            assert admin.list_partition_reassignments([tp]) == {}
            cancel_again = admin.alter_partition_reassignments({tp: None})
            assert cancel_again[tp] is not None
            assert cancel_again[tp].__name__ == "NoReassignmentInProgressError"
        finally:
            cluster.kill(n, signal.SIGCONT)
    finally:
        admin.close()
    wait_for(
        lambda: all(
            r == sorted([controller, x]) for _, r in replicas_seen(cluster, topic).values()
        ),
        20,
        what="the original replicas back",
    )
    wait_for(lambda: not partition_dir(cluster, n, topic).exists(), 20, what="the added copy gone")
    wait_identical(cluster, topic, [controller, x])
    assert_every_acknowledged_record_read(cluster, producing)


def test_the_next_controller_finishes_a_reassignment(cluster: LocalCluster) -> None:
    topic = "handed-over"
    controller, x, n = roles(cluster)
    create(cluster, topic, [controller, x])
    with Producing(cluster.bootstrap_servers, topic) as producing:
        producing.wait_acked(1000)
    cluster.kill(n, signal.SIGSTOP)  # the reassignment cannot finish before the kill
    try:
        results = admin_call(
            cluster, lambda a: a.alter_partition_reassignments({(topic, 0): [x, n]}), avoid=n
        )
        assert results == {(topic, 0): None}
        listed = admin_call(cluster, lambda a: a.list_partition_reassignments(), avoid=n)
        assert listed[(topic, 0)] == Reassignment((x, n, controller), (n,), (controller,))
        cluster.kill(controller)
    finally:
        cluster.kill(n, signal.SIGCONT)
    wait_for(lambda: cluster.controller_id() not in (None, controller), 30, what="a new controller")
    wait_for(lambda: moved_to(cluster, topic, [x, n]), 60, what="the move finished")
    wait_identical(cluster, topic, [x, n])
    assert_every_acknowledged_record_read(cluster, producing)


def test_the_legacy_znode_moves_a_partition(cluster: LocalCluster) -> None:
    topic = "legacy"
    create(cluster, topic, [0, 1])
    with Producing(cluster.bootstrap_servers, topic) as producing:
        producing.wait_acked(1000)
    zk = KazooClient(hosts=cluster.zookeeper_connect)
    zk.start(10)
    try:
        request = zp.encode_reassignment({(topic, 0): (2, 1)})
        zk.create(zp.REASSIGN_PARTITIONS, request, makepath=True)
        wait_for(lambda: moved_to(cluster, topic, [1, 2]), 60, what="the move done")
        wait_for(lambda: zk.exists(zp.REASSIGN_PARTITIONS) is None, 20, what="the znode deleted")
    finally:
        zk.stop()
        zk.close()
    wait_for(
        lambda: not partition_dir(cluster, 0, topic).exists(), 20, what="broker 0's copy deleted"
    )
    wait_identical(cluster, topic, [1, 2])
    assert_every_acknowledged_record_read(cluster, producing)


def test_a_broker_that_is_not_the_controller_says_so(cluster: LocalCluster) -> None:
    controller, other, _ = roles(cluster)
    cancel = {"name": "x", "partitions": [{"partition_index": 0, "replicas": None}]}
    alter = {"timeout_ms": 1000, "topics": [cancel]}
    requests = [
        (ApiKey.ALTER_PARTITION_REASSIGNMENTS, 0, alter),
        (ApiKey.ALTER_PARTITION_REASSIGNMENTS, 1, alter),
        (ApiKey.LIST_PARTITION_REASSIGNMENTS, 0, {"timeout_ms": 1000, "topics": None}),
    ]

    async def send(broker_id: int) -> list[dict[str, Any]]:
        conn = await connect("127.0.0.1", cluster.port(broker_id), request_timeout_ms=10_000)
        try:
            return [await conn.request(k, b, version=v) for k, v, b in requests]
        finally:
            conn.close()

    for response in asyncio.run(send(other)):
        assert response["error_code"] == ErrorCode.NOT_CONTROLLER
    answered = asyncio.run(send(controller))
    assert [r["error_code"] for r in answered] == [0, 0, 0]
    for response in answered[:2]:
        [topic] = response["responses"]
        assert topic["partitions"][0]["error_code"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
