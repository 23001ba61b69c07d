"""Errors the log raises, each with the Kafka error code the broker answers with.

Batch-level refusals (CRC, magic, size of one batch) are in
``moldau.protocol.batch`` and share :class:`RecordBatchError` as base.
"""

from __future__ import annotations

from moldau.protocol.batch import RecordBatchError
from moldau.protocol.errors import RefusalError


class LogError(RefusalError):
    """A request the log cannot serve; ``error_code`` is Kafka's."""


class OffsetOutOfRangeError(LogError):
    """Fetch below the log start offset or past the log end offset (OFFSET_OUT_OF_RANGE)."""

    error_code = 1


class UnexpectedAppendOffsetError(LogError):
    """A follower append whose offsets do not follow the log end; the
    replication layer truncates and refetches rather than answering a client."""


class RecordBatchTooLargeError(RecordBatchError):
    """A produce payload larger than a whole segment (RECORD_LIST_TOO_LARGE)."""

    error_code = 18


class InvalidTimestampError(RecordBatchError):
    """A record timestamp further in the past or future than the topic allows
    (message.timestamp.before.max.ms / after.max.ms): INVALID_TIMESTAMP."""

    error_code = 32


class KafkaStorageError(LogError):
    """The partition's storage failed: KAFKA_STORAGE_ERROR, which clients retry.

    Raised with the log exactly as before the call when the failed write
    could be undone (a full or read-only disk), and for every call once the
    partition is offline (see :class:`LogDamagedError`)."""

    error_code = 56


class LogDamagedError(Exception):
    """A write failed and could not be undone, or an fsync failed (after
    which the kernel may have dropped the unwritten pages): the files may no
    longer hold what the log has in memory. ``PartitionLog`` then takes the
    partition offline; the next start recovers it from the files. Never leaves
    the log package."""

    def __init__(self, path: str, cause: OSError) -> None:
        super().__init__(f"{path}: {cause.strerror or cause} (errno {cause.errno})")
        self.path = path
        self.cause = cause
