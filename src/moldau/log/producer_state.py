"""Idempotent producers: per partition, what each producer id last wrote.

A producer with an id (InitProducerId) numbers its batches per partition
with sequence numbers; the log uses them to make retries safe, as Kafka does
(``ProducerStateManager``):

- a batch equal (same epoch, first and last sequence) to one of the
  producer's last :data:`BATCHES_TO_RETAIN` batches is a retry of a write
  that succeeded: it is answered with the original offsets and not written;
- a batch whose first sequence does not follow the last one is refused with
  OUT_OF_ORDER_SEQUENCE_NUMBER (the client then knows a batch is missing);
- a batch from an older epoch is refused with INVALID_PRODUCER_EPOCH (a
  zombie producer that was fenced by a newer incarnation);
- a newer epoch must start again at sequence 0;
- an unknown producer id may start at any sequence: since KIP-360 (Kafka
  2.5) the broker no longer answers UNKNOWN_PRODUCER_ID, because a producer's
  state may have been removed by retention or expiry while it was idle.

The state survives restarts through snapshots, ``<offset>.snapshot`` files
in the partition dir in Kafka's format (version 1), holding the state as of
``offset``: taken when a segment rolls and at a clean shutdown. Opening a log
loads the latest snapshot at or below the log end and replays the batch
headers after it (no record is decoded), so a kill -9 loses nothing.
Kafka's snapshot keeps one entry per producer, its last batch; ours keeps
one entry per retained batch (up to five, oldest first, same entry layout),
so that after a clean restart every batch a producer may still have in
flight is recognised when it is retried.

Transactions (KIP-98, Kafka's ``ProducerAppendInfo``): a transactional batch
opens its producer's transaction at its first offset unless one is open; a
marker (``control.py``) closes it, and is refused from a producer epoch
older than the last seen (INVALID_PRODUCER_EPOCH) or from a coordinator
epoch older than the last marker's (TRANSACTION_COORDINATOR_FENCED); a
non-transactional batch while the producer's transaction is open is
INVALID_TXN_STATE. The first unstable offset is the smallest first offset of
the open transactions, and of the transactions whose marker the high
watermark has not passed yet (Kafka's unreplicated transactions: until their
marker is replicated, a consumer reading past their data could not know the
outcome). Open transactions are kept in a dict in the order they opened,
which is the order of their first offsets, so the smallest is the first. A
snapshot entry carries its producer's coordinator epoch and open
transaction's first offset; a producer with no batch retained (only a
marker since its epoch began) is written as one entry with no batch
(sequence -1, offset -1), as Kafka writes it.

Producers silent for ``producer.id.expiration.ms`` are forgotten
(:meth:`ProducerStateManager.expire`), unless their transaction is open.
Expiry is judged by the time of the producer's last append as this broker
saw it (after a replay, by the batch's timestamp).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from crc32c import crc32c

from moldau.log import fileops
from moldau.log.checkpoint import write_atomically
from moldau.log.control import TxnMarker
from moldau.log.errors import LogError
from moldau.protocol.batch import BatchHeader

__all__ = [
    "BATCHES_TO_RETAIN",
    "BatchMetadata",
    "CompletedTxn",
    "InvalidProducerEpochError",
    "InvalidTxnStateError",
    "OutOfOrderSequenceError",
    "ProducerEntry",
    "ProducerStateManager",
    "TransactionCoordinatorFencedError",
    "last_sequence",
]

BATCHES_TO_RETAIN = 5
SNAPSHOT_SUFFIX = ".snapshot"
INT32_MAX = (1 << 31) - 1
NO_EPOCH = -1

_SNAPSHOT_VERSION = 1
_PREFIX = struct.Struct(">hI")  # version, crc32c of what follows
_COUNT = struct.Struct(">i")
# producer id, epoch, last sequence, last offset, offset delta, timestamp,
# coordinator epoch, first offset of the open transaction
_ENTRY = struct.Struct(">qhiqiqiq")
_SNAPSHOTS_KEPT = 2


class OutOfOrderSequenceError(LogError):
    """A sequence gap, or a new epoch not starting at 0 (OUT_OF_ORDER_SEQUENCE_NUMBER)."""

    error_code = 45


class InvalidProducerEpochError(LogError):
    """A batch from a fenced, older producer epoch (INVALID_PRODUCER_EPOCH)."""

    error_code = 47


class InvalidTxnStateError(LogError):
    """A non-transactional batch while the producer's transaction is open."""

    error_code = 48


