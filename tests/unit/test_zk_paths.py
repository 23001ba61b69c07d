"""Kafka 3.9's znode layout and payloads, checked against the JSON Kafka writes."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moldau.cluster.zk import paths as zp


def test_paths_match_kafka_layout() -> None:
    assert zp.broker_path(3) == "/brokers/ids/3"
    assert zp.topic_path("t") == "/brokers/topics/t"
    assert zp.partition_state_path("t", 4) == "/brokers/topics/t/partitions/4/state"
    assert zp.topic_config_path("t") == "/config/topics/t"
    assert zp.delete_topic_path("t") == "/admin/delete_topics/t"
    assert zp.config_change_create_path() == "/config/changes/config_change_"
    assert zp.isr_change_create_path() == "/isr_change_notification/isr_change_"
    assert "/latest_producer_id_block" in zp.PERSISTENT_PATHS
    assert "/config/topics" in zp.PERSISTENT_PATHS
    assert "/brokers/seqid" in zp.PERSISTENT_PATHS


@pytest.mark.parametrize("bad", ["", "a/b", ".", ".."])
def test_path_components_reject_slashes_and_dots(bad: str) -> None:
    with pytest.raises(ValueError):
        zp.topic_path(bad)


@pytest.mark.parametrize(
    ("connect", "hosts", "chroot"),
    [
        ("127.0.0.1:2181", "127.0.0.1:2181", ""),
        ("a:1,b:2/kafka", "a:1,b:2", "/kafka"),
        ("a:1/kafka/prod/", "a:1", "/kafka/prod"),
        ("a:1/", "a:1", ""),
    ],
)
def test_parse_connect(connect: str, hosts: str, chroot: str) -> None:
    assert zp.parse_connect(connect) == (hosts, chroot)


def test_parse_connect_needs_a_host() -> None:
    with pytest.raises(ValueError):
        zp.parse_connect("/chroot")


# As a Kafka 3.9 broker registers itself (zookeeper-shell get /brokers/ids/1).
KAFKA_BROKER_V5 = (
    b'{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT",'
    b'"REPLICATION":"SSL"},"endpoints":["PLAINTEXT://localhost:9092",'
    b'"REPLICATION://[::1]:9093"],"jmx_port":-1,"port":9092,"host":"localhost",'
    b'"version":5,"timestamp":"1700000000123","rack":"r1"}'
)


def test_broker_v5_from_kafka() -> None:
    reg = zp.decode_broker(1, KAFKA_BROKER_V5)
    assert reg.broker_id == 1
    assert reg.endpoints == (
        zp.Endpoint("PLAINTEXT", "localhost", 9092, "PLAINTEXT"),
        zp.Endpoint("REPLICATION", "::1", 9093, "SSL"),
    )
    assert reg.rack == "r1"
    assert reg.timestamp_ms == 1700000000123
    assert reg.jmx_port == -1
    assert reg.version == 5


def test_broker_encode_is_kafkas_json() -> None:
    reg = zp.decode_broker(1, KAFKA_BROKER_V5)
    assert json.loads(zp.encode_broker(reg)) == json.loads(KAFKA_BROKER_V5)
    assert zp.decode_broker(1, zp.encode_broker(reg)) == reg


def test_broker_without_plaintext_has_null_host() -> None:
    reg = zp.BrokerRegistration(2, (zp.Endpoint("SSL", "h", 9093, "SSL"),))
    obj = json.loads(zp.encode_broker(reg))
    assert obj["host"] is None
    assert obj["port"] == -1
    assert "rack" not in obj


def test_broker_v1_and_v4_still_read() -> None:
    v1 = zp.decode_broker(
        0, b'{"version":1,"host":"h","port":9092,"jmx_port":9999,"timestamp":"1"}'
    )
    assert v1.endpoints == (zp.Endpoint("PLAINTEXT", "h", 9092),)
    # v2/v3 carry no security protocol map: listener names are protocol names.
    v3 = zp.decode_broker(
        0,
        b'{"version":3,"host":"h","port":9092,"jmx_port":-1,"timestamp":"1",'
        b'"endpoints":["PLAINTEXT://h:9092","SSL://h:9093"],"rack":"dc1"}',
    )
    assert [e.security_protocol for e in v3.endpoints] == ["PLAINTEXT", "SSL"]
    assert v3.rack == "dc1"
    assert v3.features == {}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"nope",
        b"[1]",
        b'{"version":0}',
        b'{"version":4,"endpoints":["UNKNOWN://h:1"],"listener_security_protocol_map":{}}',
        b'{"version":4,"endpoints":"PLAINTEXT://h:1"}',
        b'{"version":5,"endpoints":[],"jmx_port":"x"}',
        b'{"version":5,"endpoints":[],"timestamp":[1]}',
    ],
)
def test_broker_garbage_raises(data: bytes) -> None:
    with pytest.raises(zp.ZkDataError):
        zp.decode_broker(1, data)


KAFKA_CONTROLLER = (
    b'{"version":2,"brokerid":1,"timestamp":"1700000000123","kraftControllerEpoch":-1}'
)


def test_controller() -> None:
    reg = zp.decode_controller(KAFKA_CONTROLLER)
    assert reg == zp.ControllerRegistration(1, 1700000000123, -1)
    assert zp.encode_controller(reg) == KAFKA_CONTROLLER
    old = zp.decode_controller(b'{"version":1,"brokerid":2,"timestamp":"5"}')
    assert old.broker_id == 2
    assert old.kraft_controller_epoch is None
    with pytest.raises(zp.ZkDataError):
        zp.decode_controller(b'{"version":2,"brokerid":1,"kraftControllerEpoch":"x"}')


def test_controller_epoch_is_a_bare_number() -> None:
    assert zp.encode_controller_epoch(7) == b"7"
    assert zp.decode_controller_epoch(b"7") == 7
    with pytest.raises(zp.ZkDataError):
        zp.decode_controller_epoch(b"")


def test_kafka_uuid_string() -> None:
    # Kafka's Uuid.toString of the 16 bytes 00..0f.
    topic_id = uuid.UUID(bytes=bytes(range(16)))
    assert zp.kafka_uuid(topic_id) == "AAECAwQFBgcICQoLDA0ODw"
    assert zp.parse_kafka_uuid("AAECAwQFBgcICQoLDA0ODw") == topic_id
    with pytest.raises(zp.ZkDataError):
        zp.parse_kafka_uuid("short")


KAFKA_TOPIC_V3 = (
    b'{"partitions":{"0":[1,2,3],"1":[2,3,1]},"topic_id":"AAECAwQFBgcICQoLDA0ODw",'
    b'"adding_replicas":{"1":[1]},"removing_replicas":{},"version":3}'
)


def test_topic_assignment_v3() -> None:
    topic = zp.decode_topic("t", KAFKA_TOPIC_V3)
    assert topic.topic_id == uuid.UUID(bytes=bytes(range(16)))
    assert topic.partitions == {
        0: zp.ReplicaAssignment((1, 2, 3)),
        1: zp.ReplicaAssignment((2, 3, 1), adding=(1,)),
    }
    assert zp.encode_topic(topic) == KAFKA_TOPIC_V3


def test_topic_assignment_older_versions() -> None:
    v1 = zp.decode_topic("t", b'{"version":1,"partitions":{"0":[0]}}')
    assert v1.topic_id is None
    assert v1.partitions == {0: zp.ReplicaAssignment((0,))}
    assert zp.decode_topic("t", b'{"version":2}').partitions == {}


def test_target_replicas_drop_removing() -> None:
    assert zp.ReplicaAssignment((1, 2, 3, 4), adding=(4,), removing=(1,)).target_replicas() == (
        2,
        3,
        4,
    )


def test_origin_replicas_drop_adding_and_reassignments_in_progress() -> None:
    moving = zp.ReplicaAssignment((2, 3, 1), adding=(3,), removing=(1,))
    assert moving.origin_replicas() == (2, 1) and moving.is_reassigning
    assert not zp.ReplicaAssignment((1, 2)).is_reassigning
    topic = zp.decode_topic("t", KAFKA_TOPIC_V3)
    assert zp.reassignments_in_progress({"t": topic, "u": zp.TopicAssignment(None, {})}) == {
        ("t", 1): zp.ReplicaAssignment((2, 3, 1), adding=(1,))
    }


@pytest.mark.parametrize(
    "data",
    [b'{"partitions":{"x":[1]}}', b'{"partitions":{"0":["1"]}}', b'{"partitions":[]}'],
)
def test_topic_garbage_raises(data: bytes) -> None:
    with pytest.raises(zp.ZkDataError):
        zp.decode_topic("t", data)


KAFKA_STATE = b'{"controller_epoch":1,"leader":1,"version":1,"leader_epoch":0,"isr":[1,2,3]}'


def test_partition_state() -> None:
    state = zp.decode_partition_state(KAFKA_STATE, zk_version=4)
    assert state == zp.PartitionState(1, 0, (1, 2, 3), 1, zp.RECOVERED, 4)
    assert zp.encode_partition_state(state) == KAFKA_STATE


def test_partition_state_recovering_is_written() -> None:
    state = zp.PartitionState(2, 5, (2,), 3, zp.RECOVERING)
    data = zp.encode_partition_state(state)
    assert json.loads(data)["leader_recovery_state"] == 1
    assert zp.decode_partition_state(data) == state
    with pytest.raises(zp.ZkDataError):
        zp.decode_partition_state(
            data.replace(b'"leader_recovery_state":1', b'"leader_recovery_state":9')
        )


def test_entity_config() -> None:
    kafka = b'{"version":1,"config":{"cleanup.policy":"compact","retention.ms":"1000"}}'
    assert zp.decode_entity_config(kafka) == {"cleanup.policy": "compact", "retention.ms": "1000"}
    assert zp.encode_entity_config({"retention.ms": "1000", "cleanup.policy": "compact"}) == kafka
    assert zp.decode_entity_config(b"") == {}
    assert zp.decode_entity_config(b'{"version":1}') == {}


def test_config_change_notification() -> None:
    assert zp.encode_config_change("topics", "t") == b'{"version":2,"entity_path":"topics/t"}'
    assert zp.decode_config_change(b'{"version":2,"entity_path":"topics/t"}') == ("topics", "t")
    v1 = b'{"version":1,"entity_type":"topics","entity_name":"t"}'
    assert zp.decode_config_change(v1) == ("topics", "t")


def test_partition_lists() -> None:
    kafka = b'{"version":1,"partitions":[{"topic":"a","partition":0},{"topic":"b","partition":2}]}'
    expected = frozenset({("a", 0), ("b", 2)})
    assert zp.decode_isr_change(kafka) == expected
    assert zp.decode_preferred_replica_election(kafka) == expected
    assert zp.encode_isr_change(expected) == kafka
    assert zp.encode_preferred_replica_election(expected) == kafka


def test_reassignment() -> None:
    kafka = b'{"version":1,"partitions":[{"topic":"a","partition":0,"replicas":[2,1]}]}'
    assert zp.decode_reassignment(kafka) == {("a", 0): (2, 1)}
    assert zp.encode_reassignment({("a", 0): [2, 1]}) == kafka


def test_cluster_id_version_is_a_string() -> None:
    kafka = b'{"version":"1","id":"q1Sh-9_ISia_zwGINzRvyQ"}'
    assert zp.decode_cluster_id(kafka) == "q1Sh-9_ISia_zwGINzRvyQ"
    assert zp.encode_cluster_id("q1Sh-9_ISia_zwGINzRvyQ") == kafka
    with pytest.raises(zp.ZkDataError):
        zp.decode_cluster_id(b'{"version":"1"}')


def test_producer_id_block() -> None:
    kafka = b'{"version":1,"broker":1,"block_start":"1000","block_end":"1999"}'
    block = zp.decode_producer_id_block(kafka)
    assert block == zp.ProducerIdBlock(1, 1000, 1000)
    assert block.last == 1999
    assert zp.encode_producer_id_block(block) == kafka
    assert block.next_block(2) == zp.ProducerIdBlock(2, 2000, 1000)
    assert zp.decode_producer_id_block(b"") is None
    with pytest.raises(OverflowError):
        zp.ProducerIdBlock(0, (1 << 63) - 1000).next_block(0)
    with pytest.raises(zp.ZkDataError):
        zp.decode_producer_id_block(b'{"version":1,"broker":1,"block_start":"9","block_end":"1"}')


ids = st.integers(0, 2**31 - 1)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=20)


@given(
    leader=st.integers(-2, 2**31 - 1),
    epoch=st.integers(0, 2**31 - 1),
    isr=st.lists(ids, max_size=6, unique=True),
    controller_epoch=ids,
    recovery=st.sampled_from([zp.RECOVERED, zp.RECOVERING]),
)
def test_partition_state_round_trips(
    leader: int, epoch: int, isr: list[int], controller_epoch: int, recovery: int
) -> None:
    state = zp.PartitionState(leader, epoch, tuple(isr), controller_epoch, recovery)
    assert zp.decode_partition_state(zp.encode_partition_state(state)) == state


@given(
    topic_id=st.none() | st.uuids(),
    partitions=st.dictionaries(
        st.integers(0, 1000),
        st.tuples(
            st.lists(ids, min_size=1, max_size=5, unique=True),
            st.lists(ids, max_size=2, unique=True),
            st.lists(ids, max_size=2, unique=True),
        ),
        max_size=8,
    ),
)
def test_topic_assignment_round_trips(
    topic_id: uuid.UUID | None, partitions: dict[int, tuple[list[int], list[int], list[int]]]
) -> None:
    topic = zp.TopicAssignment(
        topic_id,
        {
            p: zp.ReplicaAssignment(tuple(r), tuple(a), tuple(d))
            for p, (r, a, d) in partitions.items()
        },
    )
    assert zp.decode_topic("t", zp.encode_topic(topic)) == topic


@given(
    broker_id=ids,
    endpoints=st.lists(
        st.tuples(
            names.map(str.upper), st.sampled_from(["h", "10.0.0.1", "::1"]), st.integers(0, 65535)
        ),
        min_size=1,
        max_size=3,
        unique_by=lambda e: e[0],
    ),
    rack=st.none() | names,
    timestamp=st.integers(0, 2**62),
)
def test_broker_round_trips(
    broker_id: int, endpoints: list[tuple[str, str, int]], rack: str | None, timestamp: int
) -> None:
    reg = zp.BrokerRegistration(
        broker_id,
        tuple(zp.Endpoint(name, host, port, "SSL") for name, host, port in endpoints),
        rack,
        timestamp,
    )
    assert zp.decode_broker(broker_id, zp.encode_broker(reg)) == reg
