"""Admin requests that ask for unbounded or inconsistent work are refused
with Kafka's error codes, and leave nothing behind when they fail.

Real brokers as subprocesses, real clients (confluent-kafka's AdminClient,
kafka-python), and exact requests over a raw connection where a client
cannot express the hostile case (gaps, negative indexes). A metadata or
checkpoint write is made to fail for real by putting a directory where its
temporary file goes.
"""

from __future__ import annotations

import json
import resource
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka import KafkaError as CKafkaError
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka.admin import KafkaAdminClient
from kafka.admin import NewTopic as NewPythonTopic
from kafka.errors import InvalidReplicationAssignmentError, TopicAuthorizationFailedError

from conftest import (
    MOLDAU,
    BrokerProcess,
    RawConnection,
    Rec,
    answers_api_versions,
    confluent_produce,
    confluent_read_all,
    create_topic,
    free_port,
    wait_for,
)

CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS, CREATE_PARTITIONS = 19, 20, 21, 37
POLICY_VIOLATION, INVALID_PARTITIONS, INVALID_REPLICA_ASSIGNMENT = 44, 37, 39
INVALID_REQUEST, KAFKA_STORAGE_ERROR, INVALID_TOPIC_EXCEPTION = 42, 56, 17


def partition_dirs(broker: BrokerProcess, topic: str) -> list[str]:
    """The live ``<topic>-<n>`` dirs of ``topic`` in the broker's data dir."""
    prefix = f"{topic}-"
    return sorted(
        p.name
        for p in broker.data_dir.iterdir()
        if p.is_dir() and p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
    )


def raw_create(broker: BrokerProcess, *topics: dict[str, Any]) -> list[dict[str, Any]]:
    """CreateTopics v5 with exactly these topic entries; the per-topic answers."""
    entries = [
        {"num_partitions": -1, "replication_factor": -1, "assignments": [], "configs": [], **t}
        for t in topics
    ]
    with RawConnection(broker.port) as conn:
        answer = conn.request(
            CREATE_TOPICS, 5, {"topics": entries, "timeout_ms": 10000, "validate_only": False}
        )
    return list(answer["topics"])


def manual(*replicas: tuple[int, list[int]]) -> list[dict[str, Any]]:
    return [{"partition_index": i, "broker_ids": b} for i, b in replicas]


def topic_names(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def test_a_huge_partition_count_is_refused_at_once(broker: BrokerProcess) -> None:
    started = time.monotonic()
    (answer,) = raw_create(broker, {"name": "huge", "num_partitions": 2**31 - 1})
    assert answer["error_code"] == POLICY_VIOLATION
    assert time.monotonic() - started < 5
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic("huge", num_partitions=50_000)])
    with pytest.raises(KafkaException) as caught:
        futures["huge"].result(10)
    assert caught.value.args[0].code() == CKafkaError.POLICY_VIOLATION
    # Kafka's cap is per request: 10,001 partitions over two topics fail both.
    answers = raw_create(
        broker, {"name": "a", "num_partitions": 5000}, {"name": "b", "num_partitions": 5001}
    )
    assert [a["error_code"] for a in answers] == [POLICY_VIOLATION] * 2
    assert partition_dirs(broker, "huge") == partition_dirs(broker, "a") == []
    assert not {"huge", "a", "b"} & topic_names(broker.bootstrap)


