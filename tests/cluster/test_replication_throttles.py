"""Replication throttles (KIP-73) on real brokers: ZooKeeper, three broker
processes, confluent-kafka's AdminClient.

A follower is stopped, a topic gets a few hundred KB it has not seen, the
throttle is set with IncrementalAlterConfigs (BROKER resources for the
rates, the topic's throttled replica lists), and the follower is started
again: its catch-up takes at least bytes / rate (less the first second's
burst Kafka's rate allows), while without a throttle it is quick. The
dynamic configs are where Kafka keeps them in ZooKeeper, and DescribeConfigs
shows them with their sources.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import BrokerProcess, RawConnection, wait_for
from moldau.cluster.local import LocalCluster
from moldau.cluster.zk import paths as zp
from support.zookeeper import ZooKeeper

pytestmark = pytest.mark.cluster

LEADER_RATE = "leader.replication.throttled.rate"
FOLLOWER_RATE = "follower.replication.throttled.rate"
LEADER_REPLICAS = "leader.replication.throttled.replicas"
FOLLOWER_REPLICAS = "follower.replication.throttled.replicas"

#: Small follower fetches, so the rate is measured over many of them (Kafka
#: advises rates above 1 MB/s for replica.fetch.max.bytes of 1 MiB).
FETCH_BYTES = 32 * 1024
BROKER = 4
DESCRIBE_CONFIGS, INCREMENTAL_ALTER_CONFIGS = 32, 44
DYNAMIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG = 2, 3

#: What the stopped follower misses, and the throttle's rate.
MISSED_BYTES = 1_200_000
RATE = 200_000
#: The burst the rate meter lets through before it is over the rate: a
#: window of one second at the rate, plus one fetch.
BURST = RATE + FETCH_BYTES


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, zookeeper_server: Any
) -> Iterator[LocalCluster]:
    zookeeper = ZooKeeper(zookeeper_server, f"/moldau-throttle-{time.monotonic_ns()}")
    local = LocalCluster(
        tmp_path_factory.mktemp("throttle"),
        3,
        zookeeper_connect=zookeeper.connect,
        broker_config={
            "zookeeper.session.timeout.ms": "6000",
            "replica.fetch.max.bytes": str(FETCH_BYTES),
            "replica.fetch.backoff.ms": "200",
            "num.partitions": "1",
        },
    )
    with local:
        yield local


def admin(cluster: LocalCluster) -> Any:
    from confluent_kafka.admin import AdminClient

    live = [cluster.address(b) for b in cluster.broker_ids if cluster.running(b)]
    return AdminClient({"bootstrap.servers": ",".join(live)})


def alter(cluster: LocalCluster, resources: list[Any]) -> None:
    client = admin(cluster)
    for future in client.incremental_alter_configs(resources).values():
        future.result(20)


def broker_configs(name: str, **values: str | None) -> Any:
    """A BROKER resource setting (a value) or deleting (None) dynamic configs."""
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    entries = [
        ConfigEntry(
            key,
            value,
            incremental_operation=(
                AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
            ),
        )
        for key, value in values.items()
    ]
    return ConfigResource(ResourceType.BROKER, name, incremental_configs=entries)


def topic_configs(topic: str, **values: str) -> Any:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    entries = [
        ConfigEntry(k.replace("_", "."), v, incremental_operation=AlterConfigOpType.SET)
        for k, v in values.items()
    ]
    return ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)


def set_default(cluster: LocalCluster, **values: str | None) -> None:
    """IncrementalAlterConfigs of the cluster-wide BROKER resource "" (which
    librdkafka cannot name), sent to broker 0; a value of None deletes."""
    configs = [
        {"name": k, "config_operation": 1 if v is None else 0, "value": v}
        for k, v in values.items()
    ]
    body = {
        "resources": [{"resource_type": BROKER, "resource_name": "", "configs": configs}],
        "validate_only": False,
    }
    with RawConnection(cluster.port(0)) as connection:
        [answer] = connection.request(INCREMENTAL_ALTER_CONFIGS, 1, body)["responses"]
    assert answer["error_code"] == 0, answer


def describe_default(cluster: LocalCluster, broker_id: int) -> list[dict[str, Any]]:
    """DescribeConfigs of the BROKER resource "" on ``broker_id``."""
    body = {
        "resources": [{"resource_type": BROKER, "resource_name": "", "configuration_keys": None}],
        "include_synonyms": True,
        "include_documentation": False,
    }
    with RawConnection(cluster.port(broker_id)) as connection:
        [result] = connection.request(DESCRIBE_CONFIGS, 4, body)["results"]
    assert result["error_code"] == 0, result
    configs: list[dict[str, Any]] = result["configs"]
    return configs


def describe(cluster: LocalCluster, name: str) -> dict[str, Any]:
    from confluent_kafka.admin import ConfigResource, ResourceType

    resource = ConfigResource(ResourceType.BROKER, name)
    client = admin(cluster)
    result: dict[str, Any] = client.describe_configs([resource])[resource].result(20)
    return result


def log_size(cluster: LocalCluster, broker_id: int, topic: str) -> int:
    directory = cluster.broker_dir(broker_id) / "data" / f"{topic}-0"
    return sum(p.stat().st_size for p in directory.glob("*.log"))


def isr(cluster: LocalCluster, topic: str) -> list[int]:
    meta = admin(cluster).list_topics(topic, timeout=10).topics[topic].partitions[0]
    return sorted(meta.isrs)


def catch_up_seconds(
    cluster: LocalCluster, topic: str, throttle: Callable[[], None] | None = None
) -> float:
    """Stop broker 2 (a follower of ``topic``, led by 0), give the topic
    MISSED_BYTES it does not have, apply ``throttle``, start 2 again: how
    long until its log is the leader's."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    client = admin(cluster)
    client.create_topics([NewTopic(topic, 1, replica_assignment=[[0, 1, 2]])])[topic].result(20)
    wait_for(lambda: isr(cluster, topic) == [0, 1, 2], 20, what="an ISR of three")
    cluster.stop_broker(2)
    wait_for(lambda: isr(cluster, topic) == [0, 1], 20, what="broker 2 out of the ISR")
    producer = Producer({"bootstrap.servers": cluster.address(0), "acks": "all", "linger.ms": 5})
    value = b"x" * 10_000
    for _ in range(MISSED_BYTES // len(value)):
        producer.produce(topic, value)
        producer.poll(0)
    assert producer.flush(30) == 0
    if throttle is not None:
        throttle()
    target = log_size(cluster, 0, topic)
    started = time.monotonic()
    cluster.start_broker(2)
    wait_for(lambda: log_size(cluster, 2, topic) == target, 60, what="broker 2 caught up")
    elapsed = time.monotonic() - started
    wait_for(lambda: isr(cluster, topic) == [0, 1, 2], 20, what="broker 2 back in the ISR")
    return elapsed


@pytest.fixture
def unthrottled(cluster: LocalCluster) -> Iterator[None]:
    """Whatever a test throttles is unthrottled after it."""
    yield
    unset: dict[str, str | None] = {LEADER_RATE: None, FOLLOWER_RATE: None}
    set_default(cluster, **unset)
    for broker_id in cluster.broker_ids:  # librdkafka: one BROKER resource a call
        alter(cluster, [broker_configs(str(broker_id), **unset)])


def test_without_a_throttle_a_follower_catches_up_fast(cluster: LocalCluster) -> None:
    """Faster than any throttled catch-up can be, broker start included."""
    assert catch_up_seconds(cluster, "free") < (MISSED_BYTES - BURST) / RATE


@pytest.mark.usefixtures("unthrottled")
def test_a_leader_throttle_slows_an_out_of_sync_follower(cluster: LocalCluster) -> None:
    """The leader's own rate (BROKER resource "0"), partition 0 throttled on it."""
    throttle = [
        broker_configs("0", **{LEADER_RATE: str(RATE)}),
        topic_configs("led", **{LEADER_REPLICAS.replace(".", "_"): "0:0"}),
    ]
    seconds = catch_up_seconds(cluster, "led", lambda: alter(cluster, throttle))
    assert seconds >= (MISSED_BYTES - BURST) / RATE


@pytest.mark.usefixtures("unthrottled")
def test_a_follower_throttle_set_for_every_broker_slows_the_follower(
    cluster: LocalCluster,
) -> None:
    """The cluster default (BROKER resource ""), read by broker 2 as it starts."""

    def throttle() -> None:
        set_default(cluster, **{FOLLOWER_RATE: str(RATE)})
        alter(cluster, [topic_configs("followed", **{FOLLOWER_REPLICAS.replace(".", "_"): "*"})])

    seconds = catch_up_seconds(cluster, "followed", throttle)
    assert seconds >= (MISSED_BYTES - BURST) / RATE


@pytest.mark.usefixtures("unthrottled")
def test_dynamic_configs_live_in_zookeeper_and_describe_with_their_sources(
    cluster: LocalCluster,
) -> None:
    from confluent_kafka.admin import ConfigSource
    from kazoo.client import KazooClient

    set_default(cluster, **{LEADER_RATE: "5000000", FOLLOWER_RATE: "6000000"})
    alter(cluster, [broker_configs("2", **{LEADER_RATE: "7000000"})])

    zookeeper = KazooClient(cluster.zookeeper_connect)
    zookeeper.start(10)
    try:
        assert json.loads(zookeeper.get(zp.broker_config_path(zp.DEFAULT_ENTITY))[0]) == {
            "version": 1,
            "config": {FOLLOWER_RATE: "6000000", LEADER_RATE: "5000000"},
        }
        assert json.loads(zookeeper.get(zp.broker_config_path("2"))[0])["config"] == {
            LEADER_RATE: "7000000"
        }
        changes = sorted(zookeeper.get_children(zp.CONFIG_CHANGES))[-2:]
        assert [json.loads(zookeeper.get(f"{zp.CONFIG_CHANGES}/{c}")[0]) for c in changes] == [
            {"version": 2, "entity_path": "brokers/<default>"},
            {"version": 2, "entity_path": "brokers/2"},
        ]
    finally:
        zookeeper.stop()
        zookeeper.close()

    expected = {
        LEADER_RATE: ("5000000", DYNAMIC_DEFAULT_BROKER_CONFIG),
        FOLLOWER_RATE: ("6000000", DYNAMIC_DEFAULT_BROKER_CONFIG),
    }

    def default_on_1() -> bool:  # told by the notification
        configs = describe_default(cluster, 1)
        return {c["name"]: (c["value"], c["config_source"]) for c in configs} == expected

    wait_for(default_on_1, 10, what="the default on broker 1")

    def broker_2() -> dict[str, Any] | None:
        # Broker 2 wrote its own; the default reached it by notification.
        configs = describe(cluster, "2")
        return configs if FOLLOWER_RATE in configs else None

    mine = wait_for(broker_2, 10, what="the default on broker 2")
    rate = mine[LEADER_RATE]
    assert (rate.value, rate.source) == ("7000000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert LEADER_RATE in rate.synonyms  # (keyed by name: the first of its two)
    rate = mine[FOLLOWER_RATE]
    assert (rate.value, rate.source) == (
        "6000000",
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value,
    )
    assert mine["broker.id"].value == "2"  # with its static configs


@pytest.mark.usefixtures("unthrottled")
def test_alter_configs_replaces_a_brokers_whole_set_of_dynamic_configs(
    cluster: LocalCluster,
) -> None:
    from confluent_kafka.admin import ConfigResource, ResourceType

    alter(cluster, [broker_configs("1", **{LEADER_RATE: "1000000", FOLLOWER_RATE: "2000000"})])
    resource = ConfigResource(ResourceType.BROKER, "1", set_config={FOLLOWER_RATE: "3000000"})
    client = admin(cluster)
    client.alter_configs([resource])[resource].result(20)
    configs = describe(cluster, "1")
    assert LEADER_RATE not in configs  # left out: gone, as AlterConfigs does
    assert configs[FOLLOWER_RATE].value == "3000000"


def test_a_single_node_refuses_throttles_it_would_have_nothing_to_apply_to(
    broker: BrokerProcess,
) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": broker.bootstrap})
    [future] = client.incremental_alter_configs(
        [broker_configs("0", **{LEADER_RATE: str(RATE)})]
    ).values()
    with pytest.raises(KafkaException) as caught:
        future.result(20)
    error = caught.value.args[0]
    assert error.code() == KafkaError.INVALID_REQUEST
    assert "single node" in error.str()


def test_what_cannot_change_at_run_time_is_refused_as_kafka_refuses_it(
    cluster: LocalCluster,
) -> None:
    from confluent_kafka import KafkaError, KafkaException

    def refusal(resource: Any) -> tuple[int, str]:
        client = admin(cluster)
        with pytest.raises(KafkaException) as caught:
            for future in client.incremental_alter_configs([resource]).values():
                future.result(20)
        error = caught.value.args[0]
        return error.code(), error.str()

    code, message = refusal(broker_configs("1", **{"log.retention.ms": "1000"}))
    assert code == KafkaError.INVALID_REQUEST
    assert "Cannot update these configs dynamically: Set(log.retention.ms)" in message
    code, message = refusal(broker_configs("2", **{LEADER_RATE: "-1"}))
    assert code == KafkaError.INVALID_REQUEST
    assert "Value must be at least 0" in message
    from confluent_kafka.admin import NewTopic

    client = admin(cluster)  # kept: the future fails once its client is collected
    client.create_topics([NewTopic("refused", 1, 3)])["refused"].result(20)
    code, message = refusal(topic_configs("refused", **{LEADER_REPLICAS.replace(".", "_"): "0"}))
    assert "must be the literal '*' or a list of replicas" in message
