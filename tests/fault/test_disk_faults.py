"""What a crash can leave on disk, and a broker that starts anyway.

Each test stores records, kills the broker with -9 (no clean-shutdown mark,
so the next start must recover), then damages the data directory the way a
power loss or an interrupted operation would: a torn batch or zeros at the
end of the active segment, a corrupt last batch, lost or garbled index
files, a partition directory left by an interrupted topic deletion. The
broker must start, serve every record before the damage, refuse nothing
valid, and append new records right after what it kept.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import (
    BrokerProcess,
    Rec,
    assert_round_trip,
    confluent_produce,
    confluent_read_all,
    create_topic,
    sample_records,
)

FIRST_SEGMENT = "00000000000000000000"


def stored(broker: BrokerProcess, topic: str, batches: int) -> list[Rec]:
    """Produce ``batches`` separate one-partition batches of 5 records each."""
    create_topic(broker.bootstrap, topic, 1)
    base = int(time.time() * 1000) - 60_000
    sent: list[Rec] = []
    for n in range(batches):
        records = sample_records(f"b{n}", 5, base + 100 * n)
        sent += confluent_produce(broker.bootstrap, topic, records, **{"linger.ms": 50})
    return sent


def segment(broker: BrokerProcess, topic: str, suffix: str) -> Path:
    return broker.data_dir / f"{topic}-0" / (FIRST_SEGMENT + suffix)


def log_end(broker: BrokerProcess, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ends"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


def assert_appends_continue(broker: BrokerProcess, topic: str, at: int) -> None:
    [record] = confluent_produce(broker.bootstrap, topic, [Rec(b"k", b"after the crash")])
    assert record.offset == at
    assert confluent_read_all(broker.bootstrap, topic)[-1].value == b"after the crash"


@pytest.mark.parametrize(
    "tail",
    [b"\x00" * 4096, b"\x00\x00\x00\x00\x00\x00\x00\x20\x00\x00\x03\x00", os.urandom(100)],
    ids=["zeros", "torn batch header", "random bytes"],
)
def test_garbage_after_the_last_batch_is_cut(broker: BrokerProcess, tail: bytes) -> None:
    sent = stored(broker, "tail", 4)
    broker.kill()
    with open(segment(broker, "tail", ".log"), "ab") as log_file:
        log_file.write(tail)
    broker.start()
    assert_round_trip(sent, confluent_read_all(broker.bootstrap, "tail"))
    assert_appends_continue(broker, "tail", len(sent))


def test_torn_copy_of_a_real_batch_is_cut(broker: BrokerProcess) -> None:
    sent = stored(broker, "torn", 3)
    broker.kill()
    path = segment(broker, "torn", ".log")
    data = path.read_bytes()
    with open(path, "ab") as log_file:
        log_file.write(data[: len(data) // 3 - 7])  # the head of a batch, its end never written
    broker.start()
    assert_round_trip(sent, confluent_read_all(broker.bootstrap, "torn"))
    assert_appends_continue(broker, "torn", len(sent))


def test_corrupt_last_batch_is_dropped_and_the_rest_kept(broker: BrokerProcess) -> None:
    sent = stored(broker, "corrupt", 4)
    broker.kill()
    path = segment(broker, "corrupt", ".log")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the last batch's records: its CRC no longer matches
    path.write_bytes(bytes(data))
    broker.start()
    kept = confluent_read_all(broker.bootstrap, "corrupt")
    assert_round_trip(sent[:-5], kept)
    assert_appends_continue(broker, "corrupt", len(sent) - 5)


@pytest.mark.parametrize("damage", ["deleted", "emptied", "garbled"])
def test_lost_or_garbled_indexes_are_rebuilt(broker: BrokerProcess, damage: str) -> None:
    create_topic(broker.bootstrap, "indexed", 1, **{"index.interval.bytes": "100"})
    base = int(time.time() * 1000) - 60_000
    sent: list[Rec] = []
    for n in range(30):
        records = sample_records(f"b{n}", 3, base + 10 * n)
        sent += confluent_produce(broker.bootstrap, "indexed", records)
    broker.kill()
    for suffix in (".index", ".timeindex"):
        path = segment(broker, "indexed", suffix)
        if damage == "deleted":
            path.unlink()
        elif damage == "emptied":
            path.write_bytes(b"")
        else:
            path.write_bytes(os.urandom(max(path.stat().st_size, 64) + 5))
    broker.start()
    assert_round_trip(sent, confluent_read_all(broker.bootstrap, "indexed"))
    middle = sent[45]
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times"})
    try:
        [found] = consumer.offsets_for_times(
            [TopicPartition("indexed", 0, middle.timestamp)], timeout=10
        )
        assert found.offset == middle.offset
    finally:
        consumer.close()
    assert_appends_continue(broker, "indexed", len(sent))


def test_lost_checkpoints_mean_a_full_recovery_not_lost_data(broker: BrokerProcess) -> None:
    sent = stored(broker, "checked", 3)
    assert broker.stop() == 0
    for name in os.listdir(broker.data_dir):
        if "checkpoint" in name or name == ".kafka_cleanshutdown":
            (broker.data_dir / name).unlink()
    broker.start()
    assert_round_trip(sent, confluent_read_all(broker.bootstrap, "checked"))
    assert_appends_continue(broker, "checked", len(sent))


def test_second_broker_on_the_same_data_dir_is_refused(
    broker: BrokerProcess, broker_factory: object
) -> None:
    sent = stored(broker, "owned", 2)
    intruder = BrokerProcess(broker.data_dir)
    with pytest.raises(RuntimeError, match="broker exited"):
        intruder.start(timeout=10)
    intruder.kill()
    assert_round_trip(sent, confluent_read_all(broker.bootstrap, "owned"))
    assert_appends_continue(broker, "owned", len(sent))


def test_partition_left_by_an_interrupted_delete_does_not_come_back(
    broker: BrokerProcess,
) -> None:
    """A crash after the topic left the metadata but before its logs were removed.

    The directory stays behind with the old topic id; a topic created later
    under the same name must start empty, not with the deleted records.
    """
    stored(broker, "reborn", 2)
    assert broker.stop() == 0
    metadata_path = broker.data_dir / "moldau-metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["topics"] = [t for t in metadata["topics"] if t["name"] != "reborn"]
    metadata_path.write_text(json.dumps(metadata))
    broker.start()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert "reborn" not in admin.list_topics(timeout=10).topics
    create_topic(broker.bootstrap, "reborn", 1)
    assert log_end(broker, "reborn") == 0
    assert confluent_read_all(broker.bootstrap, "reborn") == []
    assert_appends_continue(broker, "reborn", 0)