def test_partitions_beyond_the_broker_limit_are_refused(broker_factory: Any) -> None:
    """max.broker.partitions counts what is hosted plus the room kept for
    __consumer_offsets, so that user topics never make groups impossible."""
    broker = broker_factory(max_broker_partitions="20", offsets_topic_num_partitions="1")
    create_topic(broker.bootstrap, "fifteen", 15)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as caught:
        admin.create_topics([NewTopic("ten", num_partitions=10)])["ten"].result(10)
    assert caught.value.args[0].code() == CKafkaError.POLICY_VIOLATION
    assert "keeps 1 for __consumer_offsets" in caught.value.args[0].str()
    assert "max.broker.partitions=20" in caught.value.args[0].str()
    with pytest.raises(KafkaException) as caught:
        admin.create_partitions([NewPartitions("fifteen", 20)])["fifteen"].result(10)
    assert caught.value.args[0].code() == CKafkaError.POLICY_VIOLATION
    admin.create_partitions([NewPartitions("fifteen", 19)])["fifteen"].result(10)
    assert partition_dirs(broker, "ten") == []
    assert len(partition_dirs(broker, "fifteen")) == 19
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g"})
    try:
        consumer.commit(offsets=[TopicPartition("fifteen", 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    assert partition_dirs(broker, "__consumer_offsets") == ["__consumer_offsets-0"]


def test_a_partition_limit_beyond_the_open_file_limit_is_refused(broker: BrokerProcess) -> None:
    """With 256 open files allowed, 300 partitions would fail half way with
    EMFILE; they are refused, nothing is left, and smaller topics still work."""
    assert broker.process is not None
    resource.prlimit(broker.process.pid, resource.RLIMIT_NOFILE, (256, 256))
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as caught:
        admin.create_topics([NewTopic("many", num_partitions=300)])["many"].result(10)
    assert caught.value.args[0].code() == CKafkaError.POLICY_VIOLATION
    assert "ulimit -n" in caught.value.args[0].str()
    assert partition_dirs(broker, "many") == []
    create_topic(broker.bootstrap, "some", 20)
    sent = confluent_produce(broker.bootstrap, "some", [Rec(None, b"fits")])
    assert [r.value for r in sent] == [b"fits"]
    assert broker.stop() == 0
    broker.start()
    assert "some" in topic_names(broker.bootstrap) and "many" not in topic_names(broker.bootstrap)


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        (manual((0, [7])), "includes broker 7, but no such broker is registered"),
        (manual((0, [0, 0])), "includes the broker 0 more than once"),
        (manual((0, [])), "includes an empty replica list"),
        (manual((0, [0]), (2, [0])), "consecutive 0-based integer sequence"),
        (manual((-1, [0])), "consecutive 0-based integer sequence"),
        (manual((0, [0]), (0, [0])), "multiple manual partition assignments for partition 0"),
    ],
)
def test_bad_replica_assignments_are_refused_as_kafka_does(
    broker: BrokerProcess, assignments: list[dict[str, Any]], message: str
) -> None:
    (answer,) = raw_create(broker, {"name": "manual", "assignments": assignments})
    assert answer["error_code"] == INVALID_REPLICA_ASSIGNMENT
    assert message in answer["error_message"]
    assert partition_dirs(broker, "manual") == []
    (answer,) = raw_create(
        broker, {"name": "manual", "num_partitions": 1, "assignments": manual((0, [0]))}
    )
    assert answer["error_code"] == INVALID_REQUEST


def test_counts_and_assignments_of_create_partitions_are_checked(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "grow", 2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    cases = [
        (NewPartitions("grow", 2), CKafkaError.INVALID_PARTITIONS, "already has 2"),
        (NewPartitions("grow", 1), CKafkaError.INVALID_PARTITIONS, "not be an increase"),
        (NewPartitions("grow", 3, [[9]]), CKafkaError.INVALID_REPLICA_ASSIGNMENT, "broker 9"),
        (NewPartitions("grow", 3, [[0, 0]]), CKafkaError.INVALID_REPLICA_ASSIGNMENT, "once"),
        (NewPartitions("grow", 4, [[0]]), CKafkaError.INVALID_REPLICA_ASSIGNMENT, "only 1"),
    ]
    for request, code, message in cases:
        with pytest.raises(KafkaException) as caught:
            admin.create_partitions([request])["grow"].result(10)
        assert caught.value.args[0].code() == code, request
        assert message in caught.value.args[0].str()
    with RawConnection(broker.port) as conn:
        answer = conn.request(
            CREATE_PARTITIONS,
            2,
            {
                "topics": [{"name": "grow", "count": 3, "assignments": []}],
                "timeout_ms": 10000,
                "validate_only": False,
            },
        )
    assert answer["results"][0]["error_code"] == INVALID_REPLICA_ASSIGNMENT
    assert partition_dirs(broker, "grow") == ["grow-0", "grow-1"]


def test_a_metadata_write_that_fails_changes_nothing(broker: BrokerProcess) -> None:
    """DeleteTopics and CreateTopics with the metadata file unwritable: the
    running broker keeps what the file says, and the client is told."""
    create_topic(broker.bootstrap, "kept", 2)
    confluent_produce(broker.bootstrap, "kept", [Rec(b"k", b"v1"), Rec(b"k", b"v2")])
    blocker = broker.data_dir / "moldau-metadata.json.tmp"
    blocker.mkdir()
    with RawConnection(broker.port) as conn:
        answer = conn.request(DELETE_TOPICS, 5, {"topic_names": ["kept"], "timeout_ms": 10000})
    assert answer["responses"][0]["error_code"] == KAFKA_STORAGE_ERROR
    (created,) = raw_create(broker, {"name": "never", "num_partitions": 3})
    assert created["error_code"] == KAFKA_STORAGE_ERROR
    assert partition_dirs(broker, "never") == []
    assert "kept" in topic_names(broker.bootstrap)
    assert "never" not in topic_names(broker.bootstrap)
    assert sorted(r.value for r in confluent_read_all(broker.bootstrap, "kept")) == [b"v1", b"v2"]
    blocker.rmdir()
    assert broker.stop() == 0
    broker.start()
    assert sorted(r.value for r in confluent_read_all(broker.bootstrap, "kept")) == [b"v1", b"v2"]


def test_a_creation_failing_midway_leaves_nothing(broker: BrokerProcess) -> None:
    """The sixth partition's dir cannot be made (a file is in the way): the
    five made before it go again, and the metadata never names the topic."""
    (broker.data_dir / "mid-5").write_text("in the way")
    (answer,) = raw_create(broker, {"name": "mid", "num_partitions": 10})
    assert answer["error_code"] == KAFKA_STORAGE_ERROR
    assert partition_dirs(broker, "mid") == []
    assert sorted(p.name for p in broker.data_dir.iterdir() if p.name.startswith("mid")) == [
        "mid-5"
    ]
    assert "mid" not in topic_names(broker.bootstrap)
    (broker.data_dir / "mid-5").unlink()
    create_topic(broker.bootstrap, "mid", 10)
    assert len(partition_dirs(broker, "mid")) == 10


def test_delete_records_that_cannot_be_checkpointed_deletes_nothing(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "trim", 1)
    confluent_produce(broker.bootstrap, "trim", [Rec(None, b"%d" % i) for i in range(5)])
    blocker = broker.data_dir / "log-start-offset-checkpoint.tmp"
    blocker.mkdir()
    request = {
        "topics": [{"name": "trim", "partitions": [{"partition_index": 0, "offset": 3}]}],
        "timeout_ms": 10000,
    }
    with RawConnection(broker.port) as conn:
        answer = conn.request(DELETE_RECORDS, 1, request)
    (partition,) = answer["topics"][0]["partitions"]
    assert partition["error_code"] == KAFKA_STORAGE_ERROR
    assert [r.offset for r in confluent_read_all(broker.bootstrap, "trim")] == [0, 1, 2, 3, 4]
    blocker.rmdir()
    with RawConnection(broker.port) as conn:
        answer = conn.request(DELETE_RECORDS, 1, request)
    assert answer["topics"][0]["partitions"][0]["low_watermark"] == 3
    assert broker.stop() == 0
    broker.start()
    with RawConnection(broker.port) as conn:
        answer = conn.request(DELETE_RECORDS, 1, request)
    assert answer["topics"][0]["partitions"][0]["low_watermark"] == 3


def test_topic_names_of_249_characters_are_created_deleted_and_recreated_empty(
    broker: BrokerProcess,
) -> None:
    name = "n" * 249
    create_topic(broker.bootstrap, name, 2)
    confluent_produce(broker.bootstrap, name, [Rec(b"k", b"old")])
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics([name])[name].result(10)
    assert partition_dirs(broker, name) == []
    assert not [p for p in broker.data_dir.iterdir() if p.name.endswith("-delete")]
    create_topic(broker.bootstrap, name, 2)
    assert confluent_read_all(broker.bootstrap, name, timeout=3) == []
    assert broker.stop() == 0
    broker.start()
    assert confluent_read_all(broker.bootstrap, name, timeout=3) == []
    assert len(partition_dirs(broker, name)) == 2


def test_partition_dirs_the_metadata_does_not_name_are_removed_at_start(
    broker: BrokerProcess,
) -> None:
    """The state a crash inside DeleteTopics leaves: metadata saved without
    the topic, its partition dirs still there."""
    create_topic(broker.bootstrap, "gone", 3)
    create_topic(broker.bootstrap, "stays", 1)
    confluent_produce(broker.bootstrap, "stays", [Rec(None, b"x")])
    assert broker.stop() == 0
    path = broker.data_dir / "moldau-metadata.json"
    metadata = json.loads(path.read_text())
    metadata["topics"] = [t for t in metadata["topics"] if t["name"] != "gone"]
    path.write_text(json.dumps(metadata))
    broker.start()
    assert partition_dirs(broker, "gone") == []
    assert "removing" in broker.output()
    assert [r.value for r in confluent_read_all(broker.bootstrap, "stays")] == [b"x"]


def test_internal_topics_cannot_be_written_created_or_deleted(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "work", 1)
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": "g", "enable.auto.commit": False}
    )
    try:
        consumer.commit(offsets=[TopicPartition("work", 0, 7)], asynchronous=False)
    finally:
        consumer.close()

    # A forged commit: refused as Kafka refuses appends to internal topics.
    errors: list[CKafkaError] = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
    producer.produce(
        "__consumer_offsets",
        b"forged",
        key=b"forged",
        partition=0,
        on_delivery=lambda e, _: errors.append(e),
    )
    assert producer.flush(10) == 0
    assert [e.code() for e in errors] == [CKafkaError.TOPIC_EXCEPTION]

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    with pytest.raises(KafkaException) as caught:
        admin.delete_topics(["__consumer_offsets"])["__consumer_offsets"].result(10)
    assert caught.value.args[0].code() == CKafkaError.TOPIC_AUTHORIZATION_FAILED
    grow = admin.create_partitions([NewPartitions("__consumer_offsets", 51)])
    with pytest.raises(KafkaException) as caught:
        grow["__consumer_offsets"].result(10)
    assert caught.value.args[0].code() == CKafkaError.TOPIC_AUTHORIZATION_FAILED
    python_admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            python_admin.delete_topics(["__consumer_offsets"])
        with pytest.raises(InvalidReplicationAssignmentError):
            python_admin.create_topics([NewPythonTopic("t", -1, -1, replica_assignments={0: [5]})])
    finally:
        python_admin.close()
    (answer,) = raw_create(broker, {"name": "__transaction_state", "num_partitions": 1})
    assert answer["error_code"] == INVALID_REQUEST
    trim = {"name": "__consumer_offsets", "partitions": [{"partition_index": 0, "offset": -1}]}
    with RawConnection(broker.port) as conn:
        answer = conn.request(DELETE_RECORDS, 1, {"topics": [trim], "timeout_ms": 10000})
    assert answer["topics"][0]["partitions"][0]["error_code"] == INVALID_TOPIC_EXCEPTION

    assert broker.stop() == 0
    broker.start()
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g"})
    try:
        (committed,) = consumer.committed([TopicPartition("work", 0)], timeout=10)
    finally:
        consumer.close()
    assert committed.offset == 7


def test_a_hand_made_offsets_topic_is_refused(broker: BrokerProcess) -> None:
    """Before any group exists: one partition of __consumer_offsets would
    break every group; the broker creates it itself, with offsets.topic.*."""
    (answer,) = raw_create(broker, {"name": "__consumer_offsets", "num_partitions": 1})
    assert answer["error_code"] == INVALID_REQUEST
    assert partition_dirs(broker, "__consumer_offsets") == []
    create_topic(broker.bootstrap, "work", 1)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g"})
    try:
        consumer.commit(offsets=[TopicPartition("work", 0, 1)], asynchronous=False)
    finally:
        consumer.close()
    assert len(partition_dirs(broker, "__consumer_offsets")) == 50


@contextmanager
def broker_with_file_limit(data_dir: Path, soft: int, hard: int) -> Iterator[tuple[int, Path]]:
    """``moldau broker`` started with RLIMIT_NOFILE (soft, hard); yields its
    pid and log file once it answers."""
    port = free_port()
    log_path = data_dir.parent / f"limited-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                MOLDAU,
                "broker",
                "--override",
                f"listeners=PLAINTEXT://127.0.0.1:{port}",
                "--override",
                f"log.dirs={data_dir}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        )
    try:
        wait_for(lambda: answers_api_versions(port), 15, what="the broker")
        yield process.pid, log_path
    finally:
        process.kill()
        process.wait(10)


def test_the_broker_raises_its_open_file_limit_to_the_hard_limit(tmp_path: Path) -> None:
    """As Kafka's operations guide advises for ulimit -n, and logged."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with broker_with_file_limit(tmp_path / "data", 256, hard) as (pid, log_path):
        soft, _ = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        assert soft == min(hard, 1 << 20) > 256
        assert "raised the open file limit (ulimit -n) from 256" in log_path.read_text()


def test_a_start_with_too_few_files_says_so(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "forty", 40)
    assert broker.stop() == 0
    with broker_with_file_limit(broker.data_dir, 160, 160) as (_, log_path):
        assert "files are open of this process's limit of 160" in log_path.read_text()


def test_a_large_creation_does_not_stall_other_clients_or_shutdown(broker: BrokerProcess) -> None:
    """Thousands of partitions take seconds to create (fsyncs): the loop
    serves other requests in between, and SIGTERM stops the broker midway
    without leaving the half-made topic behind."""
    create_topic(broker.bootstrap, "busy", 1)
    total = 3000
    with RawConnection(broker.port, timeout=60) as creator:
        entry = {
            "name": "big",
            "num_partitions": total,
            "replication_factor": 1,
            "assignments": [],
            "configs": [],
        }
        creator.send(CREATE_TOPICS, 5, {"topics": [entry], "timeout_ms": 60000})
        wait_for(lambda: len(partition_dirs(broker, "big")) > 10, 30, what="creation under way")
        started = time.monotonic()
        sent = confluent_produce(broker.bootstrap, "busy", [Rec(None, b"meanwhile")])
        assert [r.value for r in sent] == [b"meanwhile"]
        assert time.monotonic() - started < 5
        assert 0 < len(partition_dirs(broker, "big")) < total, "the creation already ended"
        assert broker.stop(timeout=10) == 0
    broker.start()
    assert partition_dirs(broker, "big") == []
    assert "big" not in topic_names(broker.bootstrap)


def test_counts_kafka_refuses(broker: BrokerProcess) -> None:
    answers = raw_create(
        broker,
        {"name": "rf2", "num_partitions": 1, "replication_factor": 2},
        {"name": "rf0", "num_partitions": 1, "replication_factor": 0},
        {"name": "p0", "num_partitions": 0, "replication_factor": 1},
        {"name": "p-2", "num_partitions": -2, "replication_factor": 1},
    )
    assert [a["error_code"] for a in answers] == [38, 38, INVALID_PARTITIONS, INVALID_PARTITIONS]
    assert not {"rf2", "rf0", "p0", "p-2"} & topic_names(broker.bootstrap)
