"""A cluster with an inside and an outside listener: clients are given the
addresses of the listener they came in on, and the brokers replicate (and
reach their controller) on ``inter.broker.listener.name``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BrokerProcess, free_port
from support.zookeeper import ZooKeeper


def _ports(address: str) -> list[int] | None:
    brokers = AdminClient({"bootstrap.servers": address}).list_topics(timeout=10).brokers
    return sorted(b.port for b in brokers.values()) if len(brokers) == 2 else None


def _wait(condition: Callable[[], list[int] | None], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out waiting for both brokers"
        time.sleep(0.1)
    return value


def test_clients_get_their_listener_and_brokers_replicate_on_the_inside_one(
    broker_factory: Callable[..., BrokerProcess], zookeeper: ZooKeeper
) -> None:
    inside = [free_port(), free_port()]
    outside = [free_port(), free_port()]
    for broker_id in (0, 1):
        config = {
            "broker.id": str(broker_id),
            "zookeeper.connect": zookeeper.connect,
            "zookeeper.session.timeout.ms": "6000",
            "listeners": f"INSIDE://127.0.0.1:{inside[broker_id]},"
            f"OUTSIDE://127.0.0.1:{outside[broker_id]}",
            "listener.security.protocol.map": "INSIDE:PLAINTEXT,OUTSIDE:PLAINTEXT",
            "inter.broker.listener.name": "INSIDE",
            "offsets.topic.replication.factor": "2",
        }
        broker_factory(port=inside[broker_id], **config)
    outside_address = f"127.0.0.1:{outside[1]}"
    assert _wait(lambda: _ports(outside_address), 30) == sorted(outside)
    assert _wait(lambda: _ports(f"127.0.0.1:{inside[0]}"), 30) == sorted(inside)

    # acks=all through the outside listener: acknowledged only once the
    # follower fetched it, which it does on the inside listener.
    topic = f"two-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": outside_address})
    admin.create_topics([NewTopic(topic, 2, 2)], operation_timeout=20)[topic].result(30)
    producer = Producer({"bootstrap.servers": outside_address, "acks": "all"})
    for i in range(20):
        producer.produce(topic, str(i).encode(), partition=i % 2)
    assert producer.flush(30) == 0
    described = admin.list_topics(topic, timeout=10).topics[topic].partitions
    assert all(sorted(p.isrs) == [0, 1] for p in described.values())
