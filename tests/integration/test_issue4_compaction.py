"""Log compaction seen by real clients: a compacted topic read from the beginning.

The broker runs its cleaner with a short backoff and topics roll tiny
segments, so a clean happens within a second of the data being written.
Every wait polls what a consumer sees, with a deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AioKafkaError
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from kafka import KafkaProducer
from kafka.errors import InvalidRecordError
from test_clients_raw import FETCH, fetch_request

from conftest import BrokerProcess, RawConnection, create_topic, wait_for
from moldau.protocol.records import Record, build_batch, decode_batch

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
KEYS = 12
SEGMENT_BYTES = 2048
#: max.compaction.lag.ms of the lagging topic, long enough that producing
#: a few records rarely outlasts it.
MAX_LAG_S = 6.0


@dataclass(frozen=True)
class Seen:
    key: bytes | None
    value: bytes | None
    offset: int
    partition: int = 0
    #: (timestamp type, timestamp) as confluent-kafka reports it.
    timestamp: tuple[int, int] = (0, -1)


def read_from_start(bootstrap: str, topic: str, partitions: int = 1) -> list[Seen]:
    """Every record of ``topic`` from its log start to the high watermark at the start.

    Compaction leaves gaps in the offsets, so the reader stops at the high
    watermark rather than after a count of records.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "compaction-reader",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    seen: list[Seen] = []
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in range(partitions)
        }
        pending = {p for p, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        deadline = time.monotonic() + 10
        while pending:
            assert time.monotonic() < deadline, f"still reading partitions {pending}"
            for message in consumer.consume(1000, timeout=0.2):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    if message.offset() >= ends[message.partition()][1]:
                        pending.discard(message.partition())
                    continue
                seen.append(
                    Seen(
                        message.key(),
                        message.value(),
                        message.offset(),
                        message.partition(),
                        message.timestamp(),
                    )
                )
                if message.offset() + 1 >= ends[message.partition()][1]:
                    pending.discard(message.partition())
    finally:
        consumer.close()
    return seen


def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes | None]],
    timestamp: int = 0,
    **config: Any,
) -> list[Any]:
    """Send ``records`` as (key, value) in one flush; returns the delivery errors."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20, **config})
    errors: list[Any] = []

    def report(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(error)

    for key, value in records:
        producer.produce(topic, key=key, value=value, timestamp=timestamp, on_delivery=report)
        producer.poll(0)
    assert producer.flush(30) == 0, "records left undelivered"
    return errors


def roll_past(
    bootstrap: str, topic: str, tag: str, segment_bytes: int = SEGMENT_BYTES
) -> dict[bytes, bytes]:
    """Write three fillers with keys of their own, each more than half a
    segment, so each of the last two starts a segment and the data before
    sits in closed ones; returns them as the model of what compaction keeps."""
    filler = b"f" * (segment_bytes * 3 // 4)
    fillers = {f"filler-{tag}-{i}".encode(): filler + str(i).encode() for i in range(3)}
    for key, value in fillers.items():
        assert produce(bootstrap, topic, [(key, value)]) == []
    return dict(fillers)


def write_versions(bootstrap: str, topic: str, rounds: int) -> dict[bytes, bytes | None]:
    """Several versions of every key in every codec, with tombstones; the newest per key."""
    newest: dict[bytes, bytes | None] = {}
    for round_number in range(rounds):
        codec = CODECS[round_number % len(CODECS)]
        batch: list[tuple[bytes | None, bytes | None]] = []
        for k in range(KEYS):
            key = f"key-{k}".encode()
            # Keys 0, 4, 8 end deleted; keys 1, 5, 9 are deleted and written again.
            if (k % 4 == 0 and round_number == rounds - 1) or (k % 4 == 1 and round_number == 1):
                value = None
            else:
                value = f"{codec}:{round_number}:{k}:".encode() + b"v" * (k * 7)
            batch.append((key, value))
            newest[key] = value
        assert produce(bootstrap, topic, batch, **{"compression.type": codec}) == []
    return newest


def stored_batches(broker: BrokerProcess, topic: str) -> list[tuple[str, list[bytes]]]:
    """Each stored batch of partition 0 as fetched: its codec and its values."""
    batches: list[tuple[str, list[bytes]]] = []
    with RawConnection(broker.port) as conn:
        offset, end = 0, 1
        while offset < end:
            response = conn.request(FETCH, 12, fetch_request(topic, {0: offset}))
            [answer] = response["responses"][0]["partitions"]
            assert answer["error_code"] == 0, answer["error_code"]
            end, data, position = answer["high_watermark"], answer["records"] or b"", 0
            while position < len(data):
                header, records = decode_batch(data[position:])
                codec = ("none", "gzip", "snappy", "lz4", "zstd")[header.compression]
                batches.append((codec, [r.value or b"" for r in records]))
                offset, position = header.last_offset + 1, position + header.size
    return batches


def compacted_view(seen: list[Seen]) -> dict[bytes | None, bytes | None]:
    return {record.key: record.value for record in seen}


def assert_compacted(seen: list[Seen], model: dict[bytes, bytes | None]) -> None:
    keys = [record.key for record in seen]
    assert len(keys) == len(set(keys)), "a key appears more than once"
    assert compacted_view(seen) == {k: v for k, v in model.items() if v is not None}
    offsets = [record.offset for record in seen]
    assert offsets == sorted(set(offsets)), "offsets not strictly increasing"


def fully_compacted(bootstrap: str, topic: str, model: dict[bytes, bytes | None]) -> bool:
    seen = read_from_start(bootstrap, topic)
    live = {k: v for k, v in model.items() if v is not None}
    return len(seen) == len(live) and compacted_view(seen) == live


@pytest.fixture
def cleaning_broker(broker_factory: Any) -> BrokerProcess:
    broker: BrokerProcess = broker_factory(
        log_cleaner_backoff_ms="50", log_retention_check_interval_ms="100"
    )
    return broker


def test_compacted_topic_keeps_the_newest_value_per_key(cleaning_broker: BrokerProcess) -> None:
    bootstrap, topic = cleaning_broker.bootstrap, "compacted-codecs"
    create_topic(
        bootstrap,
        topic,
        1,
        **{
            "cleanup.policy": "compact",
            "segment.bytes": str(SEGMENT_BYTES),
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "100",
        },
    )
    model: dict[bytes, bytes | None] = write_versions(bootstrap, topic, rounds=2 * len(CODECS))
    # One last version of the live keys, key k in codec k % 5: the newest
    # values then sit in batches of every codec, which cleaning must keep.
    for c, codec in enumerate(CODECS):
        last = {
            # Compressible: librdkafka sends a batch uncompressed when that is smaller.
            key: f"{codec}:last:".encode() + key + b"." * 300
            for key, value in model.items()
            if value is not None and int(key.split(b"-")[1]) % len(CODECS) == c
        }
        assert produce(bootstrap, topic, list(last.items()), **{"compression.type": codec}) == []
        model.update(last)
    model.update(roll_past(bootstrap, topic, "a"))
    written = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw"})
    try:
        low, high = written.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        written.close()
    assert (low, high) == (0, 2 * len(CODECS) * KEYS + 9 + 3)

    wait_for(lambda: fully_compacted(bootstrap, topic, model), 20, 0.2, "a fully compacted log")
    seen = read_from_start(bootstrap, topic)
    assert_compacted(seen, model)
    assert all(record.value is not None for record in seen), "a tombstone outlived its horizon"
    assert seen[-1].offset == high - 1, "the last record was removed"
    assert seen[0].offset > 0 and len(seen) < high, "no gaps: nothing was removed"
    batches = stored_batches(cleaning_broker, topic)
    assert {codec for codec, _ in batches} == set(CODECS), "a codec was lost in cleaning"
    for codec, values in batches:
        assert all(v.startswith((b"fff", codec.encode())) for v in values), (
            f"a {codec} batch holds {values}"
        )


def test_keyless_record_is_refused_on_a_compacted_topic(cleaning_broker: BrokerProcess) -> None:
    bootstrap, topic = cleaning_broker.bootstrap, "compacted-keyless"
    create_topic(bootstrap, topic, 1, **{"cleanup.policy": "compact"})
    errors = produce(bootstrap, topic, [(None, b"no key")])
    assert [e.code() for e in errors] == [KafkaError.INVALID_RECORD]
    producer = KafkaProducer(bootstrap_servers=bootstrap, retries=0)
    try:
        with pytest.raises(InvalidRecordError):
            producer.send(topic, value=b"no key either").get(timeout=10)
        # A keyed record on the same producer still goes through.
        assert producer.send(topic, key=b"k", value=b"keyed").get(timeout=10).offset == 0
    finally:
        producer.close(5)

    async def aiokafka_keyless() -> None:
        aio = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await aio.start()
        try:
            # aiokafka has no class for code 87 and raises its UnknownError.
            with pytest.raises(AioKafkaError):
                await aio.send_and_wait(topic, value=b"no key from aiokafka")
        finally:
            await aio.stop()

    asyncio.run(aiokafka_keyless())
    assert [record.value for record in read_from_start(bootstrap, topic)] == [b"keyed"]


def test_produce_names_each_keyless_record_of_a_batch(cleaning_broker: BrokerProcess) -> None:
    """Produce v8+ answers which records failed (``record_errors``), as Kafka
    does, so a client can tell; the batch is refused whole."""
    topic = "compacted-record-errors"
    create_topic(cleaning_broker.bootstrap, topic, 1, **{"cleanup.policy": "compact"})
    keys = [b"a", None, b"c", None]
    batch = build_batch([Record(i, 0, k, b"v") for i, k in enumerate(keys)])
    request = {
        "transactional_id": None,
        "acks": 1,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    }
    with RawConnection(cleaning_broker.port) as conn:
        answer = conn.request(0, 9, request)
    [partition] = answer["responses"][0]["partition_responses"]
    assert partition["error_code"] == 87  # INVALID_RECORD
    assert [e["batch_index"] for e in partition["record_errors"]] == [1, 3]
    assert "2 record errors" in partition["error_message"]
    assert read_from_start(cleaning_broker.bootstrap, topic) == []


def test_compact_delete_topic_compacts_and_expires(cleaning_broker: BrokerProcess) -> None:
    """compact,delete: old segments expire by retention.ms, newer ones are compacted."""
    bootstrap, topic = cleaning_broker.bootstrap, "compacted-expiring"
    create_topic(
        bootstrap,
        topic,
        1,
        **{
            "cleanup.policy": "compact,delete",
            "segment.bytes": str(SEGMENT_BYTES),
            "min.cleanable.dirty.ratio": "0.01",
            "retention.ms": "600000",
            "delete.retention.ms": "100",
        },
    )
    old = int(time.time() * 1000) - 3_600_000
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20})
    for version in range(3):
        for k in range(KEYS):
            producer.produce(topic, key=f"old-{k}".encode(), value=b"%d" % version, timestamp=old)
        assert producer.flush(10) == 0
    producer.produce(topic, key=b"old-filler", value=b"f" * (SEGMENT_BYTES - 200), timestamp=old)
    assert producer.flush(10) == 0
    model: dict[bytes, bytes | None] = write_versions(bootstrap, topic, rounds=3)
    model.update(roll_past(bootstrap, topic, "b"))

    def expired_and_compacted() -> bool:
        seen = read_from_start(bootstrap, topic)
        keys = [r.key for r in seen]
        return (
            len(keys) == len(set(keys))
            and not any(key is not None and key.startswith(b"old-") for key in keys)
            and compacted_view(seen) == {k: v for k, v in model.items() if v is not None}
        )

    wait_for(expired_and_compacted, 20, 0.2, "old keys expired and the rest compacted")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "low"})
    try:
        low, _ = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()
    assert low >= 3 * KEYS + 1, "retention did not move the log start past the old segments"


def test_consumer_offsets_topic_is_compacted(broker_factory: Any) -> None:
    """Offset commits pile up in ``__consumer_offsets``; the cleaner keeps the
    newest per group and partition, and they survive a kill -9."""
    broker: BrokerProcess = broker_factory(
        log_cleaner_backoff_ms="50",
        offsets_topic_num_partitions="1",
        offsets_topic_segment_bytes="1024",
    )
    bootstrap, topic = broker.bootstrap, "committed-often"
    create_topic(bootstrap, topic, 2)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "committer"})
    try:
        for position in range(1, 201):
            commits = [TopicPartition(topic, p, position * (p + 1)) for p in range(2)]
            consumer.commit(offsets=commits, asynchronous=False)
    finally:
        consumer.close()
    seen = wait_for(
        lambda: len(kept := read_from_start(bootstrap, "__consumer_offsets")) < 40 and kept,
        20,
        0.2,
        "__consumer_offsets compacted",
    )
    assert seen[-1].offset >= 200, "fewer commit records written than commits made"
    broker.kill()
    broker.start()
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "committer"})
    try:
        wanted = [TopicPartition(topic, p) for p in range(2)]
        committed = reader.committed(wanted, timeout=10)
    finally:
        reader.close()
    assert [tp.offset for tp in committed] == [200, 400]


def cleaning_files(broker: BrokerProcess, topic: str) -> list[str]:
    """Files of a clean in progress: the cleaned copy, or a swap not yet renamed."""
    return [
        path.name
        for path in broker.data_dir.glob(f"{topic}-0/*")
        if path.suffix in (".cleaned", ".swap")
    ]


def test_kill_9_in_the_middle_of_a_clean_leaves_a_valid_log(cleaning_broker: BrokerProcess) -> None:
    bootstrap, topic = cleaning_broker.bootstrap, "compacted-killed"
    segment_bytes = 64 * 1024
    create_topic(
        bootstrap,
        topic,
        1,
        **{
            "cleanup.policy": "compact",
            "segment.bytes": str(segment_bytes),
            "min.cleanable.dirty.ratio": "0.01",
            # One timestamp for every record and a lag: all segments become
            # cleanable at the same moment, so one long clean does them all.
            "min.compaction.lag.ms": "2000",
        },
    )
    noise = random.Random(4)
    records: list[tuple[bytes | None, bytes | None]] = [
        (b"key-%d" % k, b"%d:%d:" % (version, k) + noise.randbytes(1000))
        for version in range(100)
        for k in range(50)
    ]
    # Batches smaller than a segment: a bigger one is refused (RECORD_LIST_TOO_LARGE).
    config = {"compression.type": "lz4", "batch.size": segment_bytes // 4}
    assert produce(bootstrap, topic, records, int(time.time() * 1000), **config) == []
    model: dict[bytes, bytes | None] = dict(records)
    for key, value in roll_past(bootstrap, topic, "d", segment_bytes).items():
        model[key] = value

    wait_for(lambda: cleaning_files(cleaning_broker, topic), 20, 0.001, "a clean in progress")
    cleaning_broker.kill()
    cleaning_broker.start()
    # At once after recovery: whatever the clean had done, every key reads
    # back with its newest value, and the batches pass librdkafka's CRC check.
    seen = read_from_start(bootstrap, topic)
    assert compacted_view(seen) == model
    wait_for(lambda: fully_compacted(bootstrap, topic, model), 30, 0.2, "the clean to finish")


def test_cleaning_keeps_log_append_times(cleaning_broker: BrokerProcess) -> None:
    """Rebuilt batches of a LogAppendTime topic keep the broker's timestamps."""
    bootstrap, topic = cleaning_broker.bootstrap, "compacted-append-time"
    create_topic(
        bootstrap,
        topic,
        1,
        **{
            "cleanup.policy": "compact",
            "segment.bytes": str(SEGMENT_BYTES),
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "100",
            "message.timestamp.type": "LogAppendTime",
        },
    )
    before = int(time.time() * 1000)
    model: dict[bytes, bytes | None] = write_versions(bootstrap, topic, rounds=len(CODECS) + 1)
    model.update(roll_past(bootstrap, topic, "e"))
    after = int(time.time() * 1000)
    wait_for(lambda: fully_compacted(bootstrap, topic, model), 20, 0.2, "a compacted log")
    for record in read_from_start(bootstrap, topic):
        kind, stamp = record.timestamp
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before <= stamp <= after, record


