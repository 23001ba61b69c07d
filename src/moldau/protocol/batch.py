"""Kafka record batch (magic v2) header codec.

A produce request carries one or more record batches back to back. The
broker treats them as opaque blobs: it parses only the 61-byte header,
checks lengths and the CRC32C, patches the base offset and leader epoch in
place and writes the bytes to the log as sent. Records are decoded only by
features that need them (see ``records.py``).

Wire layout of one batch (big endian)::

    offset  field                 type
    0       baseOffset            int64   \\ outside the CRC; patched by the
    8       batchLength           int32    | broker (offset, epoch) and used to
    12      partitionLeaderEpoch  int32    | frame the batch (length)
    16      magic                 int8    /
    17      crc                   uint32  CRC32C of bytes 21..end
    21      attributes            int16
    23      lastOffsetDelta       int32
    27      baseTimestamp         int64
    35      maxTimestamp          int64
    43      producerId            int64
    51      producerEpoch         int16
    53      baseSequence          int32
    57      recordsCount          int32
    61      records...

``batchLength`` counts the bytes after itself, so a batch occupies
``batchLength + 12`` bytes. Old message sets (magic 0 and 1) keep the magic
byte at the same position 16, which is how we recognise and refuse them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from crc32c import crc32c

from .errors import RefusalError

__all__ = [
    "ATTRIBUTES_OFFSET",
    "CRC_OFFSET",
    "HEADER_SIZE",
    "LOG_OVERHEAD",
    "OFFSET_RANGE_SIZE",
    "BatchHeader",
    "CorruptRecordError",
    "InvalidRecordError",
    "MessageTooLargeError",
    "RecordBatchError",
    "UnsupportedMagicError",
    "assemble_batch",
    "compute_crc",
    "iter_batches",
    "patch_base_offset",
    "patch_leader_epoch",
    "read_header",
    "read_offset_range",
    "stamp_log_append_time",
    "unchecked_prefix",
    "validate",
]

# --- layout -----------------------------------------------------------------

_HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = _HEADER.size  # 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the part not counted by batchLength
"""Bytes that precede what ``batchLength`` counts; also the prefix needed to
know a batch's extent, which is all a log scan reads per batch."""

_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")

BASE_OFFSET_OFFSET = 0
BATCH_LENGTH_OFFSET = 8
LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
MAX_TIMESTAMP_OFFSET = 35

CURRENT_MAGIC = 2

# attribute bits
COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_BIT = 0x08
TRANSACTIONAL_BIT = 0x10
CONTROL_BIT = 0x20
DELETE_HORIZON_BIT = 0x40

COMPRESSION_NONE = 0
COMPRESSION_GZIP = 1
COMPRESSION_SNAPPY = 2
COMPRESSION_LZ4 = 3
COMPRESSION_ZSTD = 4

TIMESTAMP_CREATE_TIME = 0
TIMESTAMP_LOG_APPEND_TIME = 1

NO_PRODUCER_ID = -1
NO_SEQUENCE = -1


# --- errors -----------------------------------------------------------------


class RecordBatchError(RefusalError):
    """A batch the broker refuses; ``error_code`` is what the produce answer carries."""


class CorruptRecordError(RecordBatchError):
    """CRC mismatch, impossible lengths or a truncated batch (CORRUPT_MESSAGE)."""

    error_code = 2


class InvalidRecordError(RecordBatchError):
    """A well-formed batch that breaks a rule for client writes (INVALID_RECORD).

    ``record_errors`` names the records at fault, as (index in the batch,
    why), where Kafka names them (Produce v8+ ``record_errors``)."""

    error_code = 87

    def __init__(self, message: str = "", record_errors: Sequence[tuple[int, str]] = ()) -> None:
        super().__init__(message)
        self.record_errors = tuple(record_errors)


class KeylessRecordError(InvalidRecordError):
    """A record without a key, sent to a compacted topic."""


class UnsupportedMagicError(RecordBatchError):
    """Magic 0/1 message sets from very old clients; we store only v2
    (UNSUPPORTED_FOR_MESSAGE_FORMAT)."""

    error_code = 43


