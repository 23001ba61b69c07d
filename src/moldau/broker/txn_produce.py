"""Produce's checks of transactional batches (Produce v3+), before any append.

As Kafka's ``KafkaApis.handleProduceRequest`` and ``ReplicaManager``:

- a request with a transactional batch but no ``transactional_id`` is
  refused whole with TRANSACTIONAL_ID_AUTHORIZATION_FAILED (Kafka's answer
  when the id is missing or not authorised; moldau has no ACLs);
- transactional batches of more than one producer id in one request:
  INVALID_PRODUCER_ID_MAPPING, whole;
- KIP-890 part 1: a transactional batch that would open a new transaction
  on a partition this broker leads is appended only once the transaction
  coordinator (``core.transactions``, a ``TransactionVerifier``) confirms
  the partition is in the producer's transaction. Its errors are
  translated as Kafka's ``AddPartitionsToTxnManager`` and ``ReplicaManager``
  do for producers: PRODUCER_FENCED becomes INVALID_PRODUCER_EPOCH,
  TRANSACTION_ABORTABLE INVALID_TXN_STATE, and the coordinator's retriable
  errors NOT_ENOUGH_REPLICAS (which every client retries without a metadata
  refresh). A marker written for the producer while the coordinator was
  asked (Kafka's VerificationGuard) refuses the batch with INVALID_TXN_STATE:
  the transaction the answer was about has ended.

The per-batch epoch check stays in the log: a batch from an epoch older than
the producer's is INVALID_PRODUCER_EPOCH at every Produce version (Kafka
answers so since 2.7, never PRODUCER_FENCED).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ..protocol.batch import (
    ATTRIBUTES_OFFSET,
    HEADER_SIZE,
    MAGIC_OFFSET,
    TRANSACTIONAL_BIT,
    BatchHeader,
    RecordBatchError,
    read_header,
)
from ..protocol.errors import ErrorCode
from .core import BrokerCore

__all__ = ["TransactionalWrite", "request_error", "transactional_header", "verify"]

_TRANSLATED = {
    ErrorCode.PRODUCER_FENCED: ErrorCode.INVALID_PRODUCER_EPOCH,
    ErrorCode.TRANSACTION_ABORTABLE: ErrorCode.INVALID_TXN_STATE,
    ErrorCode.CONCURRENT_TRANSACTIONS: ErrorCode.NOT_ENOUGH_REPLICAS,
    ErrorCode.NETWORK_EXCEPTION: ErrorCode.NOT_ENOUGH_REPLICAS,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS: ErrorCode.NOT_ENOUGH_REPLICAS,
    ErrorCode.COORDINATOR_NOT_AVAILABLE: ErrorCode.NOT_ENOUGH_REPLICAS,
    ErrorCode.NOT_COORDINATOR: ErrorCode.NOT_ENOUGH_REPLICAS,
}


class TransactionalWrite(NamedTuple):
    """A partition of the request whose first batch is transactional."""

    topic: str
    partition: int
    header: BatchHeader


def transactional_header(records: bytes | memoryview | None) -> BatchHeader | None:
    """The header of ``records``' first batch if it is a transactional v2
    batch (two byte reads for the usual, non-transactional one); a batch too
    broken to tell is left to the append, which refuses it."""
    if records is None or len(records) < HEADER_SIZE or records[MAGIC_OFFSET] != 2:
        return None
    if not records[ATTRIBUTES_OFFSET + 1] & TRANSACTIONAL_BIT:
        return None
    try:
        return read_header(records)
    except RecordBatchError:
        return None


def request_error(
    transactional_id: str | None, writes: Sequence[TransactionalWrite]
) -> ErrorCode | None:
    """The error refusing the whole request, if any."""
    if not transactional_id:
        return ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    if len({write.header.producer_id for write in writes}) > 1:
        return ErrorCode.INVALID_PRODUCER_ID_MAPPING
    return None


async def verify(
    core: BrokerCore, transactional_id: str, writes: Sequence[TransactionalWrite]
) -> dict[tuple[str, int], ErrorCode]:
    """The partitions of ``writes`` refused by the coordinator (or by a marker
    written during the wait), with the error Produce answers; run right
    before the appends, with no wait between this and them."""
    if not core.config.get("transaction.partition.verification.enable"):
        return {}
    verifier = core.transactions or core.start_transactions()
    header = writes[0].header
    producer_id, epoch = header.producer_id, header.producer_epoch
    guards: dict[tuple[str, int], int] = {}
    for write in writes:
        partition = core.replicas.partitions.get((write.topic, write.partition))
        if partition is None or not partition.is_leader:
            continue  # the append answers why
        entry = partition.log.producer_state.producers.get(producer_id)
        if entry is not None and entry.txn_first_offset is not None:
            continue  # the transaction is open here: nothing to verify
        guards[write.topic, write.partition] = entry.markers if entry is not None else 0
    if not guards:
        return {}
    answers = await verifier.verify_transaction(transactional_id, producer_id, epoch, list(guards))
    refused: dict[tuple[str, int], ErrorCode] = {}
    for key, markers in guards.items():
        code = answers.get(key, ErrorCode.INVALID_TXN_STATE)
        code = _TRANSLATED.get(code, code)
        if code == ErrorCode.NONE and _marker_since(core, key, producer_id, markers):
            code = ErrorCode.INVALID_TXN_STATE
        if code != ErrorCode.NONE:
            refused[key] = code
    return refused


def _marker_since(core: BrokerCore, key: tuple[str, int], producer_id: int, markers: int) -> bool:
    partition = core.replicas.partitions.get(key)
    if partition is None:
        return False
    entry = partition.log.producer_state.producers.get(producer_id)
    return entry is not None and entry.txn_first_offset is None and entry.markers != markers
