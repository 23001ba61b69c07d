"""Hostile record batches, produced or stored, never stall consumers nor
take the broker down.

Found by the adversarial trial: random bytes with a valid CRC were stored
and stalled confluent-kafka consumers silently; a 160 KB zstd frame of RLE
blocks (5 GiB inflated) aborted the broker from ListOffsets, and on a
compacted topic crash-looped it (the cleaner met it again at every start).

Batches "stored by hand" are appended to a stopped broker's segment file,
with a valid CRC and the next offset: what a disk, a bug or an older version
could leave behind. The broker's peak RSS (``VmHWM``) shows whether anything
inflated a bomb, whether or not the machine had the memory to survive it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import (
    BrokerProcess,
    RawConnection,
    Rec,
    confluent_produce,
    create_topic,
    wait_for,
)
from hostile_batches import hostile_batch, zstd_rle_bomb
from moldau.protocol import batch as b

PRODUCE = 0
LIST_OFFSETS = 2
CORRUPT_MESSAGE = 2
INVALID_RECORD = 87
#: Far above an idle broker (about 35 MB) plus one bounded decompression
#: (64 MiB), far below one inflated bomb (5 GiB).
MAX_PEAK_RSS = 400 << 20


def assert_up_and_bounded(broker: BrokerProcess) -> None:
    assert broker.process is not None and broker.process.poll() is None, broker.output()
    assert broker.memory("VmHWM") < MAX_PEAK_RSS, "the broker inflated a bomb"


def produce_raw(port: int, topic: str, records: bytes) -> dict[str, object]:
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    }
    with RawConnection(port) as conn:
        answer = conn.request(PRODUCE, 8, body)
    [topic_answer] = answer["responses"]
    [partition_answer] = topic_answer["partition_responses"]
    return partition_answer


def offset_for_time(port: int, topic: str, timestamp: int) -> dict[str, object]:
    body = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}
                ],
            }
        ],
    }
    with RawConnection(port) as conn:
        answer = conn.request(LIST_OFFSETS, 7, body)
    [topic_answer] = answer["topics"]
    [partition_answer] = topic_answer["partitions"]
    return partition_answer


MINUTE = 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


def records(tag: str, count: int, age_ms: int = 0) -> list[Rec]:
    """``count`` keyed records stamped ``age_ms`` ago."""
    stamp = now_ms() - age_ms
    return [
        Rec(key=f"k{i}".encode(), value=f"{tag}-{i}".encode(), timestamp=stamp)
        for i in range(count)
    ]


def read_values(bootstrap: str, topic: str, want: set[bytes], timeout: float = 20.0) -> set[bytes]:
    """Values a confluent-kafka consumer of partition 0 reads from the start,
    until it has ``want`` or the deadline passes."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False}
    )
    got: set[bytes] = set()
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while not want <= got and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=0.2):
                if message.error() is None:
                    got.add(message.value())
    finally:
        consumer.close()
    return got


# -- produced --------------------------------------------------------------------------


def test_random_bytes_with_a_valid_crc_are_refused_and_consumers_read_around_them(
    broker: BrokerProcess,
) -> None:
    create_topic(broker.bootstrap, "junk", 1)
    before = confluent_produce(broker.bootstrap, "junk", records("before", 20))
    junk = hostile_batch(bytes(range(256)) * 8, count=5)
    answer = produce_raw(broker.port, "junk", junk)
    assert answer["error_code"] == INVALID_RECORD
    after = confluent_produce(broker.bootstrap, "junk", records("after", 20))
    assert [r.offset for r in after] == list(range(20, 40)), "the junk batch took offsets"
    want = {r.value for r in before + after}
    assert read_values(broker.bootstrap, "junk", want) == want
    assert_up_and_bounded(broker)


def test_a_produced_zstd_bomb_is_refused(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "bombed", 1)
    answer = produce_raw(broker.port, "bombed", hostile_batch(zstd_rle_bomb(), b.COMPRESSION_ZSTD))
    assert answer["error_code"] == CORRUPT_MESSAGE
    good = confluent_produce(broker.bootstrap, "bombed", records("good", 5))
    assert [r.offset for r in good] == list(range(5))
    assert_up_and_bounded(broker)


# -- stored ----------------------------------------------------------------------------


def append_by_hand(data_dir: Path, topic: str, raw: bytes) -> int:
    """Append ``raw`` to the stopped broker's last segment of ``topic``-0,
    at the next offset; returns that offset."""
    [log_file] = sorted((data_dir / f"{topic}-0").glob("*.log"))[-1:]
    stored = log_file.read_bytes()
    next_offset = int(log_file.stem)
    for header, _ in b.iter_batches(stored):
        next_offset = header.next_offset
    patched = bytearray(raw)
    b.patch_base_offset(patched, 0, next_offset)
    with open(log_file, "ab") as out:
        out.write(patched)
    return next_offset


