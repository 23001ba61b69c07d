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
