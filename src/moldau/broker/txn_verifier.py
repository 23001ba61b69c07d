"""What Produce asks the transaction coordinator before a transaction starts
on a partition (KIP-890 part 1, Kafka 3.6+ ``transaction.partition.verification.enable``).

A transactional batch that would open a new transaction on a partition is
appended only if the coordinator confirms that the partition was added to
the producer's ongoing transaction (AddPartitionsToTxn), so a late batch of
a transaction that already ended (a hanging transaction) cannot open a new
one. The coordinator's ``TransactionService`` satisfies this protocol and is
set as ``BrokerCore.transactions``; with none set (no coordinator), batches
are appended unverified. Kafka verifies through an AddPartitionsToTxn v4
request with ``verify_only``; moldau calls the coordinator (local or remote)
through this one method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..protocol.errors import ErrorCode

__all__ = ["TransactionVerifier"]


class TransactionVerifier(Protocol):
    async def verify_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Sequence[tuple[str, int]],
    ) -> dict[tuple[str, int], ErrorCode]:
        """Per partition, NONE if it is in the producer's ongoing transaction,
        else the error Produce answers for it (INVALID_TXN_STATE when it is
        not in the transaction; PRODUCER_FENCED / INVALID_PRODUCER_EPOCH for a
        stale epoch; a coordinator error such as NOT_COORDINATOR or
        COORDINATOR_LOAD_IN_PROGRESS, which Produce passes on as Kafka does)."""
        ...
