"""Small text files Kafka keeps next to the logs, in Kafka's formats.

Offset checkpoints (``recovery-point-offset-checkpoint``,
``log-start-offset-checkpoint``, ``replication-offset-checkpoint``,
``cleaner-offset-checkpoint``) live in
each log dir::

    0                      <- format version
    2                      <- number of entries
    orders 0 1234          <- topic partition offset
    orders 1 99

``leader-epoch-checkpoint`` lives in each partition dir and lists the
leader-epoch cache (``leader_epochs.py``) in the same frame, one
``epoch start_offset`` line per entry::

    0
    2
    0 0
    3 1500

``partition.metadata`` lives in each partition dir and names the topic id
(Kafka's Uuid text form: base64url of the 16 bytes, without padding)::

    version: 0
    topic_id: 7fFqU2n9RdOXxjf6bjTVPQ

Every file is replaced atomically: written to a temp file, fsynced, renamed
over the old one, and the directory fsynced, so a crash leaves either the
old or the new content.
"""

from __future__ import annotations

import base64
import contextlib
import os
import uuid
from collections.abc import Mapping, Sequence

from moldau.log import fileops

__all__ = [
    "CLEANER_OFFSET_CHECKPOINT",
    "LEADER_EPOCH_CHECKPOINT",
    "LOG_START_OFFSET_CHECKPOINT",
    "PARTITION_METADATA",
    "RECOVERY_POINT_CHECKPOINT",
    "REPLICATION_OFFSET_CHECKPOINT",
    "CorruptCheckpointError",
    "fsync_dir",
    "parse_topic_id",
    "read_leader_epochs",
    "read_offsets",
    "read_partition_metadata",
    "topic_id_text",
    "write_atomically",
    "write_leader_epochs",
    "write_offsets",
    "write_partition_metadata",
]

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
REPLICATION_OFFSET_CHECKPOINT = "replication-offset-checkpoint"
CLEANER_OFFSET_CHECKPOINT = "cleaner-offset-checkpoint"
PARTITION_METADATA = "partition.metadata"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"

TopicPartition = tuple[str, int]


class CorruptCheckpointError(ValueError):
    """A checkpoint file that is not in the expected format."""


def fsync_dir(path: str) -> None:
    """Make a rename or file creation inside ``path`` durable."""
    fd = fileops.open_fd(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fileops.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: str, content: str | bytes) -> None:
    """Replace ``path`` with ``content``, durably. On failure (a full disk)
    the old file is untouched and the temp file removed."""
    data = content.encode() if isinstance(content, str) else content
    tmp = path + ".tmp"
    try:
        fd = fileops.open_fd(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[fileops.pwrite(fd, view, len(data) - len(view)) :]
            fileops.fsync(fd)
        finally:
            os.close(fd)
        fileops.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            fileops.unlink(tmp)
        raise
    fsync_dir(os.path.dirname(path) or ".")


def write_offsets(path: str, offsets: Mapping[TopicPartition, int]) -> None:
    lines = [f"{topic} {partition} {offset}" for (topic, partition), offset in offsets.items()]
    _write_entries(path, lines)


def read_offsets(path: str) -> dict[TopicPartition, int]:
    """The checkpoint's entries; empty if the file does not exist."""
    entries = _read_entries(path)
    offsets = {}
    try:
        for line in entries or ():
            topic, partition, offset = line.split(" ")
            offsets[(topic, int(partition))] = int(offset)
    except ValueError as exc:
        raise CorruptCheckpointError(f"{path}: {exc}") from exc
    return offsets


def write_leader_epochs(partition_dir: str, entries: Sequence[tuple[int, int]]) -> None:
    """Replace the partition's ``leader-epoch-checkpoint`` with ``entries``."""
    lines = [f"{epoch} {start_offset}" for epoch, start_offset in entries]
    _write_entries(os.path.join(partition_dir, LEADER_EPOCH_CHECKPOINT), lines)


def read_leader_epochs(partition_dir: str) -> list[tuple[int, int]] | None:
    """The (epoch, start offset) entries of the partition's
    ``leader-epoch-checkpoint``, or None if there is no such file."""
    path = os.path.join(partition_dir, LEADER_EPOCH_CHECKPOINT)
    entries = _read_entries(path)
    if entries is None:
        return None
    try:
        pairs = [line.split(" ") for line in entries]
        return [(int(epoch), int(start_offset)) for epoch, start_offset in pairs]
    except ValueError as exc:
        raise CorruptCheckpointError(f"{path}: {exc}") from exc


def _write_entries(path: str, lines: Sequence[str]) -> None:
    write_atomically(path, "\n".join(["0", str(len(lines)), *lines]) + "\n")


def _read_entries(path: str) -> list[str] | None:
    """The entry lines of a version-0 checkpoint; None if the file does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    try:
        if lines[0].strip() != "0":
            raise CorruptCheckpointError(f"{path}: unsupported version {lines[0]!r}")
        count = int(lines[1])
    except (IndexError, ValueError) as exc:
        raise CorruptCheckpointError(f"{path}: {exc}") from exc
    entries = lines[2 : 2 + count]
    if len(entries) != count:
        raise CorruptCheckpointError(f"{path}: expected {count} entries")
    return entries


def topic_id_text(topic_id: uuid.UUID) -> str:
    """Kafka's textual Uuid: url-safe base64 of the bytes, no padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")


def parse_topic_id(text: str) -> uuid.UUID:
    return uuid.UUID(bytes=base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def write_partition_metadata(partition_dir: str, topic_id: uuid.UUID) -> None:
    text = f"version: 0\ntopic_id: {topic_id_text(topic_id)}\n"
    write_atomically(os.path.join(partition_dir, PARTITION_METADATA), text)


def read_partition_metadata(partition_dir: str) -> uuid.UUID | None:
    """The topic id recorded for a partition dir, or None if there is no file."""
    path = os.path.join(partition_dir, PARTITION_METADATA)
    try:
        with open(path, encoding="utf-8") as f:
            fields = dict(line.split(": ", 1) for line in f.read().splitlines() if line)
        if fields["version"] != "0":
            raise CorruptCheckpointError(f"{path}: unsupported version {fields['version']!r}")
        return parse_topic_id(fields["topic_id"])
    except FileNotFoundError:
        return None
    except (KeyError, ValueError) as exc:
        raise CorruptCheckpointError(f"{path}: {exc}") from exc