class TransactionCoordinatorFencedError(LogError):
    """A marker from an older coordinator epoch than the last (TRANSACTION_COORDINATOR_FENCED)."""

    error_code = 52


class CorruptSnapshotError(ValueError):
    """A snapshot file that does not parse or fails its CRC."""


def last_sequence(header: BatchHeader) -> int:
    """The batch's last sequence number; sequences wrap after int32 max."""
    last = header.base_sequence + header.last_offset_delta
    return last - INT32_MAX - 1 if last > INT32_MAX else last


class CompletedTxn(NamedTuple):
    """A transaction a marker ended: its data from ``first_offset``, its marker
    at ``last_offset``."""

    producer_id: int
    first_offset: int
    last_offset: int
    aborted: bool
    #: The first unstable offset once it ended (Kafka's AbortedTxn
    #: lastStableOffset): the first offset of the next open transaction, or
    #: the offset after the marker.
    last_stable_offset: int


class BatchMetadata(NamedTuple):
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int


#: The snapshot entry of a producer with no batch retained.
_NO_BATCH = BatchMetadata(-1, -1, -1, -1, -1)


@dataclass
class ProducerEntry:
    """What the log knows of one producer id."""

    producer_id: int
    epoch: int = NO_EPOCH
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=BATCHES_TO_RETAIN))
    last_timestamp: int = -1
    coordinator_epoch: int = -1
    #: First offset of the producer's open transaction, if one is open.
    txn_first_offset: int | None = None
    #: Markers recorded since this broker loaded the entry: Produce's
    #: transaction verification (KIP-890) compares it across its wait, as
    #: Kafka's VerificationGuard, to catch a marker written meanwhile.
    markers: int = 0

    @property
    def last_seq(self) -> int | None:
        return self.batches[-1].last_seq if self.batches else None

    def find(self, header: BatchHeader) -> BatchMetadata | None:
        if header.producer_epoch != self.epoch:
            return None
        first, last = header.base_sequence, last_sequence(header)
        for batch in self.batches:
            if batch.first_seq == first and batch.last_seq == last:
                return batch
        return None

    def check(self, header: BatchHeader) -> None:
        """Raise unless ``header`` may follow this producer's last batch."""
        epoch, first = header.producer_epoch, header.base_sequence
        if epoch < self.epoch:
            raise InvalidProducerEpochError(
                f"producer {self.producer_id} epoch {epoch} is older than {self.epoch}"
            )
        if epoch != self.epoch:
            if first != 0 and self.epoch != NO_EPOCH:
                raise OutOfOrderSequenceError(
                    f"producer {self.producer_id}: new epoch {epoch} starts at sequence {first}"
                )
            return
        last = self.last_seq
        if last is not None and first != (0 if last == INT32_MAX else last + 1):
            raise OutOfOrderSequenceError(
                f"producer {self.producer_id}: sequence {first} does not follow {last}"
            )

    def check_txn(self, header: BatchHeader) -> None:
        """Raise if a non-transactional batch would interrupt the open transaction."""
        if self.txn_first_offset is not None and not header.is_transactional:
            raise InvalidTxnStateError(
                f"producer {self.producer_id} wrote a non-transactional batch "
                f"while its transaction from offset {self.txn_first_offset} is open"
            )

    def _set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches.clear()

    def add(self, header: BatchHeader, first_offset: int, timestamp: int) -> None:
        self._set_epoch(header.producer_epoch)
        self.batches.append(
            BatchMetadata(
                header.base_sequence,
                last_sequence(header),
                first_offset,
                first_offset + header.last_offset_delta,
                timestamp,
            )
        )
        self.last_timestamp = timestamp


