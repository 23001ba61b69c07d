"""Preferred leaders end to end: real ZooKeeper, three broker processes.

A topic of six partitions with three replicas each has two preferred
leaders per broker. A broker killed with SIGKILL loses its leaderships;
restarted, it catches up and rejoins every ISR but leads nothing until an
election hands its partitions back: one asked for (confluent-kafka's and
kafka-python's elect_leaders, ``moldau cluster elect-leaders``), or the
controller's auto rebalance (Kafka's, here checked every 2 s).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_for
from moldau.client.connection import connect
from moldau.cluster.local import LocalCluster
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode

pytestmark = pytest.mark.cluster

TOPIC = "spread"
PARTITIONS = 6
BASE_CONFIG = {"zookeeper.session.timeout.ms": "3000", "replica.fetch.backoff.ms": "200"}
MOLDAU = str(Path(sys.executable).parent / "moldau")


@pytest.fixture
def manual(tmp_path: Path) -> Iterator[LocalCluster]:
    config = {**BASE_CONFIG, "auto.leader.rebalance.enable": "false"}
    yield from _cluster(tmp_path, config)


@pytest.fixture
def automatic(tmp_path: Path) -> Iterator[LocalCluster]:
    yield from _cluster(tmp_path, {**BASE_CONFIG, "leader.imbalance.check.interval.seconds": "2"})


def _cluster(tmp_path: Path, config: dict[str, str]) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path / "cluster", 3, broker_config=config) as cluster:
        try:
            yield cluster
        finally:
            for broker_id in cluster.broker_ids:
                lines = cluster.log_path(broker_id).read_text(errors="replace").splitlines()
                print(f"--- broker {broker_id}")
                print("\n".join([line for line in lines if "kazoo" not in line][-30:]))


def partitions(address: str) -> dict[int, tuple[int, list[int], list[int]]] | None:
    """Per partition (leader, replicas, ISR) as one broker describes them."""
    found = AdminClient({"bootstrap.servers": address}).list_topics(TOPIC, timeout=10)
    topic = found.topics.get(TOPIC)
    if topic is None or topic.error is not None or len(topic.partitions) != PARTITIONS:
        return None
    return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in topic.partitions.values()}


def preferred_everywhere(cluster: LocalCluster) -> bool:
    """Every broker's metadata shows each partition led by its first replica."""
    for broker_id in cluster.broker_ids:
        seen = partitions(cluster.address(broker_id))
        if seen is None or any(leader != replicas[0] for leader, replicas, _ in seen.values()):
            return False
    return True


