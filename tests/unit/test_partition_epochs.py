"""Partition: the KIP-320 epoch check, and the epochs a new leader records."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.records import Record, build_batch
from moldau.replication.partition import Partition


def make_partition(directory: Path, broker_id: int = 1) -> Partition:
    log = PartitionLog.open(
        str(directory / "t-0"), "t", 0, uuid.UUID(int=3), LogConfig(), lambda: 1_000_000
    )
    return Partition("t", 0, uuid.UUID(int=3), log, broker_id, replicas=[broker_id, 2])


def batch() -> bytes:
    return build_batch([Record(0, 0, None, b"v")], base_timestamp=1)


def epoch_error(partition: Partition, requested: int) -> ErrorCode | None:
    try:
        partition.check_leader_epoch(requested)
    except KafkaError as exc:
        return exc.code
    return None


@given(current=st.integers(0, 1 << 20), requested=st.integers(-1, 1 << 20))
def test_check_leader_epoch_is_kafkas_rule(
    tmp_path_factory: pytest.TempPathFactory, current: int, requested: int
) -> None:
    partition = make_partition(tmp_path_factory.mktemp("p"))
    partition.leader_epoch = current
    expected = (
        None
        if requested in (-1, current)
        else ErrorCode.FENCED_LEADER_EPOCH
        if requested < current
        else ErrorCode.UNKNOWN_LEADER_EPOCH
    )
    assert epoch_error(partition, requested) == expected


def test_a_follower_checks_epochs_too(tmp_path: Path) -> None:
    partition = make_partition(tmp_path)
    partition.become_follower(leader_id=2, epoch=4)
    assert epoch_error(partition, 3) == ErrorCode.FENCED_LEADER_EPOCH
    assert epoch_error(partition, 5) == ErrorCode.UNKNOWN_LEADER_EPOCH
    assert epoch_error(partition, 4) is None
    with pytest.raises(KafkaError) as refused:
        partition.append_as_leader(batch())
    assert refused.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER


def test_a_new_leader_records_its_epoch_before_any_append(tmp_path: Path) -> None:
    partition = make_partition(tmp_path)
    partition.become_leader(epoch=0, isr=[1])
    partition.append_as_leader(batch())
    partition.append_as_leader(batch())
    partition.become_follower(leader_id=2, epoch=1)
    partition.become_leader(epoch=2, isr=[1])
    assert partition.log.leader_epochs.entries == [(0, 0), (2, 2)]
    # Epoch 1 never wrote here: it ended where epoch 0 did.
    assert partition.end_offset_for_epoch(0) == (0, 2)
    assert partition.end_offset_for_epoch(1) == (0, 2)
    assert partition.end_offset_for_epoch(2) == (2, 2)
    partition.append_as_leader(batch())
    assert partition.end_offset_for_epoch(2) == (2, 3)
    assert partition.end_offset_for_epoch(3) == (-1, -1)
    assert partition.log.leader_epochs.epoch_for_offset(2) == 2


def test_leading_at_an_older_epoch_keeps_the_history(tmp_path: Path) -> None:
    partition = make_partition(tmp_path)
    partition.become_leader(epoch=5, isr=[1])
    partition.append_as_leader(batch())
    partition.become_leader(epoch=0, isr=[1])
    assert partition.log.leader_epochs.entries == [(5, 0)]


def test_an_offline_partition_answers_storage_errors(tmp_path: Path) -> None:
    partition = make_partition(tmp_path)
    partition.become_leader(epoch=0, isr=[1])
    partition.log.offline = "disk gone"
    with pytest.raises(KafkaError) as refused:
        partition.end_offset_for_epoch(0)
    assert refused.value.code == ErrorCode.KAFKA_STORAGE_ERROR


def test_diverging_epoch_tells_a_fetcher_where_to_truncate(tmp_path: Path) -> None:
    partition = make_partition(tmp_path)
    partition.become_leader(epoch=0, isr=[1])
    for _ in range(3):
        partition.append_as_leader(batch())
    partition.become_leader(epoch=3, isr=[1])
    for _ in range(2):
        partition.append_as_leader(batch())
    # Epoch 0 holds 0..2, epoch 3 holds 3..4.
    assert partition.diverging_epoch(3, 0) is None
    assert partition.diverging_epoch(5, 3) is None
    assert partition.diverging_epoch(4, 0) == (0, 3)  # epoch 0 ended at 3 here
    assert partition.diverging_epoch(5, 2) == (0, 3)  # epoch 2 never wrote here
    for offset, epoch in ((5, 4), (0, -1)):  # an epoch this log cannot place
        with pytest.raises(KafkaError) as refused:
            partition.diverging_epoch(offset, epoch)
        assert refused.value.code == ErrorCode.OFFSET_OUT_OF_RANGE
    partition.log.delete_records_before(2)
    with pytest.raises(KafkaError) as refused:
        partition.diverging_epoch(1, 0)
    assert refused.value.code == ErrorCode.OFFSET_OUT_OF_RANGE
