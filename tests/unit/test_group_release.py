"""Coordinator failover, the parts without a cluster: loading an offsets
partition in slices (fake clock), and answers released at the high watermark
(real partitions, a real purgatory)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

from test_group_admin import standalone_commit
from test_group_support import Harness

from moldau.broker.coordinator_log import (
    Written,
    coordinator_error,
    release_when_replicated,
    replication_status,
)
from moldau.broker.purgatory import FetchPurgatory
from moldau.group import errors
from moldau.group.loading import PartitionLoad
from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.protocol.errors import ErrorCode
from moldau.protocol.records import Record, build_batch
from moldau.replication.partition import Partition

# --- loading in slices ------------------------------------------------------------


def committed_records(h: Harness, groups: int) -> list[tuple[bytes, bytes | None]]:
    """Records of ``groups`` standalone groups' commits, all in partition 0."""
    for g in range(groups):
        assert standalone_commit(h.coord, f"g{g}") == errors.NONE
    return h.records_of(0)


def ticking(
    records: list[tuple[bytes, bytes | None]], h: Harness, ms: int
) -> Iterator[tuple[bytes, bytes | None]]:
    """The records, as a log read that takes ``ms`` of the clock per record."""
    for record in records:
        h.clock.now += ms
        yield record


def test_a_load_replays_in_slices_and_serves_when_done() -> None:
    h = Harness(offsets_topic_num_partitions=1)
    records = committed_records(h, 10)
    coord = h.new_coordinator()
    load = PartitionLoad(coord, 0, (ticking(records, h, 5)), h.clock, slice_ms=20)
    load.start()
    assert coord.fetch_offsets("g0", None).error_code == errors.COORDINATOR_LOAD_IN_PROGRESS
    slices = 0
    while not load.run_slice():
        slices += 1
        # Between slices the loop serves others; this partition's groups wait.
        assert coord.fetch_offsets("g0", None).error_code == errors.COORDINATOR_LOAD_IN_PROGRESS
        assert load.replayed == 4 * slices  # 20 ms of 5 ms records
    assert slices == 2 and load.replayed == 10
    assert coord.owned_partitions == {0}
    assert coord.fetch_offsets("g9", None) == h.coord.fetch_offsets("g9", None)


def test_a_load_abandoned_mid_way_answers_not_coordinator() -> None:
    h = Harness(offsets_topic_num_partitions=1)
    records = committed_records(h, 10)
    coord = h.new_coordinator()
    load = PartitionLoad(coord, 0, (ticking(records, h, 5)), h.clock, slice_ms=20)
    load.start()
    assert not load.run_slice()
    load.abandon()
    assert load.run_slice()  # nothing more is read
    assert load.replayed == 4
    assert coord.fetch_offsets("g0", None).error_code == errors.NOT_COORDINATOR
    assert coord.owned_partitions == frozenset() and coord.loading_partitions == frozenset()


def test_a_slice_replays_at_least_one_record_and_counts_unreadable_ones() -> None:
    h = Harness(offsets_topic_num_partitions=1)
    good = committed_records(h, 1)
    coord = h.new_coordinator()
    bad = [(b"\x00\x01\x00", b"")]
    load = PartitionLoad(coord, 0, (ticking(bad + good, h, 50)), h.clock, slice_ms=20)
    load.start()
    assert not load.run_slice() and load.replayed == 1
    assert not load.run_slice() and load.replayed == 2
    assert load.run_slice()
    assert load.skipped == 1
    assert coord.fetch_offsets("g0", None) == h.coord.fetch_offsets("g0", None)


def test_loading_again_drops_the_groups_of_the_earlier_leadership() -> None:
    h = Harness(offsets_topic_num_partitions=1)
    waiting = h.join_new("g")
    load = PartitionLoad(h.coord, 0, iter([]), h.clock)
    load.start()
    assert waiting.result.error_code == errors.NOT_COORDINATOR
    assert h.coord.describe_groups(["g"])[0].error_code == errors.COORDINATOR_LOAD_IN_PROGRESS
    assert load.run_slice()
    assert h.coord.describe_groups(["g"])[0].state == "Dead"


