"""A transactional id's state and the transitions Kafka allows. Pure.

The states and their ids are Kafka's (``TransactionState``): the id is what
``__transaction_state`` stores, the name what DescribeTransactions and
ListTransactions answer. A transition not in :data:`LEGAL_PREVIOUS` is a
bug in the coordinator, raised as :class:`IllegalTransition` rather than
written to the log.

Where moldau departs from Kafka: Kafka moves a transaction to a *pending*
state while its write is in flight and completes the transition when the
write is acknowledged. moldau's coordinator appends synchronously and
applies the new state once the append succeeded (as the group coordinator
does); answers still wait for the high watermark. So there is no pending
state, and PrepareEpochFence is never held: fencing an ongoing transaction
writes PrepareAbort at the bumped epoch directly, which is what Kafka writes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

#: Kafka's ``RecordBatch.NO_PRODUCER_EPOCH`` / ``NO_PRODUCER_ID``.
NO_EPOCH = -1
NO_PRODUCER_ID = -1
#: Epochs are int16; at ``MAX_EPOCH - 1`` a new producer id is handed out
#: (``TransactionMetadata.isEpochExhausted``).
MAX_EPOCH = 32767


class TxnState(enum.IntEnum):
    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def kafka_name(self) -> str:
        """The name Kafka's admin APIs use ("PrepareCommit")."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    @classmethod
    def from_kafka_name(cls, name: str) -> TxnState | None:
        for state in cls:
            if state.kafka_name == name:
                return state
        return None


_ENDED = frozenset({TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT})

#: For each state, the states it may be entered from (Kafka's
#: ``TransactionState.validPreviousStates``).
LEGAL_PREVIOUS: dict[TxnState, frozenset[TxnState]] = {
    TxnState.EMPTY: _ENDED,
    TxnState.ONGOING: _ENDED | {TxnState.ONGOING},
    TxnState.PREPARE_COMMIT: frozenset({TxnState.ONGOING}),
    TxnState.PREPARE_ABORT: frozenset({TxnState.ONGOING, TxnState.PREPARE_EPOCH_FENCE}),
    TxnState.COMPLETE_COMMIT: frozenset({TxnState.PREPARE_COMMIT}),
    TxnState.COMPLETE_ABORT: frozenset({TxnState.PREPARE_ABORT}),
    TxnState.DEAD: _ENDED,
    TxnState.PREPARE_EPOCH_FENCE: frozenset({TxnState.ONGOING}),
}


class IllegalTransition(RuntimeError):
    """The coordinator tried a transition Kafka forbids."""


def epoch_exhausted(epoch: int) -> bool:
    return epoch >= MAX_EPOCH - 1


@dataclass(frozen=True)
class TxnMetadata:
    """One transactional id as the coordinator holds it.

    ``last_producer_id`` and ``last_producer_epoch`` let a retried
    InitProducerId be recognised (KIP-360); like Kafka 3.9, they are kept in
    memory only, so a retry that spans a coordinator change is fenced.
    """

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: frozenset[tuple[str, int]] = field(default_factory=frozenset)
    start_ms: int = -1
    last_update_ms: int = -1
    last_producer_id: int = NO_PRODUCER_ID
    last_producer_epoch: int = NO_EPOCH

    @property
    def ended(self) -> bool:
        """No transaction is open or completing."""
        return self.state in _ENDED

    @property
    def preparing(self) -> bool:
        return self.state in (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)

    def to(self, state: TxnState, **changes: object) -> TxnMetadata:
        """The metadata after moving to ``state`` with ``changes``; raises
        :class:`IllegalTransition` when Kafka forbids the move."""
        if self.state not in LEGAL_PREVIOUS[state]:
            raise IllegalTransition(
                f"transactional id {self.transactional_id!r}: "
                f"{self.state.kafka_name} -> {state.kafka_name}"
            )
        return replace(self, state=state, **changes)  # type: ignore[arg-type]

    # -- the transitions the coordinator makes (Kafka's prepareX) -------------

    def bump_epoch(
        self, timeout_ms: int, now: int, last_epoch: int, epoch: int | None = None
    ) -> TxnMetadata:
        """A new (or re-initialised) producer: Empty at ``epoch`` (default the
        next one), no partitions."""
        return self.to(
            TxnState.EMPTY,
            producer_epoch=self.producer_epoch + 1 if epoch is None else epoch,
            last_producer_epoch=last_epoch,
            timeout_ms=timeout_ms,
            partitions=frozenset(),
            start_ms=-1,
            last_update_ms=now,
        )

    def rotate_producer_id(
        self, producer_id: int, timeout_ms: int, now: int, record_last_epoch: bool
    ) -> TxnMetadata:
        """The epoch is exhausted: a new producer id at epoch 0."""
        return self.to(
            TxnState.EMPTY,
            producer_id=producer_id,
            producer_epoch=0,
            last_producer_id=self.producer_id,
            last_producer_epoch=self.producer_epoch if record_last_epoch else NO_EPOCH,
            timeout_ms=timeout_ms,
            partitions=frozenset(),
            start_ms=-1,
            last_update_ms=now,
        )

    def add_partitions(self, partitions: frozenset[tuple[str, int]], now: int) -> TxnMetadata:
        start = now if self.ended else self.start_ms
        return self.to(
            TxnState.ONGOING,
            partitions=self.partitions | partitions,
            start_ms=start,
            last_update_ms=now,
        )

    def prepare_end(self, committed: bool, now: int, fence: bool = False) -> TxnMetadata:
        """PrepareCommit or PrepareAbort; ``fence`` (an abort the coordinator
        starts) bumps the epoch so that the producer's epoch is stale."""
        if fence:
            if self.producer_epoch >= MAX_EPOCH:
                raise IllegalTransition(f"cannot fence {self.transactional_id!r} at epoch max")
            fenced = self.to(TxnState.PREPARE_EPOCH_FENCE)
            return fenced.to(
                TxnState.PREPARE_ABORT,
                producer_epoch=self.producer_epoch + 1,
                last_producer_epoch=NO_EPOCH,
                last_update_ms=now,
            )
        state = TxnState.PREPARE_COMMIT if committed else TxnState.PREPARE_ABORT
        return self.to(state, last_update_ms=now)

    def complete(self, now: int) -> TxnMetadata:
        """Every marker is written: CompleteCommit or CompleteAbort."""
        state = (
            TxnState.COMPLETE_COMMIT
            if self.state is TxnState.PREPARE_COMMIT
            else TxnState.COMPLETE_ABORT
        )
        return self.to(state, partitions=frozenset(), last_update_ms=now)
