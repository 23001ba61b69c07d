"""All partition logs of a broker, over one or more log dirs.

Each log dir holds ``<topic>-<partition>/`` directories and the offset
checkpoint files, as Kafka lays them out. A ``.lock`` file keeps a second
broker out of a dir; ``.kafka_cleanshutdown`` (written last on close, removed
on load) tells the next start that no recovery is needed.

A full disk must not stop the broker from starting, serving reads or
stopping: loading writes nothing it needs (a failed index write or marker
removal is logged), and checkpoints are optional (an old one only means a
longer recovery), so their failures are logged, never raised. A dir holding
an offline partition is not marked clean at close, so the next start
recovers it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable

from moldau.log import fileops
from moldau.log.checkpoint import (
    CLEANER_OFFSET_CHECKPOINT,
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
    CorruptCheckpointError,
    fsync_dir,
    read_offsets,
    read_partition_metadata,
    write_offsets,
    write_partition_metadata,
)
from moldau.log.cleaner import CleanerConfig, LogCleaner
from moldau.log.config import LogConfig
from moldau.log.errors import KafkaStorageError
from moldau.log.partition_log import PartitionLog

__all__ = ["LogManager", "parse_partition_dir"]

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
DELETE_SUFFIX = "-delete"
ZERO_UUID = uuid.UUID(int=0)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


#: Kafka bounds a deletion dir's name to 255 characters (LocalLog.logDeleteDirName).
DIR_NAME_MAX = 255


def delete_dir_name(topic: str, partition: int, limit: int = DIR_NAME_MAX) -> str:
    """Kafka's ``<topic>-<partition>.<uuid hex>-delete``, the topic cut short
    so that the name stays within ``limit``: a topic of 249 characters is as
    deletable as a short one."""
    suffix = f"-{partition}.{uuid.uuid4().hex}{DELETE_SUFFIX}"
    return topic[: max(1, limit - len(suffix))] + suffix


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    """``(topic, partition)`` for a ``<topic>-<partition>`` dir name, else None
    (deleted, future and stray dirs, stray files)."""
    topic, dash, number = name.rpartition("-")
    if not dash or not topic or not number.isdigit() or "." in number:
        return None
    return topic, int(number)


class LogDirLockedError(RuntimeError):
    """Another process uses this log dir."""


class LogManager:
    def __init__(
        self,
        log_dirs: list[str],
        default_config: LogConfig,
        clock: Callable[[], int] = wall_clock_ms,
        cleaner_config: CleanerConfig | None = None,
    ) -> None:
        if not log_dirs:
            raise ValueError("at least one log dir is needed")
        self.log_dirs = [os.path.abspath(d) for d in log_dirs]
        self.default_config = default_config
        self._clock = clock
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        #: Partitions per log dir, so that placing one costs O(dirs).
        self._counts = dict.fromkeys(self.log_dirs, 0)
        self._locks: list[int] = []
        self.cleaner = LogCleaner(self.partitions, clock, cleaner_config)

    # -- startup -------------------------------------------------------------

    def lock(self) -> None:
        """Create and lock every log dir (once), so no other broker uses them."""
        if self._locks:
            return
        for log_dir in self.log_dirs:
            os.makedirs(log_dir, exist_ok=True)
            self._lock(log_dir)

    def load(self, keep: Callable[[str, int, uuid.UUID], bool] | None = None) -> None:
        """Lock every log dir and open (recovering as needed) every partition.

        ``keep(topic, partition, topic_id)`` says whether the metadata knows a
        partition dir; those it does not (left by a crash during a deletion
        or a creation) are removed instead of opened.
        """
        self.lock()
        for log_dir in self.log_dirs:
            self._load_dir(log_dir, keep)

    def _lock(self, log_dir: str) -> None:
        path = os.path.join(log_dir, LOCK_FILE)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only disk: start anyway and serve reads
            if exc.errno != errno.EROFS:
                raise
            fd = os.open(path, os.O_RDONLY)
            log.warning("%s is read-only: its partitions serve reads and refuse writes", log_dir)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise LogDirLockedError(f"{log_dir} is in use by another process") from exc
        self._locks.append(fd)

    def _load_dir(self, log_dir: str, keep: Callable[[str, int, uuid.UUID], bool] | None) -> None:
        clean_marker = os.path.join(log_dir, CLEAN_SHUTDOWN_FILE)
        clean = os.path.exists(clean_marker)
        recovery_points = _read_checkpoint(log_dir, RECOVERY_POINT_CHECKPOINT)
        start_offsets = _read_checkpoint(log_dir, LOG_START_OFFSET_CHECKPOINT)
        high_watermarks = _read_checkpoint(log_dir, REPLICATION_OFFSET_CHECKPOINT)
        self.cleaner.checkpoints.update(_read_checkpoint(log_dir, CLEANER_OFFSET_CHECKPOINT))
        for name in sorted(os.listdir(log_dir)):
            path = os.path.join(log_dir, name)
            if not os.path.isdir(path):
                continue
            if name.endswith(DELETE_SUFFIX):
                log.info("finishing the deletion of %s", path)
                shutil.rmtree(path, ignore_errors=True)
                continue
            key = parse_partition_dir(name)
            if key is None:
                log.warning("ignoring %s: not a partition directory", path)
                continue
            topic_id = _recorded_topic_id(path)
            if keep is not None and not keep(key[0], key[1], topic_id):
                log.warning("removing %s: the metadata has no such partition", path)
                try:
                    self._remove_dir(path, *key)
                except OSError as exc:
                    # Not opened either way; a later start tries again.
                    log.error("could not remove %s: %s", path, exc)
                continue
            self._counts[log_dir] += 1
            self._logs[key] = PartitionLog.open(
                path,
                key[0],
                key[1],
                topic_id,
                self.default_config,
                self._clock,
                log_start_offset=start_offsets.get(key, 0),
                recovery_point=recovery_points.get(key, 0),
                high_watermark=high_watermarks.get(key, 0),
                clean_shutdown=clean,
            )
        # Only now: a crash during loading must still trigger recovery next time.
        if clean:
            try:
                os.unlink(clean_marker)
            except OSError as exc:  # the logs are still checked against their indexes
                log.warning("cannot remove %s: %s", clean_marker, exc)

    # -- partitions ----------------------------------------------------------

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def partitions(self) -> Iterable[PartitionLog]:
        return list(self._logs.values())

    def create(
        self, topic: str, partition: int, topic_id: uuid.UUID, config: LogConfig | None = None
    ) -> PartitionLog:
        """The partition's log, created empty in the least loaded log dir if
        it does not exist yet."""
        existing = self._logs.get((topic, partition))
        if existing is not None:
            if existing.topic_id not in (topic_id, ZERO_UUID):
                raise ValueError(
                    f"{topic}-{partition} exists with topic id {existing.topic_id}, not {topic_id}"
                )
            if config is not None:
                existing.config = config
            if existing.topic_id == ZERO_UUID != topic_id:
                self._record_topic_id(existing, topic_id)
            return existing
        log_dir = min(self.log_dirs, key=self._counts.__getitem__)
        path = os.path.join(log_dir, f"{topic}-{partition}")
        if os.path.isdir(path):
            # Not in _logs, so not in the metadata: a deletion that failed
            # left it. Its records must not come back under the new topic.
            # (Anything else in the way makes the creation fail below.)
            log.warning("removing %s left by an earlier topic of that name", path)
            self._remove_dir(path, topic, partition)
        os.makedirs(path)
        try:
            write_partition_metadata(path, topic_id)
            fsync_dir(log_dir)
            partition_log = PartitionLog.open(
                path, topic, partition, topic_id, config or self.default_config, self._clock
            )
        except BaseException:
            with contextlib.suppress(OSError):
                self._remove_dir(path, topic, partition)
            raise
        self._logs[(topic, partition)] = partition_log
        self._counts[log_dir] += 1
        return partition_log

    @staticmethod
    def _record_topic_id(partition_log: PartitionLog, topic_id: uuid.UUID) -> None:
        """Give a log whose ``partition.metadata`` was missing or damaged its
        topic id again, as Kafka rewrites the file once the id is known. The
        file is optional: without it the next start only knows less."""
        partition_log.topic_id = topic_id
        try:
            write_partition_metadata(partition_log.directory, topic_id)
        except OSError as exc:
            log.warning("cannot rewrite %s/partition.metadata: %s", partition_log.directory, exc)

    def dir_name_fits(self, topic: str, partition: int) -> bool:
        """Whether ``<topic>-<partition>`` is a legal dir name in every log dir."""
        return len(f"{topic}-{partition}".encode()) <= min(
            _name_max(log_dir) for log_dir in self.log_dirs
        )

    def delete(self, topic: str, partition: int) -> None:
        """Remove the partition's log. The dir is first renamed out of the way
        (a crash then finishes the deletion at the next load); slices being
        sent keep their open files and stay readable. Forgotten even if the
        removal fails (OSError): the next start removes what is left."""
        partition_log = self._logs.pop((topic, partition), None)
        if partition_log is None:
            return
        directory = partition_log.directory
        self._counts[os.path.dirname(directory)] -= 1
        self.cleaner.forget(partition_log)
        self._remove_dir(directory, topic, partition)

    def _remove_dir(self, directory: str, topic: str, partition: int) -> None:
        """Rename to Kafka's ``-delete`` name (atomic, durable), then remove."""
        parent = os.path.dirname(directory)
        limit = min(DIR_NAME_MAX, _name_max(parent))
        doomed = os.path.join(parent, delete_dir_name(topic, partition, limit))
        os.rename(directory, doomed)
        fsync_dir(parent)
        shutil.rmtree(doomed, ignore_errors=True)

    # -- durability ----------------------------------------------------------

    def checkpoint(self) -> bool:
        """Write the recovery points, log start offsets and high watermarks
        of every dir's partitions; False (logged) if one could not be."""
        written = True
        for log_dir in self.log_dirs:
            for name, attribute in (
                (RECOVERY_POINT_CHECKPOINT, "recovery_point"),
                (LOG_START_OFFSET_CHECKPOINT, "log_start_offset"),
                (REPLICATION_OFFSET_CHECKPOINT, "high_watermark"),
            ):
                written &= self._write_checkpoint(log_dir, name, attribute)
        return written

    def _write_checkpoint(self, log_dir: str, name: str, attribute: str) -> bool:
        try:
            self._write_offsets(log_dir, name, attribute)
        except OSError as exc:
            log.warning("cannot write %s/%s: %s", log_dir, name, exc)
            return False
        return True

    def _write_offsets(
        self,
        log_dir: str,
        name: str,
        attribute: str,
        changed: dict[tuple[str, int], int] | None = None,
    ) -> None:
        """Checkpoint ``attribute`` of the dir's partitions, with ``changed``
        values instead of theirs where given; raises ``OSError``."""
        logs = [p for p in self._logs.values() if os.path.dirname(p.directory) == log_dir]
        offsets = {(p.topic, p.partition): getattr(p, attribute) for p in logs}
        offsets.update(changed or {})
        write_offsets(os.path.join(log_dir, name), offsets)

    def _checkpoint_log_start_offsets(self, log_dirs: Iterable[str]) -> None:
        for log_dir in log_dirs:
            self._write_checkpoint(log_dir, LOG_START_OFFSET_CHECKPOINT, "log_start_offset")

    # -- retention -----------------------------------------------------------

    def enforce_retention(self, now: int | None = None) -> int:
        """Apply every partition's retention (the broker's timer, every
        ``log.retention.check.interval.ms``); returns the segments removed.
        Log start offsets that moved are checkpointed before returning."""
        now = self._clock() if now is None else now
        removed = 0
        moved: set[str] = set()
        for partition_log in self._logs.values():
            start = partition_log.log_start_offset
            with contextlib.suppress(KafkaStorageError):  # logged by the log; next time
                removed += partition_log.delete_old_segments(now)
            if partition_log.log_start_offset != start:
                moved.add(os.path.dirname(partition_log.directory))
        self._checkpoint_log_start_offsets(moved)
        return removed

    def expire_producers(self, expiration_ms: int, now: int | None = None) -> int:
        """Forget idempotent producers silent for ``producer.id.expiration.ms``
        in every partition (the broker's timer, every
        ``producer.id.expiration.check.interval.ms``); returns how many."""
        now = self._clock() if now is None else now
        return sum(p.expire_producers(now, expiration_ms) for p in self._logs.values())

    def delete_records(self, topic: str, partition: int, offset: int) -> int:
        """DeleteRecords for one partition: move its log start offset to
        ``offset``; returns the new low watermark.

        All or nothing: the new log start offset is checkpointed first, so
        a failed write (a full disk) changes nothing and answers
        KAFKA_STORAGE_ERROR; before, the running broker had moved on and the
        records came back after a restart. Raises ``KeyError`` for an unknown
        partition and ``OffsetOutOfRangeError`` past the log end. The caller
        checks ``offset`` against the high watermark and maps -1 to it, as
        Kafka does.
        """
        partition_log = self._logs[(topic, partition)]
        moves = partition_log.log_start_offset < offset <= partition_log.log_end_offset
        if moves and partition_log.offline is None:
            log_dir = os.path.dirname(partition_log.directory)
            try:
                self._write_offsets(
                    log_dir, LOG_START_OFFSET_CHECKPOINT, "log_start_offset",
                    {(topic, partition): offset},
                )  # fmt: skip
            except OSError as exc:
                raise KafkaStorageError(f"{topic}-{partition}: {exc}") from exc
        return partition_log.delete_records_before(offset)

    def flush_due(self) -> None:
        """Flush the logs whose ``flush.ms`` has passed (the broker's timer).
        A log that fails goes offline (and says so); the others go on."""
        for partition_log in self._logs.values():
            with contextlib.suppress(KafkaStorageError):
                partition_log.flush_if_due()

    def check_storage(self) -> None:
        """Take offline the partitions whose segment files were removed from
        under the broker (the broker's timer; rolls and flushes check too)."""
        for partition_log in self._logs.values():
            partition_log.check_files()

    def clean_step(self, budget_bytes: int = 1 << 20) -> bool:
        """One step of log compaction (see ``cleaner.py``): True if the broker
        should call again soon, False to wait ``log.cleaner.backoff.ms``."""
        return self.cleaner.step(budget_bytes)

    def close(self) -> list[str]:
        """Flush, checkpoint and close everything; mark each dir whose logs
        all flushed as cleanly shut down. Never raises: returns what could not
        be made durable (empty when the shutdown was clean), already logged."""
        self.cleaner.abort()
        problems: list[str] = []
        unclean: set[str] = set()
        for partition_log in self._logs.values():
            try:
                partition_log.flush()
            except KafkaStorageError as exc:
                problems.append(str(exc))
                unclean.add(os.path.dirname(partition_log.directory))
        if not self.checkpoint():
            problems.append("checkpoints not written")
        for partition_log in self._logs.values():
            partition_log.close()
        self._logs.clear()
        for log_dir in self.log_dirs:
            if log_dir in unclean:
                continue
            marker = os.path.join(log_dir, CLEAN_SHUTDOWN_FILE)
            try:
                os.close(fileops.open_fd(marker, os.O_WRONLY | os.O_CREAT, 0o644))
                fsync_dir(log_dir)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot write %s: %s", marker, exc)
                problems.append(f"{marker} not written")
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()
        return problems


def _name_max(log_dir: str) -> int:
    """The file system's longest file name (NAME_MAX) in ``log_dir``."""
    try:
        return os.pathconf(log_dir, "PC_NAME_MAX")
    except (OSError, ValueError):
        return DIR_NAME_MAX


def _recorded_topic_id(partition_dir: str) -> uuid.UUID:
    """The topic id in the dir's ``partition.metadata``; ZERO_UUID when the
    file is missing or damaged (a torn file must not keep the broker from
    starting: the metadata knows the id and it is written again)."""
    try:
        return read_partition_metadata(partition_dir) or ZERO_UUID
    except (CorruptCheckpointError, OSError) as exc:
        log.warning("ignoring a damaged partition.metadata: %s", exc)
        return ZERO_UUID


def _read_checkpoint(log_dir: str, name: str) -> dict[tuple[str, int], int]:
    """A checkpoint's entries; a damaged one only costs a longer recovery."""
    try:
        return read_offsets(os.path.join(log_dir, name))
    except CorruptCheckpointError:
        log.warning("%s/%s is corrupt, ignoring it", log_dir, name)
        return {}