def set_up_and_bounce(cluster: LocalCluster) -> tuple[int, list[int]]:
    """Create the topic, kill -9 a broker that is not the controller, restart
    it and wait until it is back in every ISR; returns it and the partitions
    it prefers (now led by others)."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)], operation_timeout=20)[TOPIC].result(30)
    wait_for(lambda: preferred_everywhere(cluster), 20, what="every partition led")
    first = partitions(cluster.address(0))
    assert first is not None
    assert Counter(leader for leader, _, _ in first.values()) == {0: 2, 1: 2, 2: 2}
    controller = cluster.wait_until_controller()
    victim = next(b for b in cluster.broker_ids if b != controller)
    prefers = sorted(p for p, (_, replicas, _) in first.items() if replicas[0] == victim)
    cluster.kill(victim)
    address = cluster.address(controller)

    def moved() -> bool:
        seen = partitions(address)
        return seen is not None and all(seen[p][0] not in (victim, -1) for p in prefers)

    wait_for(moved, 20, what=f"broker {victim}'s leaderships moved")
    cluster.start_broker(victim)

    def back_in_sync() -> bool:
        seen = partitions(address)
        return seen is not None and all(victim in isr for _, _, isr in seen.values())

    wait_for(back_in_sync, 30, what=f"broker {victim} back in every ISR")
    return victim, prefers


def elect_raw(cluster: LocalCluster, broker_id: int, version: int) -> dict[int, int]:
    """ElectLeaders (preferred) for the whole topic straight to one broker:
    per partition the error code."""
    body = {
        "election_type": 0,
        "topic_partitions": [{"topic": TOPIC, "partitions": list(range(PARTITIONS))}],
        "timeout_ms": 10_000,
    }

    async def send() -> dict[str, Any]:
        conn = await connect("127.0.0.1", cluster.port(broker_id), request_timeout_ms=20_000)
        try:
            return await conn.request(ApiKey.ELECT_LEADERS, body, version=version)
        finally:
            conn.close()

    response = asyncio.run(send())
    assert response.get("error_code", 0) == 0
    [topic] = response["replica_election_results"]
    return {p["partition_id"]: p["error_code"] for p in topic["partition_result"]}


def elect_cli(cluster: LocalCluster, partition: int) -> subprocess.CompletedProcess[str]:
    """``moldau cluster elect-leaders`` for one partition of the topic."""
    where = ["--dir", str(cluster.directory), "--topic", TOPIC, "--partition", str(partition)]
    command = [MOLDAU, "cluster", "elect-leaders", *where]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_elect_leaders_gives_leadership_back(manual: LocalCluster) -> None:
    cluster = manual
    victim, prefers = set_up_and_bounce(cluster)
    one, other = prefers
    seen = partitions(cluster.address(victim))
    assert seen is not None and all(seen[p][0] != victim for p in prefers)  # no auto rebalance

    cli = elect_cli(cluster, one)
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == f"{TOPIC}-{one}  elected"

    def led_by_victim() -> bool:
        seen = partitions(cluster.address(victim))
        return seen is not None and seen[one][0] == victim

    wait_for(led_by_victim, 10, what=f"partition {one} led by broker {victim} again")

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    results = admin.elect_leaders(ElectionType.PREFERRED, None).result(60)
    outcomes = {tp.partition: err for tp, err in results.items() if tp.topic == TOPIC}
    assert sorted(outcomes) == list(range(PARTITIONS))
    assert outcomes[other] is None  # elected
    for partition, error in outcomes.items():
        if partition != other:
            assert error is not None and error.code() == KafkaError.ELECTION_NOT_NEEDED
    wait_for(lambda: preferred_everywhere(cluster), 20, what="preferred leaders everywhere")
    seen = partitions(cluster.address(victim))
    assert seen is not None
    assert Counter(leader for leader, _, _ in seen.values()) == {0: 2, 1: 2, 2: 2}

    from kafka.admin import KafkaAdminClient

    kafka_python = KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers)
    try:  # nothing left to elect: ELECTION_NOT_NEEDED everywhere, which it ignores
        kafka_python.elect_leaders(0, {TOPIC: list(range(PARTITIONS))})
    finally:
        kafka_python.close()

    controller = cluster.wait_until_controller()
    other_broker = next(b for b in cluster.broker_ids if b != controller)
    for version in (0, 1, 2):
        assert set(elect_raw(cluster, controller, version).values()) == {
            ErrorCode.ELECTION_NOT_NEEDED
        }
        assert set(elect_raw(cluster, other_broker, version).values()) == {ErrorCode.NOT_CONTROLLER}

    unknown = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(TOPIC, 99)]).result(30)
    [error] = unknown.values()
    assert error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    failing = elect_cli(cluster, 99)
    assert failing.returncode == 1
    assert "UNKNOWN_TOPIC_OR_PARTITION" in failing.stdout


def test_auto_rebalance_gives_leadership_back_by_itself(automatic: LocalCluster) -> None:
    cluster = automatic
    set_up_and_bounce(cluster)
    # The check runs every 2 s: once the ISR has the broker back, one check
    # (plus the LeaderAndIsr and UpdateMetadata it sends) restores the balance.
    wait_for(lambda: preferred_everywhere(cluster), 30, what="the auto rebalance")