class MessageTooLargeError(RecordBatchError):
    """A batch larger than ``max.message.bytes`` (MESSAGE_TOO_LARGE)."""

    error_code = 10


# --- header -----------------------------------------------------------------


class BatchHeader(NamedTuple):
    """The fixed fields of one v2 batch, in wire order.

    A NamedTuple so that building one from ``struct.unpack_from`` is a single
    C call on the produce path.
    """

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def timestamp_type(self) -> int:
        """0 = CreateTime, 1 = LogAppendTime."""
        return 1 if self.attributes & TIMESTAMP_TYPE_BIT else 0

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_BIT)

    @property
    def has_delete_horizon(self) -> bool:
        """Set by log compaction: baseTimestamp then holds the delete horizon."""
        return bool(self.attributes & DELETE_HORIZON_BIT)


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header at ``pos`` and check the framing.

    Checks what must hold before the batch can even be delimited: the whole
    header is present, the magic is 2 and ``batchLength`` covers at least the
    header. It does not check that the rest of the batch is present.
    """
    available = len(buf) - pos
    if available < HEADER_SIZE:
        # Recognise old message sets even when shorter than a v2 header.
        if available > MAGIC_OFFSET and buf[pos + MAGIC_OFFSET] in (0, 1):
            raise UnsupportedMagicError(f"magic {buf[pos + MAGIC_OFFSET]} is not supported")
        raise CorruptRecordError(f"truncated batch header: {available} bytes at {pos}")
    header = BatchHeader._make(_HEADER.unpack_from(buf, pos))
    if header.magic != CURRENT_MAGIC:
        if header.magic in (0, 1):
            raise UnsupportedMagicError(f"magic {header.magic} is not supported")
        raise CorruptRecordError(f"unknown magic {header.magic}")
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecordError(f"batch length {header.batch_length} shorter than header")
    return header


OFFSET_RANGE_SIZE = 27
"""Bytes from the start of a batch through lastOffsetDelta: all a log scan
reads per batch to find a batch's extent and offset range."""

_OFFSET_RANGE = struct.Struct(">qi11xi")


def read_offset_range(buf: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int, int]:
    """``(baseOffset, size, lastOffset)`` of the batch at ``pos``, from its
    first :data:`OFFSET_RANGE_SIZE` bytes, without checking anything."""
    base_offset, batch_length, last_offset_delta = _OFFSET_RANGE.unpack_from(buf, pos)
    return base_offset, batch_length + LOG_OVERHEAD, base_offset + last_offset_delta


def iter_batches(
    buf: bytes | bytearray | memoryview, *, allow_partial_tail: bool = False
) -> Iterator[tuple[BatchHeader, memoryview]]:
    """Yield ``(header, batch bytes)`` for each batch in ``buf``, without copying.

    Framing errors raise as in :func:`read_header`; a final batch cut short
    raises ``CorruptRecordError`` unless ``allow_partial_tail``, which a
    consumer sets because fetch responses may end in a partial batch. The CRC
    is not checked here: see :func:`validate`.
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    end = len(view)
    pos = 0
    while pos < end:
        if allow_partial_tail and end - pos < HEADER_SIZE:
            return
        header = read_header(view, pos)
        batch_end = pos + header.batch_length + LOG_OVERHEAD
        if batch_end > end:
            if allow_partial_tail:
                return
            raise CorruptRecordError(
                f"truncated batch at {pos}: needs {header.size} bytes, has {end - pos}"
            )
        yield header, view[pos:batch_end]
        pos = batch_end


def compute_crc(batch: bytes | bytearray | memoryview) -> int:
    """CRC32C over attributes..end, as stored in the header's crc field."""
    view = batch if isinstance(batch, memoryview) else memoryview(batch)
    return crc32c(view[ATTRIBUTES_OFFSET:])


