"""DescribeLogDirs (key 35) against a real single broker.

kafka-python's ``describe_log_dirs`` (confluent-kafka 2.16 has none) and a
raw request at every version moldau encodes see each partition's size in
the log dir that holds it; a log dir that disappears under the broker is
reported offline (KAFKA_STORAGE_ERROR) while the other dir still answers.
The 3-broker case is in tests/cluster/test_describe_log_dirs_cluster.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaAdminClient

from conftest import BrokerProcess, RawConnection, confluent_produce, create_topic, sample_records
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode
from moldau.protocol.schema import known_versions

TOPIC = "sized"


def test_sizes_per_log_dir_seen_by_kafka_python(
    broker_factory: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    broker = broker_factory(log_dirs=",".join(map(str, dirs)))
    create_topic(broker.bootstrap, TOPIC, 2)
    confluent_produce(broker.bootstrap, TOPIC, sample_records("x", 50, 1_700_000_000_000))

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        (answer,) = admin.describe_log_dirs()
    finally:
        admin.close()
    results = {r["log_dir"]: r for r in answer["log_dirs"]}
    assert set(results) == {str(d) for d in dirs}
    found = {}
    for log_dir, result in results.items():
        assert result["error_code"] == 0
        for topic in result["topics"]:
            for p in topic["partitions"]:
                found[(topic["name"], p["partition_index"])] = (log_dir, p)
    assert {k for k in found if k[0] == TOPIC} == {(TOPIC, 0), (TOPIC, 1)}
    for partition in (0, 1):
        log_dir, entry = found[(TOPIC, partition)]
        on_disk = sum(f.stat().st_size for f in Path(log_dir, f"{TOPIC}-{partition}").glob("*.log"))
        assert entry["partition_size"] == on_disk > 0
        assert entry["offset_lag"] == 0 and entry["is_future_key"] is False


def test_every_version_and_an_offline_dir(
    broker_factory: Callable[..., BrokerProcess], tmp_path: Path
) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    broker = broker_factory(log_dirs=",".join(map(str, dirs)))
    create_topic(broker.bootstrap, TOPIC, 2)
    versions = known_versions(ApiKey.DESCRIBE_LOG_DIRS)
    assert versions is not None
    with RawConnection(broker.port) as conn:
        for version in versions:
            body = conn.request(
                ApiKey.DESCRIBE_LOG_DIRS,
                version,
                {
                    "topics": [
                        {"topic": TOPIC, "partitions": [1, 7]},
                        {"topic": "nope", "partitions": [0]},
                    ]
                },
            )
            held = [
                (t["name"], p["partition_index"])
                for r in body["results"]
                for t in r["topics"]
                for p in t["partitions"]
            ]
            assert held == [(TOPIC, 1)], version
            if version >= 4:
                for result in body["results"]:
                    assert 0 < result["usable_bytes"] <= result["total_bytes"]

        # One dir goes away under the broker (an unmounted disk): offline.
        holder = next(d for d in dirs if (d / f"{TOPIC}-0").exists())
        os.rename(holder, tmp_path / "gone")
        body = conn.request(ApiKey.DESCRIBE_LOG_DIRS, versions[-1], {"topics": None})
    results = {r["log_dir"]: r for r in body["results"]}
    assert results[str(holder)]["error_code"] == ErrorCode.KAFKA_STORAGE_ERROR
    assert results[str(holder)]["topics"] == []
    other = next(str(d) for d in dirs if d != holder)
    assert results[other]["error_code"] == 0 and results[other]["total_bytes"] > 0
