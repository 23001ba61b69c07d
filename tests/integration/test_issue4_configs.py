"""Topic configs through the admin APIs, taking effect on a running broker.

IncrementalAlterConfigs changes retention and the cleanup policy of a topic
that already holds data, and the next retention check or cleaner pass acts
on it without a restart. DescribeConfigs tells where each value comes from.
Invalid configs are refused with INVALID_CONFIG and a message naming the key,
by CreateTopics as well as by the alter APIs.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaError,
    KafkaException,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)
from kafka.admin import ConfigResource as KafkaConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient
from test_issue4_compaction import (
    SEGMENT_BYTES,
    fully_compacted,
    produce,
    read_from_start,
    roll_past,
    write_versions,
)
from test_issue4_retention import produce_batches, watermarks

from conftest import BrokerProcess, RawConnection, create_topic, wait_for

INVALID_CONFIG = 40
CREATE_TOPICS = 19


@pytest.fixture
def live_broker(broker_factory: Any) -> BrokerProcess:
    """Short timers, and one broker-level topic default set explicitly."""
    broker: BrokerProcess = broker_factory(
        log_retention_check_interval_ms="100",
        log_cleaner_backoff_ms="50",
        log_cleaner_delete_retention_ms="100",
    )
    return broker


def alter(bootstrap: str, topic: str, *changes: tuple[str, str | None, AlterConfigOpType]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [ConfigEntry(name, value, incremental_operation=op) for name, value, op in changes]
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
    admin.incremental_alter_configs([resource])[resource].result(10)


def describe(bootstrap: str, topic: str) -> dict[str, Any]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return dict(admin.describe_configs([resource])[resource].result(10))


def test_retention_ms_altered_on_a_live_topic_expires_data(live_broker: BrokerProcess) -> None:
    bootstrap, topic = live_broker.bootstrap, "retention-altered"
    create_topic(bootstrap, topic, 1, **{"segment.bytes": "1024"})
    produce_batches(bootstrap, topic, batches=6, per_batch=5, age_ms=3_600_000)
    produce_batches(bootstrap, topic, batches=2, per_batch=5)
    assert watermarks(bootstrap, topic) == (0, 40), "kept for the default seven days"
    alter(bootstrap, topic, ("retention.ms", "60000", AlterConfigOpType.SET))
    low, high = wait_for(
        lambda: (marks := watermarks(bootstrap, topic))[0] > 0 and marks, 10, 0.1, "retention"
    )
    assert 0 < low <= 30 and high == 40
    entry = describe(bootstrap, topic)["retention.ms"]
    assert (entry.value, entry.source) == ("60000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)


def test_cleanup_policy_appended_on_a_live_topic_compacts_it(live_broker: BrokerProcess) -> None:
    bootstrap, topic = live_broker.bootstrap, "policy-altered"
    create_topic(
        bootstrap,
        topic,
        1,
        **{"segment.bytes": str(SEGMENT_BYTES), "min.cleanable.dirty.ratio": "0.01"},
    )
    model: dict[bytes, bytes | None] = write_versions(bootstrap, topic, rounds=4)
    model.update(roll_past(bootstrap, topic, "c"))
    assert len(read_from_start(bootstrap, topic)) == 4 * 12 + 3, "a delete topic is not compacted"
    alter(bootstrap, topic, ("cleanup.policy", "compact", AlterConfigOpType.APPEND))
    assert describe(bootstrap, topic)["cleanup.policy"].value == "delete,compact"
    wait_for(lambda: fully_compacted(bootstrap, topic, model), 20, 0.2, "a compacted log")


def test_describe_configs_names_sources_and_synonyms(live_broker: BrokerProcess) -> None:
    bootstrap, topic = live_broker.bootstrap, "described"
    create_topic(bootstrap, topic, 1, **{"retention.ms": "123456"})
    configs = describe(bootstrap, topic)

    retention = configs["retention.ms"]
    assert retention.value == "123456" and not retention.is_default
    assert retention.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert [(s.name, s.source) for s in retention.synonyms.values()][:2] == [
        ("retention.ms", ConfigSource.DYNAMIC_TOPIC_CONFIG.value),
        ("log.retention.ms", ConfigSource.DEFAULT_CONFIG.value),
    ]

    # Set on the broker's command line, not on the topic: the broker's value,
    # with the broker key as its source, as Kafka reports it.
    tombstones = configs["delete.retention.ms"]
    assert tombstones.value == "100"
    assert (
        tombstones.source == ConfigSource.STATIC_BROKER_CONFIG.value and not tombstones.is_default
    )
    assert [(s.name, s.value) for s in tombstones.synonyms.values()] == [
        ("log.cleaner.delete.retention.ms", "100")
    ]

    segment = configs["segment.bytes"]
    assert segment.source == ConfigSource.DEFAULT_CONFIG.value and segment.is_default
    assert segment.value == str(1 << 30)


INVALID = [
    pytest.param("no.such.config", "1", id="unknown-key"),
    pytest.param("retention.ms", "soon", id="wrong-type"),
    pytest.param("cleanup.policy", "shred", id="not-a-choice"),
    pytest.param("segment.bytes", "1", id="out-of-range"),
    pytest.param("segment.bytes", str(1 << 31), id="beyond-int"),
    pytest.param("min.cleanable.dirty.ratio", "1.5", id="ratio-out-of-range"),
]


def assert_invalid_config(future: Any, key: str) -> None:
    with pytest.raises(KafkaException) as refused:
        future.result(10)
    error = refused.value.args[0]
    assert error.code() == INVALID_CONFIG, error
    assert key in error.str(), error.str()


@pytest.mark.parametrize(("key", "value"), INVALID)
def test_invalid_config_is_refused_naming_the_key(
    live_broker: BrokerProcess, key: str, value: str
) -> None:
    bootstrap = live_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic("refused", num_partitions=1, replication_factor=1, config={key: value})
    assert_invalid_config(admin.create_topics([new])["refused"], key)
    assert "refused" not in admin.list_topics(timeout=10).topics

    create_topic(bootstrap, "altered", 1)
    entry = ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "altered", incremental_configs=[entry])
    assert_invalid_config(admin.incremental_alter_configs([resource])[resource], key)
    assert key not in {
        name for name, entry in describe(bootstrap, "altered").items() if not entry.is_default
    }


def test_alter_configs_replaces_the_whole_set(live_broker: BrokerProcess) -> None:
    """AlterConfigs (the old API, confluent-kafka's alter_configs): keys left out
    return to their defaults."""
    bootstrap, topic = live_broker.bootstrap, "replaced"
    create_topic(bootstrap, topic, 1, **{"segment.bytes": "4096", "retention.ms": "1000000"})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "5000"})
    admin.alter_configs([resource])[resource].result(10)
    configs = describe(bootstrap, topic)
    assert configs["retention.ms"].value == "5000"
    assert configs["segment.bytes"].is_default and configs["segment.bytes"].value == str(1 << 30)


def test_kafka_python_alters_and_describes_with_synonyms(live_broker: BrokerProcess) -> None:
    bootstrap, topic = live_broker.bootstrap, "kafka-python-configs"
    create_topic(bootstrap, topic, 1, **{"segment.bytes": "4096"})
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        changed = admin.alter_configs(
            [KafkaConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "5000"})]
        )
        assert changed == {"topic": {topic: "OK"}}
        refused = admin.alter_configs(
            [KafkaConfigResource(ConfigResourceType.TOPIC, topic, configs={"segment.bytes": "1"})]
        )
        assert "segment.bytes" in refused["topic"][topic] and "40" in refused["topic"][topic]
        resource = KafkaConfigResource(ConfigResourceType.TOPIC, topic)
        modified = admin.describe_configs([resource], include_synonyms=True)["topic"][topic]
        everything = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    finally:
        admin.close()
    # The topic's own settings, each with the broker key under it as a synonym.
    assert set(modified) == {"segment.bytes", "retention.ms"}
    assert modified["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert [(s["name"], s["value"]) for s in modified["segment.bytes"]["synonyms"]] == [
        ("segment.bytes", "4096"),
        ("log.segment.bytes", str(1 << 30)),
    ]
    assert everything["delete.retention.ms"]["config_source"] == "STATIC_BROKER_CONFIG"
    assert everything["cleanup.policy"]["config_source"] == "DEFAULT_CONFIG"


def test_topic_configs_still_apply_after_a_restart(live_broker: BrokerProcess) -> None:
    """A log loaded from disk runs with its topic's configs, not the broker's defaults."""
    bootstrap, topic = live_broker.bootstrap, "configured-then-restarted"
    create_topic(bootstrap, topic, 1, **{"max.message.bytes": "2000", "cleanup.policy": "compact"})
    assert produce(bootstrap, topic, [(b"k", b"small")]) == []
    live_broker.stop()
    live_broker.start()
    [too_large] = produce(bootstrap, topic, [(b"k", b"x" * 3000)])
    assert too_large.code() == KafkaError.MSG_SIZE_TOO_LARGE
    [keyless] = produce(bootstrap, topic, [(None, b"no key")])
    assert keyless.code() == KafkaError.INVALID_RECORD


def test_limits_and_timestamp_type_altered_on_a_live_topic(live_broker: BrokerProcess) -> None:
    bootstrap, topic = live_broker.bootstrap, "limits-altered"
    create_topic(bootstrap, topic, 1)
    a_minute_ago = int(time.time() * 1000) - 60_000
    assert produce(bootstrap, topic, [(b"k", b"x" * 3000)], timestamp=a_minute_ago) == []
    alter(
        bootstrap,
        topic,
        ("max.message.bytes", "2000", AlterConfigOpType.SET),
        ("message.timestamp.type", "LogAppendTime", AlterConfigOpType.SET),
        ("segment.bytes", "1024", AlterConfigOpType.SET),
    )
    [too_large] = produce(bootstrap, topic, [(b"k", b"x" * 3000)])
    assert too_large.code() == KafkaError.MSG_SIZE_TOO_LARGE
    before = int(time.time() * 1000)
    for _ in range(4):  # more than half a segment each: a segment each
        assert produce(bootstrap, topic, [(b"k", b"y" * 700)], timestamp=a_minute_ago) == []
    stamps = [record.timestamp for record in read_from_start(bootstrap, topic)]
    assert stamps[0] == (TIMESTAMP_CREATE_TIME, a_minute_ago)
    assert all(k == TIMESTAMP_LOG_APPEND_TIME and t >= before for k, t in stamps[1:]), stamps
    segments = list(live_broker.data_dir.glob(f"{topic}-0/*.log"))
    assert len(segments) >= 4, "segment.bytes did not take effect"


def test_create_topics_answers_with_config_sources(live_broker: BrokerProcess) -> None:
    """CreateTopics v5+ returns the new topic's configs with where each came from."""
    body = {
        "topics": [
            {
                "name": "created-with-sources",
                "num_partitions": 1,
                "replication_factor": 1,
                "assignments": [],
                "configs": [{"name": "retention.ms", "value": "5000"}],
            }
        ],
        "timeout_ms": 10000,
        "validate_only": False,
    }
    with RawConnection(live_broker.port) as conn:
        [created] = conn.request(CREATE_TOPICS, 5, body)["topics"]
    assert created["error_code"] == 0
    sources = {c["name"]: (c["value"], c["config_source"]) for c in created["configs"]}
    assert sources["retention.ms"] == ("5000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    assert sources["delete.retention.ms"] == ("100", ConfigSource.STATIC_BROKER_CONFIG.value)
    assert sources["segment.bytes"] == (str(1 << 30), ConfigSource.DEFAULT_CONFIG.value)


def test_broker_keys_in_other_units_are_the_source(broker_factory: Any) -> None:
    """log.retention.hours set on the broker is where a topic's retention.ms
    comes from (Kafka's synonyms), not a default."""
    broker: BrokerProcess = broker_factory(log_retention_hours="2", log_roll_hours="3")
    create_topic(broker.bootstrap, "hours", 1)
    configs = describe(broker.bootstrap, "hours")
    for name, value, synonym, set_to in [
        ("retention.ms", "7200000", "log.retention.hours", "2"),
        ("segment.ms", "10800000", "log.roll.hours", "3"),
    ]:
        entry = configs[name]
        assert (entry.value, entry.source, entry.is_default) == (
            value,
            ConfigSource.STATIC_BROKER_CONFIG.value,
            False,
        )
        assert [(s.name, s.value) for s in entry.synonyms.values()] == [(synonym, set_to)]
