"""Dynamic broker configs without a server: Kafka's checks and messages, which
entity a BROKER resource names, and which value is in force (the broker's
own, else the cluster default, else unlimited)."""

from __future__ import annotations

import pytest

from moldau.broker.dynamic_config import (
    DYNAMIC_BROKER_CONFIG,
    DYNAMIC_DEFAULT_BROKER_CONFIG,
    DynamicBrokerConfig,
    entity_of,
    validate,
)
from moldau.broker.topic_config import InvalidTopicConfig, validate_topic_configs
from moldau.cluster.zk.paths import DEFAULT_ENTITY, broker_config_path
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.replication.quota import (
    FOLLOWER_RATE,
    LEADER_RATE,
    LEADER_REPLICAS,
    UNLIMITED,
    ReplicationQuotas,
)


def test_a_broker_resource_names_this_broker_or_the_default() -> None:
    assert entity_of("", 3) == DEFAULT_ENTITY
    assert entity_of("3", 3) == "3"
    assert broker_config_path(entity_of("", 3)) == "/config/brokers/<default>"
    with pytest.raises(KafkaError) as other:
        entity_of("4", 3)
    assert other.value.code == ErrorCode.INVALID_REQUEST
    assert other.value.message == "Unexpected broker id, expected 3, but received 4"
    with pytest.raises(KafkaError) as garbage:
        entity_of("x", 3)
    assert garbage.value.message == "Node id must be an integer, but it is: x"


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ({"log.retention.ms": "1", "zzz": "2"}, "Cannot update these configs dynamically: Set"),
        ({LEADER_RATE: "-1"}, "Value must be at least 0"),
        ({LEADER_RATE: "fast"}, "Not a number of type LONG"),
        ({LEADER_RATE: str(2**63)}, "Not a number of type LONG"),
        ({FOLLOWER_RATE: None}, "Null value not supported for : " + FOLLOWER_RATE),
    ],
)
def test_what_kafka_refuses_is_invalid_request(
    configs: dict[str, str | None], message: str
) -> None:
    with pytest.raises(KafkaError) as refused:
        validate(configs)
    assert refused.value.code == ErrorCode.INVALID_REQUEST
    assert message in refused.value.message


def test_valid_rates_pass_as_set() -> None:
    assert validate({LEADER_RATE: " 1000 ", FOLLOWER_RATE: "0"}) == {
        LEADER_RATE: "1000",
        FOLLOWER_RATE: "0",
    }


def test_a_brokers_own_value_wins_over_the_default_and_reaches_the_throttles() -> None:
    quotas = ReplicationQuotas.create(1, lambda topic: None, lambda: 0)
    dynamic = DynamicBrokerConfig(1)
    dynamic.quotas = quotas
    dynamic.update(DEFAULT_ENTITY, {LEADER_RATE: "500", FOLLOWER_RATE: "600"})
    dynamic.update("1", {LEADER_RATE: "100", "bogus": "1"})  # bogus: ignored
    dynamic.update("2", {FOLLOWER_RATE: "1"})  # another broker's: not this one's
    assert (quotas.leader.bound, quotas.follower.bound) == (100, 600)
    assert dynamic.describe("1") == [
        (FOLLOWER_RATE, "600", DYNAMIC_DEFAULT_BROKER_CONFIG, [("600", 3)]),
        (LEADER_RATE, "100", DYNAMIC_BROKER_CONFIG, [("100", 2), ("500", 3)]),
    ]
    assert [name for name, *_ in dynamic.describe(DEFAULT_ENTITY)] == [FOLLOWER_RATE, LEADER_RATE]
    dynamic.update(DEFAULT_ENTITY, {})
    dynamic.update("1", {})
    assert (quotas.leader.bound, quotas.follower.bound) == (UNLIMITED, UNLIMITED)


def test_topic_replica_lists_are_checked_as_kafka_checks_them() -> None:
    assert validate_topic_configs({LEADER_REPLICAS: "0:1,1:2"}) == {LEADER_REPLICAS: "0:1,1:2"}
    with pytest.raises(InvalidTopicConfig, match="Invalid value 0 for configuration"):
        validate_topic_configs({LEADER_REPLICAS: "0"})
