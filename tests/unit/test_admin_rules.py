"""The pure rules behind the admin requests: replica lists, partition limits,
deletion dir names, the metadata store's all-or-nothing writes, and the
removal at start of partition dirs the metadata does not name."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from moldau.broker.assignment import check_replica_list
from moldau.broker.capacity import MAX_PARTITIONS_PER_REQUEST, check_request_size, check_room
from moldau.cluster.metadata import BrokerInfo, LocalMetadataStore, TopicInfo
from moldau.log.config import LogConfig
from moldau.log.manager import LogManager, delete_dir_name
from moldau.protocol.errors import ErrorCode, KafkaError

BROKER = BrokerInfo(0, "127.0.0.1", 9092)


def refusal(call: object, *args: object) -> KafkaError:
    with pytest.raises(KafkaError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value


@pytest.mark.parametrize(
    ("replicas", "replication", "message"),
    [
        ([], None, "an empty replica list"),
        ([1, 9], None, "broker 9, but no such broker is registered"),
        ([2, 1, 2], None, "the broker 2 more than once"),
        (
            [0, 1],
            3,
            "a partition with 2 replica(s), but this is not consistent with previous "
            "partitions, which have 3 replica(s)",
        ),
    ],
)
def test_replica_lists_are_checked_as_kafkas_controller_does(
    replicas: list[int], replication: int | None, message: str
) -> None:
    error = refusal(check_replica_list, replicas, {0, 1, 2}, replication)
    assert error.code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert message in (error.message or "")


def test_good_replica_lists_pass() -> None:
    check_replica_list([2, 0, 1], {0, 1, 2}, 3)
    check_replica_list([1], {0, 1, 2}, None)


def test_partition_limits_count_what_is_hosted() -> None:
    check_request_size(MAX_PARTITIONS_PER_REQUEST)
    assert refusal(check_request_size, MAX_PARTITIONS_PER_REQUEST + 1).code == (
        ErrorCode.POLICY_VIOLATION
    )
    check_room(90, 10, 100)
    error = refusal(check_room, 91, 10, 100)
    assert error.code == ErrorCode.POLICY_VIOLATION
    assert "max.broker.partitions=100" in (error.message or "")
    check_room(40, 10, 100, reserved=50)
    error = refusal(check_room, 41, 10, 100, 50)
    assert "keeps 50 for __consumer_offsets" in (error.message or "")


@pytest.mark.parametrize("partition", [0, 7, 99_999, 2**31 - 1])
def test_deletion_dir_names_stay_within_255_characters(partition: int) -> None:
    for topic in ("t", "x" * 200, "y" * 249):
        name = delete_dir_name(topic, partition)
        assert len(name) <= 255
        match = re.fullmatch(r"(.+)-(\d+)\.([0-9a-f]{32})-delete", name)
        assert match is not None and int(match[2]) == partition
        assert topic.startswith(match[1])
    assert delete_dir_name("short", 3).startswith("short-3.")


def test_a_failed_metadata_write_changes_nothing(tmp_path: Path) -> None:
    store = LocalMetadataStore(str(tmp_path), {"PLAINTEXT": BROKER})
    topic = TopicInfo("t", uuid.uuid4(), [[0]], {"retention.ms": "1"})
    store.create_topic(topic)
    first_ids = store.allocate_producer_ids(10)
    # A directory where the temporary file goes: every write fails for real.
    (tmp_path / f"{LocalMetadataStore.FILE_NAME}.tmp").mkdir()
    other = TopicInfo("u", uuid.uuid4(), [[0]])
    for change in (
        lambda: store.create_topic(other),
        lambda: store.delete_topic("t"),
        lambda: store.add_partitions("t", [[0], [0]]),
        lambda: store.set_topic_configs("t", {}),
        lambda: store.allocate_producer_ids(10),
    ):
        with pytest.raises(OSError):
            change()
    assert store.topic("u") is None and store.topic_by_id(other.topic_id) is None
    kept = store.topic("t")
    assert kept is not None and kept.replicas == [[0]] and kept.configs == {"retention.ms": "1"}
    assert store.topic_by_id(topic.topic_id) is kept
    (tmp_path / f"{LocalMetadataStore.FILE_NAME}.tmp").rmdir()
    assert store.allocate_producer_ids(10) == first_ids + 10
    reopened = LocalMetadataStore(str(tmp_path), {"PLAINTEXT": BROKER})
    assert set(reopened.topics()) == {"t"} and reopened.restored


def test_dirs_the_metadata_does_not_name_are_removed_at_load(tmp_path: Path) -> None:
    known, stale = uuid.uuid4(), uuid.uuid4()
    first = LogManager([str(tmp_path)], LogConfig())
    first.load()
    first.create("kept", 0, known)
    first.create("gone", 0, stale)
    first.create("kept", 1, known)
    first.close()
    wanted = {("kept", 0, known)}
    second = LogManager([str(tmp_path)], LogConfig())
    second.load(lambda topic, index, topic_id: (topic, index, topic_id) in wanted)
    assert [(p.topic, p.partition) for p in second.partitions()] == [("kept", 0)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["kept-0"]
    # The counts follow: the next partition goes to the only dir, and a
    # stale dir of the same name left on disk is replaced, not reused.
    (tmp_path / "kept-1").mkdir()
    (tmp_path / "kept-1" / "00000000000000000000.log").write_bytes(b"old records")
    fresh = second.create("kept", 1, known)
    assert fresh.log_end_offset == 0
    second.close()


def test_partition_dir_names_must_fit_the_file_system(tmp_path: Path) -> None:
    """Kafka's 249-character topic limit leaves room for 5 digits of partition."""
    logs = LogManager([str(tmp_path)], LogConfig())
    assert logs.dir_name_fits("y" * 249, 99_999)
    assert not logs.dir_name_fits("y" * 249, 100_000)