# --- answers released at the high watermark ---------------------------------------


def leader(directory: Path, isr: list[int]) -> Partition:
    log = PartitionLog.open(
        str(directory / "o-0"), "o", 0, uuid.UUID(int=5), LogConfig(), lambda: 1_000_000
    )
    partition = Partition("o", 0, uuid.UUID(int=5), log, 1, replicas=[1, 2, 3])
    partition.become_leader(epoch=3, isr=isr, now_ms=0)
    return partition


def write(partition: Partition) -> Written:
    result = partition.append_as_leader(build_batch([Record(0, 0, b"k", b"v")], base_timestamp=1))
    return Written(partition, result.last_offset, partition.leader_epoch)


def test_an_answer_waits_for_every_isr_member(tmp_path: Path) -> None:
    partition = leader(tmp_path, [1, 2, 3])
    written = write(partition)
    assert replication_status([written], 2) is None
    partition.update_follower_fetch(2, partition.log_end_offset, partition.log_end_offset, 1)
    assert replication_status([written], 2) is None  # 3 has not fetched it
    partition.update_follower_fetch(3, partition.log_end_offset, partition.log_end_offset, 1)
    assert replication_status([written], 2) == ErrorCode.NONE


def test_a_single_replica_answers_at_once(tmp_path: Path) -> None:
    partition = leader(tmp_path, [1])
    assert replication_status([write(partition)], 1) == ErrorCode.NONE


def test_a_deposed_leader_answers_not_coordinator(tmp_path: Path) -> None:
    partition = leader(tmp_path, [1, 2, 3])
    written = write(partition)
    partition.become_follower(leader_id=2, epoch=4)
    assert replication_status([written], 1) == ErrorCode.NOT_COORDINATOR


def test_too_few_replicas_answer_coordinator_not_available(tmp_path: Path) -> None:
    partition = leader(tmp_path, [1, 2])
    written = write(partition)
    partition.update_follower_fetch(2, partition.log_end_offset, partition.log_end_offset, 1)
    partition.isr_changed([1], partition.partition_epoch + 1)
    assert replication_status([written], 2) == ErrorCode.COORDINATOR_NOT_AVAILABLE


def test_kafkas_error_mapping() -> None:
    assert coordinator_error(ErrorCode.REQUEST_TIMED_OUT) == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert coordinator_error(ErrorCode.NOT_ENOUGH_REPLICAS) == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert coordinator_error(ErrorCode.KAFKA_STORAGE_ERROR) == ErrorCode.NOT_COORDINATOR
    assert coordinator_error(ErrorCode.CORRUPT_MESSAGE) == ErrorCode.CORRUPT_MESSAGE


def test_the_purgatory_releases_on_the_high_watermark_or_times_out(tmp_path: Path) -> None:
    async def run() -> tuple[ErrorCode, ErrorCode]:
        purgatory = FetchPurgatory()
        partition = leader(tmp_path, [1, 2, 3])
        partition.on_append = lambda p: purgatory.wake((p.topic, p.index))
        written = write(partition)
        waiting = release_when_replicated(purgatory, [written], 1, 5_000, lambda code: code)
        assert not isinstance(waiting, ErrorCode)
        task = asyncio.ensure_future(waiting)
        await asyncio.sleep(0)
        assert not task.done()
        end = partition.log_end_offset
        partition.update_follower_fetch(2, end, end, 1)
        partition.update_follower_fetch(3, end, end, 1)
        released = await asyncio.wait_for(task, 1)
        stuck = write(partition)
        timed_out = release_when_replicated(purgatory, [stuck], 1, 20, lambda code: code)
        assert not isinstance(timed_out, ErrorCode)
        return released, await timed_out

    released, timed_out = asyncio.run(run())
    assert released == ErrorCode.NONE
    assert timed_out == ErrorCode.COORDINATOR_NOT_AVAILABLE
