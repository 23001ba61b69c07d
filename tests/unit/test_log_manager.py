"""LogManager: partitions over log dirs, checkpoints, deletion, locking."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from moldau.log import checkpoint
from moldau.log.config import LogConfig
from moldau.log.manager import LogDirLockedError, LogManager, parse_partition_dir
from moldau.protocol.records import Record, build_batch

TOPIC_ID = uuid.UUID("ed31fa53-69fd-45d3-97c6-37fa6e34d53d")


def batch(n: int = 1) -> bytes:
    return build_batch([Record(i, 0, b"k", b"v" * 20) for i in range(n)])


def manager(*dirs: Path, **config: int) -> LogManager:
    m = LogManager([str(d) for d in dirs], LogConfig(**config), clock=lambda: 1_000)
    m.load()
    return m


def test_create_get_and_reload(tmp_path: Path) -> None:
    m = manager(tmp_path)
    log = m.create("my-topic", 3, TOPIC_ID)
    assert m.create("my-topic", 3, TOPIC_ID) is log
    assert m.get("my-topic", 3) is log and m.get("my-topic", 0) is None
    log.append(batch(4))
    log.high_watermark = 4
    m.close()
    assert (tmp_path / "my-topic-3" / "00000000000000000000.log").exists()
    m = manager(tmp_path)
    (again,) = m.partitions()
    assert (again.topic, again.partition, again.topic_id) == ("my-topic", 3, TOPIC_ID)
    assert (again.log_end_offset, again.high_watermark, again.recovery_point) == (4, 4, 4)
    m.close()


def test_file_formats(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.create("a", 0, TOPIC_ID).append(batch(2))
    m.create("a", 1, TOPIC_ID)
    m.close()
    assert (tmp_path / "a-0" / "partition.metadata").read_text() == (
        "version: 0\ntopic_id: 7TH6U2n9RdOXxjf6bjTVPQ\n"
    )
    assert (tmp_path / "recovery-point-offset-checkpoint").read_text() == "0\n2\na 0 2\na 1 0\n"
    assert (tmp_path / "log-start-offset-checkpoint").read_text() == "0\n2\na 0 0\na 1 0\n"
    assert (tmp_path / "replication-offset-checkpoint").read_text() == "0\n2\na 0 0\na 1 0\n"
    assert (tmp_path / ".kafka_cleanshutdown").exists()
    assert checkpoint.parse_topic_id("7TH6U2n9RdOXxjf6bjTVPQ") == TOPIC_ID


def test_checkpoint_round_trip_and_corruption(tmp_path: Path) -> None:
    path = str(tmp_path / "cp")
    offsets = {("x", 0): 5, ("y.z", 12): 1 << 40}
    checkpoint.write_offsets(path, offsets)
    assert checkpoint.read_offsets(path) == offsets
    assert checkpoint.read_offsets(str(tmp_path / "missing")) == {}
    Path(path).write_text("0\n3\nx 0 5\n")
    with pytest.raises(checkpoint.CorruptCheckpointError):
        checkpoint.read_offsets(path)


def test_corrupt_checkpoint_means_full_recovery(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.create("t", 0, TOPIC_ID).append(batch(3))
    m.close()
    (tmp_path / "recovery-point-offset-checkpoint").write_text("garbage")
    m = manager(tmp_path)
    assert m.get("t", 0).log_end_offset == 3  # type: ignore[union-attr]
    m.close()


def test_unclean_stop_recovers(tmp_path: Path) -> None:
    m = manager(tmp_path)
    log = m.create("t", 0, TOPIC_ID)
    log.append(batch(3))
    m.checkpoint()
    log.append(batch(2))
    for fd in m._locks:  # the process dies: locks go, nothing is flushed or marked clean
        os.close(fd)
    with open(log.segments[-1].path, "ab") as f:
        f.write(b"\x00" * 30)
    m = manager(tmp_path)
    again = m.get("t", 0)
    assert again is not None and again.log_end_offset == 5
    assert not (tmp_path / ".kafka_cleanshutdown").exists()
    m.close()


def test_delete_keeps_open_slices_readable(tmp_path: Path) -> None:
    m = manager(tmp_path)
    log = m.create("t", 0, TOPIC_ID)
    log.append(batch(2))
    sent = log.read(0, 1 << 20)
    m.delete("t", 0)
    assert m.get("t", 0) is None
    assert os.listdir(tmp_path) == [".lock"]
    assert b"v" * 20 in b"".join(s.read() for s in sent.slices)
    m.close()


def test_leftover_delete_dir_is_finished_on_load(tmp_path: Path) -> None:
    m = manager(tmp_path)
    m.create("t", 0, TOPIC_ID)
    m.close()
    os.rename(tmp_path / "t-0", tmp_path / f"t-0.{uuid.uuid4().hex}-delete")
    (tmp_path / "not-a-partition").mkdir()
    m = manager(tmp_path)
    assert list(m.partitions()) == []
    assert sorted(os.listdir(tmp_path)) == [
        ".lock",
        "log-start-offset-checkpoint",
        "not-a-partition",
        "recovery-point-offset-checkpoint",
        "replication-offset-checkpoint",
    ]
    m.close()


def test_several_log_dirs_are_balanced(tmp_path: Path) -> None:
    dirs = [tmp_path / "d1", tmp_path / "d2"]
    m = manager(*dirs)
    for p in range(4):
        m.create("t", p, TOPIC_ID)
    assert [len(os.listdir(d)) for d in dirs] == [3, 3]  # 2 partitions + .lock each
    m.close()
    m = manager(*dirs)
    assert sorted(p.partition for p in m.partitions()) == [0, 1, 2, 3]
    m.close()


def test_a_log_dir_has_one_owner(tmp_path: Path) -> None:
    m = manager(tmp_path)
    with pytest.raises(LogDirLockedError):
        manager(tmp_path)
    m.close()
    manager(tmp_path).close()


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("orders-0", ("orders", 0)),
        ("my-dashed-topic-12", ("my-dashed-topic", 12)),
        ("__consumer_offsets-49", ("__consumer_offsets", 49)),
        ("t-0.abcdef-delete", None),
        ("t-0.abcdef-future", None),
        ("noindex", None),
        ("-3", None),
    ],
)
def test_partition_dir_names(name: str, parsed: tuple[str, int] | None) -> None:
    assert parse_partition_dir(name) == parsed


@pytest.mark.parametrize("damage", [b"version: 0\ntopic_id: 7TH6U2n9", b"\x00\x00\x00", None])
def test_a_damaged_partition_metadata_does_not_stop_the_load(
    tmp_path: Path, damage: bytes | None
) -> None:
    """A torn or lost ``partition.metadata`` used to stop the broker at start;
    now the log loads without a topic id and gets it back from the metadata."""
    m = manager(tmp_path)
    m.create("t", 0, TOPIC_ID).append(batch(3))
    m.close()
    metadata_file = tmp_path / "t-0" / "partition.metadata"
    if damage is None:
        metadata_file.unlink()
    else:
        metadata_file.write_bytes(damage)
    m = manager(tmp_path)
    (loaded,) = m.partitions()
    assert loaded.log_end_offset == 3
    assert m.create("t", 0, TOPIC_ID) is loaded and loaded.topic_id == TOPIC_ID
    m.close()
    assert checkpoint.read_partition_metadata(str(tmp_path / "t-0")) == TOPIC_ID
