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
