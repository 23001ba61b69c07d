"""Broker configuration: Kafka's keys and defaults, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from moldau.broker.config import ConfigError, load_config


def test_defaults_are_kafkas_except_where_embedded_needs_otherwise() -> None:
    config = load_config(None, [])
    assert config.listeners == [("PLAINTEXT", "127.0.0.1", 9092)]
    assert config.log_dirs == ["./data"]
    assert config.get("num.partitions") == 1
    assert config.get("log.segment.bytes") == 1073741824
    assert config.get("message.max.bytes") == 1048588
    assert config.get("auto.create.topics.enable") is True
    assert config.log_roll_ms == 168 * 3_600_000
    assert config.log_retention_ms == 168 * 3_600_000


def test_properties_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "server.properties"
    path.write_text(
        "# Kafka's sample file keys load\n"
        "broker.id=3\nnum.network.threads=3\nlog.dirs=/a,/b\nnum.partitions=4\n"
    )
    config = load_config(str(path), ["num.partitions=6", "log.roll.ms=1000"])
    assert config.broker_id == 3
    assert config.log_dirs == ["/a", "/b"]
    assert config.get("num.partitions") == 6
    assert config.log_roll_ms == 1000
    assert "num.partitions" in config.explicit


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("no.such.key=1", "unknown configuration key 'no.such.key'"),
        ("num.partitions=many", "num.partitions='many' is not a valid int"),
        ("auto.create.topics.enable=yes", "is not a valid boolean"),
        ("num.partitions=0", "below its minimum 1"),
        ("listeners=localhost", "is not of the form NAME://HOST:PORT"),
        ("nonsense", "is not KEY=VALUE"),
    ],
)
def test_bad_config_is_one_clear_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("broker.id=-2", "broker.id=-2 is below its minimum -1"),
        ("compression.type=brotli", "compression.type='brotli' is not one of"),
        ("log.message.timestamp.type=WallTime", "log.message.timestamp.type='WallTime'"),
        ("log.cleanup.policy=delete,shred", "log.cleanup.policy='shred' is not one of"),
        ("log.cleanup.policy=", "log.cleanup.policy is empty"),
        ("log.retention.ms=-2", "log.retention.ms=-2 is below its minimum -1"),
        ("log.retention.hours=-5", "log.retention.hours=-5 is below its minimum -1"),
        ("log.retention.bytes=-7", "log.retention.bytes=-7 is below its minimum -1"),
        ("log.cleaner.min.cleanable.ratio=1.5", "is above its maximum 1"),
        ("log.cleaner.min.cleanable.ratio=-0.1", "is below its minimum 0"),
        ("listeners=PLAINTEXT://127.0.0.1:65536", "has a port above 65535"),
        ("advertised.listeners=PLAINTEXT://h:99999", "has a port above 65535"),
        ("group.min.session.timeout.ms=60000", "is above group.max.session.timeout.ms"),
        ("log.cleaner.backoff.ms=0", "log.cleaner.backoff.ms=0 is below its minimum 1"),
        ("log.cleaner.dedupe.buffer.size=0", "is below its minimum 1"),
        ("max.broker.partitions=0", "is below its minimum 1"),
        ("num.partitions=10001", "num.partitions=10001 is above max.broker.partitions=10000"),
        ("zookeeper.connect=127.0.0.1", "is not host:port[,host:port...][/chroot]"),
        ("zookeeper.connect=h:2181/kafka/", "the chroot must not end with '/'"),
        ("inter.broker.listener.name=INTERNAL", "inter.broker.listener.name=INTERNAL is not one"),
        ("broker.id=2147483648", "broker.id='2147483648' is not a valid int"),
        ("log.retention.bytes=9223372036854775808", "is not a valid long"),
    ],
)
def test_values_outside_kafkas_ranges_are_refused_naming_the_key(
    override: str, message: str
) -> None:
    overrides = [override]
    if override.startswith("inter.broker"):
        overrides.append("zookeeper.connect=127.0.0.1:2181")
    if override.startswith("group.min"):
        overrides.append("group.max.session.timeout.ms=30000")
    with pytest.raises(ConfigError) as caught:
        load_config(None, overrides)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_partition_settings_are_checked_against_the_broker_limit() -> None:
    with pytest.raises(ConfigError, match=r"offsets\.topic\.num\.partitions=50 is above"):
        load_config(None, ["max.broker.partitions=20"])
    config = load_config(None, ["max.broker.partitions=50000", "num.partitions=20000"])
    assert config.get("num.partitions") == 20000


def test_negative_retention_means_forever_however_it_is_spelled() -> None:
    for override in ("log.retention.hours=-1", "log.retention.minutes=-1", "log.retention.ms=-1"):
        assert load_config(None, [override]).log_retention_ms == -1