def test_max_compaction_lag_forces_a_clean_below_the_dirty_ratio(
    cleaning_broker: BrokerProcess,
) -> None:
    """A little dirty data behind a large clean section stays below
    min.cleanable.dirty.ratio, and is cleaned once older than max.compaction.lag.ms."""
    bootstrap, topic = cleaning_broker.bootstrap, "compacted-lagging"
    create_topic(
        bootstrap,
        topic,
        1,
        **{
            "cleanup.policy": "compact",
            "segment.bytes": str(SEGMENT_BYTES),
            "min.cleanable.dirty.ratio": "0.9",
            "max.compaction.lag.ms": str(int(MAX_LAG_S * 1000)),
            "delete.retention.ms": "100",
        },
    )
    model: dict[bytes, bytes | None] = write_versions(bootstrap, topic, rounds=3)
    model.update(roll_past(bootstrap, topic, "f"))
    # The first clean of a log is all dirty: ratio 1.
    wait_for(lambda: fully_compacted(bootstrap, topic, model), 20, 0.2, "the first clean")
    newer = {b"key-2": b"newer", b"key-3": b"newer"}
    dirty_since = time.monotonic()
    assert produce(bootstrap, topic, list(newer.items())) == []
    model.update(newer)
    model.update(roll_past(bootstrap, topic, "g"))
    # On a loaded machine producing may itself outlast the lag: a clean is
    # only wrong while the dirty records are younger than it.
    cleaned = fully_compacted(bootstrap, topic, model)
    assert not cleaned or time.monotonic() - dirty_since >= MAX_LAG_S, "cleaned below the ratio"
    wait_for(lambda: fully_compacted(bootstrap, topic, model), 20, 0.2, "the overdue clean")


def test_min_compaction_lag_keeps_recent_records(cleaning_broker: BrokerProcess) -> None:
    """Records younger than min.compaction.lag.ms are not compacted, while the
    same cleaner compacts another topic written at the same time."""
    bootstrap = cleaning_broker.bootstrap
    configs = {
        "cleanup.policy": "compact",
        "segment.bytes": str(SEGMENT_BYTES),
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "100",
    }
    create_topic(bootstrap, "compacted-lagged", 1, **configs, **{"min.compaction.lag.ms": "600000"})
    create_topic(bootstrap, "compacted-control", 1, **configs)
    written: dict[str, int] = {}
    models: dict[str, dict[bytes, bytes | None]] = {}
    for topic in ("compacted-lagged", "compacted-control"):
        models[topic] = write_versions(bootstrap, topic, rounds=3)
        models[topic].update(roll_past(bootstrap, topic, "h"))
        written[topic] = len(read_from_start(bootstrap, topic))
    control = models["compacted-control"]
    wait_for(lambda: fully_compacted(bootstrap, "compacted-control", control), 20, 0.2, "control")
    assert len(read_from_start(bootstrap, "compacted-lagged")) == written["compacted-lagged"]