def stored_bomb(timestamp: int) -> bytes:
    """The zstd RLE bomb as a batch of one record at ``timestamp``."""
    return b.assemble_batch(
        payload=zstd_rle_bomb(),
        records_count=1,
        last_offset_delta=0,
        attributes=b.COMPRESSION_ZSTD,
        base_timestamp=timestamp,
        max_timestamp=timestamp,
    )


@pytest.fixture
def bombed_broker(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[BrokerProcess, int]]:
    """A broker restarted on a log holding records, a stored zstd bomb (at
    the returned offset), then more records; ``request.param`` are the
    topic's configs."""
    configs: dict[str, str] = request.param
    first = BrokerProcess(tmp_path / "data", log_cleaner_backoff_ms="50")
    second = BrokerProcess(first.data_dir, first.port, log_cleaner_backoff_ms="50")
    try:
        first.start()
        create_topic(first.bootstrap, "stored", 1, **configs)
        confluent_produce(first.bootstrap, "stored", records("before", 10, 10 * MINUTE))
        assert first.stop() == 0
        bomb_offset = append_by_hand(first.data_dir, "stored", stored_bomb(now_ms() - 5 * MINUTE))
        assert bomb_offset == 10
        second.start()
        # More records after it: the bomb's segment rolls and the high
        # watermark passes it, so the cleaner may read it.
        after = confluent_produce(second.bootstrap, "stored", records("after", 10, MINUTE))
        assert after[0].offset == bomb_offset + 1, "the stored bomb is not in the log"
        yield second, bomb_offset
    finally:
        first.kill()
        second.kill()


@pytest.mark.parametrize("bombed_broker", [{}], indirect=True)
def test_list_offsets_by_time_over_a_stored_bomb_answers_an_error(
    bombed_broker: tuple[BrokerProcess, int],
) -> None:
    broker, bomb_offset = bombed_broker
    before_the_bomb = offset_for_time(broker.port, "stored", now_ms() - 20 * MINUTE)
    assert (before_the_bomb["error_code"], before_the_bomb["offset"]) == (0, 0)
    reaching_the_bomb = offset_for_time(broker.port, "stored", now_ms() - 7 * MINUTE)
    assert reaching_the_bomb["error_code"] == CORRUPT_MESSAGE
    past_the_bomb = offset_for_time(broker.port, "stored", now_ms() - 2 * MINUTE)
    assert (past_the_bomb["error_code"], past_the_bomb["offset"]) == (0, bomb_offset + 1)
    assert_up_and_bounded(broker)
    assert confluent_produce(broker.bootstrap, "stored", records("later", 3))


@pytest.mark.parametrize(
    "bombed_broker",
    [{"cleanup.policy": "compact", "segment.bytes": "2000", "min.cleanable.dirty.ratio": "0.01"}],
    indirect=True,
)
def test_a_stored_bomb_on_a_compacted_topic_does_not_take_the_broker_down(
    bombed_broker: tuple[BrokerProcess, int],
) -> None:
    broker, _ = bombed_broker
    wait_for(
        lambda: "cannot clean" in broker.output(),
        timeout=30,
        what="the cleaner to give up on the bombed log",
    )
    assert "stored-0" in broker.output()
    assert_up_and_bounded(broker)
    # Other topics are still compacted and served.
    create_topic(broker.bootstrap, "other", 1, **{"cleanup.policy": "compact"})
    sent = confluent_produce(broker.bootstrap, "other", records("other", 5))
    assert read_values(broker.bootstrap, "other", {r.value for r in sent}) == {
        r.value for r in sent
    }
    assert_up_and_bounded(broker)


def test_a_stored_bomb_in_the_offsets_topic_does_not_keep_the_broker_from_starting(
    tmp_path: Path,
) -> None:
    """Loading ``__consumer_offsets`` decodes every batch: a bomb stored there
    stopped the broker at every start. Now the batch is skipped with one
    ERROR line, and the commits around it are loaded."""
    settings = {"offsets_topic_num_partitions": "1"}
    first = BrokerProcess(tmp_path / "data", **settings)
    second = BrokerProcess(first.data_dir, first.port, **settings)
    try:
        first.start()
        create_topic(first.bootstrap, "read", 1)
        commit(first.bootstrap, "before", 3)
        assert first.stop() == 0
        append_by_hand(first.data_dir, "__consumer_offsets", stored_bomb(now_ms()))
        second.start()
        assert committed(second.bootstrap, "before") == 3
        commit(second.bootstrap, "after", 5)
        assert committed(second.bootstrap, "after") == 5
        skipped = [line for line in second.output().splitlines() if "unreadable batch" in line]
        assert len(skipped) == 1 and "ERROR" in skipped[0], skipped
        assert "__consumer_offsets-0" in skipped[0]
        assert_up_and_bounded(second)
    finally:
        first.kill()
        second.kill()


def commit(bootstrap: str, group: str, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition("read", 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def committed(bootstrap: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        [answer] = consumer.committed([TopicPartition("read", 0)], timeout=10)
        return int(answer.offset)
    finally:
        consumer.close()