class ProducerStateManager:
    """Producer state of one partition log in ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.producers: dict[int, ProducerEntry] = {}
        #: Open transactions: producer id -> first offset, in offset order.
        self.ongoing: dict[int, int] = {}
        #: Ended transactions whose marker may not be replicated yet, in
        #: marker order (see :meth:`first_unstable_offset`).
        self._unreplicated: deque[CompletedTxn] = deque()
        #: Offset of the snapshot that holds the current state, if any.
        self._snapshot_offset: int | None = None

    # -- appends ---------------------------------------------------------------

    def check(self, headers: Sequence[BatchHeader]) -> BatchMetadata | None:
        """Validate the idempotent batches of one append, in order (later
        batches may follow earlier ones of the same request). Returns the
        original batch if the append is a retry of one already written;
        raises ``OutOfOrderSequenceError`` / ``InvalidProducerEpochError``."""
        if len(headers) == 1:  # the usual produce: no staging needed
            header = headers[0]
            entry = self.producers.get(header.producer_id)
            if entry is not None:
                duplicate = entry.find(header)
                if duplicate is not None:
                    return duplicate
                entry.check(header)
                entry.check_txn(header)
            return None
        pending: dict[int, ProducerEntry] = {}
        for header in headers:
            if header.producer_id < 0:
                continue
            written = self.producers.get(header.producer_id)
            previous = pending.get(header.producer_id)
            if previous is None and written is not None:
                duplicate = written.find(header)
                if duplicate is not None:
                    return duplicate
            previous = previous or written
            if previous is not None:
                previous.check(header)
                previous.check_txn(header)
            staged = ProducerEntry(header.producer_id)
            if previous is not None:
                staged.epoch = previous.epoch
                staged.batches.extend(previous.batches)
                staged.txn_first_offset = previous.txn_first_offset
            staged.add(header, 0, 0)
            if header.is_transactional and staged.txn_first_offset is None:
                staged.txn_first_offset = 0
            pending[header.producer_id] = staged
        return None

    def record(self, header: BatchHeader, first_offset: int, timestamp: int) -> None:
        """Note a written data batch (client append, replication, replay); a
        transactional one opens its producer's transaction if none is open."""
        self._snapshot_offset = None
        entry = self.producers.get(header.producer_id)
        if entry is None:
            entry = self.producers[header.producer_id] = ProducerEntry(header.producer_id)
        entry.add(header, first_offset, timestamp)
        if header.is_transactional and entry.txn_first_offset is None:
            entry.txn_first_offset = first_offset
            self.ongoing[header.producer_id] = first_offset

    def check_marker(self, producer_id: int, producer_epoch: int, coordinator_epoch: int) -> None:
        """Raise unless a leader may write this marker (Kafka's
        ``appendEndTxnMarker`` checks; a follower and replay take any)."""
        entry = self.producers.get(producer_id)
        if entry is None:
            return
        if producer_epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"marker of producer {producer_id} at epoch {producer_epoch}, "
                f"older than {entry.epoch}"
            )
        if coordinator_epoch < entry.coordinator_epoch:
            raise TransactionCoordinatorFencedError(
                f"marker of producer {producer_id} from coordinator epoch {coordinator_epoch}, "
                f"older than {entry.coordinator_epoch}"
            )

    def record_marker(
        self, producer_id: int, producer_epoch: int, marker: TxnMarker, offset: int, timestamp: int
    ) -> CompletedTxn | None:
        """Note a written marker at ``offset``: it ends the producer's open
        transaction, returned (None if none was open: an empty transaction
        changes neither the stable offset nor the index, as in Kafka)."""
        self._snapshot_offset = None
        entry = self.producers.get(producer_id)
        if entry is None:
            entry = self.producers[producer_id] = ProducerEntry(producer_id)
        entry._set_epoch(producer_epoch)
        entry.markers += 1
        entry.coordinator_epoch = marker.coordinator_epoch
        entry.last_timestamp = timestamp
        first = entry.txn_first_offset
        if first is None:
            return None
        entry.txn_first_offset = None
        del self.ongoing[producer_id]
        next_open = next(iter(self.ongoing.values()), None)
        completed = CompletedTxn(
            producer_id,
            first,
            offset,
            not marker.committed,
            offset + 1 if next_open is None else next_open,
        )
        self._unreplicated.append(completed)
        return completed

    def first_unstable_offset(self, high_watermark: int) -> int | None:
        """The smallest first offset of the open transactions and of those
        whose marker is not below ``high_watermark`` yet; None if none."""
        unreplicated = self._unreplicated
        if not unreplicated and not self.ongoing:
            return None
        while unreplicated and unreplicated[0].last_offset < high_watermark:
            unreplicated.popleft()
        first = next(iter(self.ongoing.values()), None)
        for txn in unreplicated:
            if first is None or txn.first_offset < first:
                first = txn.first_offset
        return first

    def expire(self, now: int, expiration_ms: int) -> int:
        """Forget producers silent for ``expiration_ms``; returns how many."""
        doomed = [
            pid
            for pid, e in self.producers.items()
            if now - e.last_timestamp >= expiration_ms and e.txn_first_offset is None
        ]
        for pid in doomed:
            del self.producers[pid]
        if doomed:
            self._snapshot_offset = None
        return len(doomed)

    # -- snapshots -------------------------------------------------------------

    def snapshot_offsets(self) -> list[int]:
        offsets = []
        for name in os.listdir(self.directory):
            stem, _, suffix = name.partition(".")
            if "." + suffix == SNAPSHOT_SUFFIX and len(stem) == 20 and stem.isdigit():
                offsets.append(int(stem))
        return sorted(offsets)

    def _path(self, offset: int) -> str:
        return os.path.join(self.directory, f"{offset:020d}{SNAPSHOT_SUFFIX}")

    def take_snapshot(self, offset: int) -> None:
        """Write the state as of ``offset`` (the log end) durably, and drop
        all but the newest snapshots. Raises ``OSError`` with the files and
        the state unchanged if the snapshot cannot be written. Nothing to do if the last snapshot
        taken or loaded is at ``offset`` and nothing changed since."""
        if self._snapshot_offset == offset:
            return
        body = bytearray(_COUNT.pack(0))
        for entry in self.producers.values():
            txn_first = -1 if entry.txn_first_offset is None else entry.txn_first_offset
            for batch in entry.batches or [_NO_BATCH]:
                body += _ENTRY.pack(
                    entry.producer_id,
                    entry.epoch,
                    batch.last_seq,
                    batch.last_offset,
                    batch.last_offset - batch.first_offset,
                    entry.last_timestamp,
                    entry.coordinator_epoch,
                    txn_first,
                )
        _COUNT.pack_into(body, 0, (len(body) - _COUNT.size) // _ENTRY.size)
        write_atomically(self._path(offset), _PREFIX.pack(_SNAPSHOT_VERSION, crc32c(body)) + body)
        for old in self.snapshot_offsets()[:-_SNAPSHOTS_KEPT]:
            self._remove(old)
        self._snapshot_offset = offset

    def load(self, log_end_offset: int) -> int:
        """Load the newest readable snapshot at or below ``log_end_offset``
        (removing newer ones: a crash cut the log below them) and return its
        offset, from which the caller replays; 0 and an empty state if none."""
        self._clear()
        for offset in reversed(self.snapshot_offsets()):
            if offset > log_end_offset:
                self._remove(offset)
                continue
            try:
                self.producers = _read_snapshot(self._path(offset))
            except (CorruptSnapshotError, OSError):
                self._remove(offset)
                continue
            open_txns = sorted(
                (e.txn_first_offset, pid)
                for pid, e in self.producers.items()
                if e.txn_first_offset is not None
            )
            self.ongoing = {pid: first for first, pid in open_txns}
            self._snapshot_offset = offset
            return offset
        return 0

    def truncate(self) -> None:
        """Forget everything, snapshots included (the log was emptied)."""
        self._clear()
        for offset in self.snapshot_offsets():
            self._remove(offset)

    def _clear(self) -> None:
        self.producers = {}
        self.ongoing = {}
        self._unreplicated.clear()
        self._snapshot_offset = None

    def _remove(self, offset: int) -> None:
        """Remove a snapshot. A failure is harmless (loading picks the newest
        snapshot at or below the log end), so it is ignored."""
        with contextlib.suppress(OSError):
            fileops.unlink(self._path(offset))


def _read_snapshot(path: str) -> dict[int, ProducerEntry]:
    with open(path, "rb") as f:
        data = f.read()
    try:
        version, crc = _PREFIX.unpack_from(data)
        body = memoryview(data)[_PREFIX.size :]
        if version != _SNAPSHOT_VERSION or crc32c(body) != crc:
            raise CorruptSnapshotError(f"{path}: bad version or CRC")
        (count,) = _COUNT.unpack_from(body)
        if len(body) != _COUNT.size + count * _ENTRY.size:
            raise CorruptSnapshotError(f"{path}: {count} entries do not fit {len(body)} bytes")
    except struct.error as exc:
        raise CorruptSnapshotError(f"{path}: {exc}") from exc
    producers: dict[int, ProducerEntry] = {}
    for (
        pid,
        epoch,
        last_seq,
        last_offset,
        delta,
        timestamp,
        coordinator_epoch,
        txn_first,
    ) in _entries(body):
        entry = producers.get(pid)
        if entry is None:
            entry = producers[pid] = ProducerEntry(
                pid,
                epoch,
                last_timestamp=timestamp,
                coordinator_epoch=coordinator_epoch,
                txn_first_offset=None if txn_first < 0 else txn_first,
            )
        if last_offset < 0:  # a producer with no batch retained
            continue
        entry.batches.append(
            BatchMetadata(last_seq - delta, last_seq, last_offset - delta, last_offset, timestamp)
        )
    return producers


def _entries(body: memoryview) -> Iterable[tuple[int, ...]]:
    return _ENTRY.iter_unpack(body[_COUNT.size :])