def validate(
    header: BatchHeader, batch: bytes | bytearray | memoryview, *, from_client: bool = True
) -> None:
    """Check the CRC and, for batches written by clients, Kafka's batch rules.

    ``from_client=False`` (replication, recovery) checks only integrity:
    batches rewritten by compaction legitimately have gaps in their offsets.
    """
    if len(batch) != header.size:
        raise CorruptRecordError(f"batch is {len(batch)} bytes, header says {header.size}")
    if header.compression > COMPRESSION_ZSTD:
        raise CorruptRecordError(f"unknown compression codec {header.compression}")
    if compute_crc(batch) != header.crc:
        raise CorruptRecordError(f"CRC mismatch in batch at offset {header.base_offset}")
    if not from_client:
        return
    if header.records_count <= 0:
        raise InvalidRecordError(f"invalid record count {header.records_count}")
    if header.last_offset_delta + 1 != header.records_count:
        raise InvalidRecordError(
            f"last offset delta {header.last_offset_delta} inconsistent with "
            f"{header.records_count} records"
        )
    if header.is_control:
        raise InvalidRecordError("clients may not write control batches")
    if header.producer_id >= 0 and header.base_sequence < 0:
        raise InvalidRecordError("idempotent batch without a base sequence")


# --- in-place edits ---------------------------------------------------------


def patch_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Assign the batch at ``pos`` its first offset. Outside the CRC."""
    _INT64.pack_into(buf, pos + BASE_OFFSET_OFFSET, base_offset)


def patch_leader_epoch(buf: bytearray | memoryview, pos: int, leader_epoch: int) -> None:
    """Record the leader epoch the batch was appended under. Outside the CRC."""
    _INT32.pack_into(buf, pos + LEADER_EPOCH_OFFSET, leader_epoch)


_UNCHECKED_PREFIX = struct.Struct(">qiib")


def unchecked_prefix(header: BatchHeader, base_offset: int, leader_epoch: int) -> bytes:
    """The batch's first :data:`CRC_OFFSET` bytes (the part outside the CRC)
    with a new base offset and leader epoch.

    Writing this followed by the original bytes from ``CRC_OFFSET`` on is the
    patched batch, without copying (or needing a writable copy of) the records.
    """
    return _UNCHECKED_PREFIX.pack(base_offset, header.batch_length, leader_epoch, header.magic)


def stamp_log_append_time(buf: bytearray | memoryview, pos: int, timestamp_ms: int) -> None:
    """Mark the batch at ``pos`` as LogAppendTime with ``timestamp_ms``.

    Readers then take every record's timestamp from maxTimestamp. Both fields
    are inside the CRC, so the CRC is recomputed over the batch.
    """
    view = buf if isinstance(buf, memoryview) else memoryview(buf)
    attributes = _INT16.unpack_from(view, pos + ATTRIBUTES_OFFSET)[0]
    _INT16.pack_into(view, pos + ATTRIBUTES_OFFSET, attributes | TIMESTAMP_TYPE_BIT)
    _INT64.pack_into(view, pos + MAX_TIMESTAMP_OFFSET, timestamp_ms)
    batch_length = _INT32.unpack_from(view, pos + BATCH_LENGTH_OFFSET)[0]
    end = pos + batch_length + LOG_OVERHEAD
    _UINT32.pack_into(view, pos + CRC_OFFSET, crc32c(view[pos + ATTRIBUTES_OFFSET : end]))


# --- building ---------------------------------------------------------------


def assemble_batch(
    *,
    payload: bytes | bytearray | memoryview,
    records_count: int,
    last_offset_delta: int,
    base_offset: int = 0,
    partition_leader_epoch: int = -1,
    attributes: int = 0,
    base_timestamp: int = -1,
    max_timestamp: int = -1,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = NO_SEQUENCE,
) -> bytes:
    """A complete batch around already encoded (and compressed) records,
    with ``batchLength`` and CRC filled in."""
    out = bytearray(HEADER_SIZE + len(payload))
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        len(out) - LOG_OVERHEAD,
        partition_leader_epoch,
        CURRENT_MAGIC,
        0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        records_count,
    )
    out[HEADER_SIZE:] = payload
    _UINT32.pack_into(out, CRC_OFFSET, compute_crc(out))
    return bytes(out)
