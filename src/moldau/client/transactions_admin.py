"""Transactions from the outside: list and describe (Kafka's admin client
``listTransactions`` and ``describeTransactions``).

Describing asks the transactional id's coordinator (FindCoordinator with key
type TRANSACTION); a coordinator that moved or is still loading is found
again and asked again until the timeout. Listing asks every broker, since
each lists only the ids it coordinates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.txn.coordinator import partition_for_transaction
from moldau.txn.records import (
    TRANSACTION_STATE_TOPIC,
    DecodeError,
    TxnRecord,
    decode_key,
    decode_value,
)

from .cluster import TRANSACTION_KEY, Cluster
from .connection import BrokerConnection
from .errors import check
from .read_to_end import read_to_end
from .types import TopicPartition

__all__ = [
    "TransactionChange",
    "TransactionDescription",
    "TransactionListing",
    "TransactionsAdmin",
]


@dataclass(frozen=True)
class TransactionListing:
    transactional_id: str
    producer_id: int
    state: str
    coordinator: int


@dataclass(frozen=True)
class TransactionDescription:
    transactional_id: str
    state: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    #: When the open (or last) transaction started, ms since the epoch; -1: none.
    start_ms: int
    partitions: tuple[TopicPartition, ...]
    coordinator: int


class TransactionsAdmin:
    """Transaction administration over a :class:`Cluster`."""

    def __init__(self, cluster: Cluster, *, timeout_ms: int = 30_000) -> None:
        self.cluster = cluster
        self.timeout_ms = timeout_ms

    async def coordinator(self, transactional_id: str) -> tuple[int, BrokerConnection]:
        """The node id of the id's coordinator and a connection to it."""
        return await self.cluster.coordinator(transactional_id, TRANSACTION_KEY)

    async def describe_transaction(self, transactional_id: str) -> TransactionDescription:
        """The id's state; TRANSACTIONAL_ID_NOT_FOUND for an id no producer used
        (or one that expired)."""

        async def attempt() -> TransactionDescription:
            node_id, conn = await self.coordinator(transactional_id)
            answer = await conn.request(
                ApiKey.DESCRIBE_TRANSACTIONS, {"transactional_ids": [transactional_id]}
            )
            (state,) = answer["transaction_states"]
            if state["error_code"] == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND:
                raise KafkaError(
                    ErrorCode.TRANSACTIONAL_ID_NOT_FOUND,
                    f"transactional id '{transactional_id}' does not exist",
                )
            check(state["error_code"], context=f"transactional id '{transactional_id}'")
            return TransactionDescription(
                transactional_id,
                state["transaction_state"],
                state["producer_id"],
                state["producer_epoch"],
                state["transaction_timeout_ms"],
                state["transaction_start_time_ms"],
                tuple(
                    TopicPartition(t["topic"], p)
                    for t in state["topics"]
                    for p in sorted(t["partitions"])
                ),
                node_id,
            )

        return await self.cluster.retry(attempt, timeout_ms=self.timeout_ms, refresh=False)

    async def list_transactions(
        self,
        states: Iterable[str] = (),
        producer_ids: Iterable[int] = (),
        min_duration_ms: int = -1,
    ) -> list[TransactionListing]:
        """Every transactional id of the cluster, filtered as asked
        (``min_duration_ms``: transactions open longer than that, ListTransactions
        v1), by id."""
        await self.cluster.refresh([])
        body = {
            "state_filters": list(states),
            "producer_id_filters": list(producer_ids),
            "duration_filter": min_duration_ms,
        }
        listings: dict[str, TransactionListing] = {}

        async def ask(node_id: int, conn: BrokerConnection) -> None:
            version = conn.version(ApiKey.LIST_TRANSACTIONS)
            if min_duration_ms >= 0 and version < 1:
                raise KafkaError(
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"broker {node_id} cannot filter transactions by duration",
                )
            answer = await conn.request(ApiKey.LIST_TRANSACTIONS, body, version=version)
            check(answer["error_code"], context=f"list transactions of broker {node_id}")
            for t in answer["transaction_states"]:
                listing = TransactionListing(
                    t["transactional_id"], t["producer_id"], t["transaction_state"], node_id
                )
                listings[listing.transactional_id] = listing

        async def attempt() -> None:
            brokers = self.cluster.brokers()
            conns = [await self.cluster.node(b.node_id) for b in brokers]
            await asyncio.gather(*(ask(b.node_id, c) for b, c in zip(brokers, conns, strict=True)))

        await self.cluster.retry(attempt, timeout_ms=self.timeout_ms)
        return [listings[t] for t in sorted(listings)]

    async def history(self, transactional_id: str) -> list[TransactionChange]:
        """The id's state changes that ``__transaction_state`` still holds,
        oldest first: every one of them until the log cleaner compacts the
        segment they are in (the active one never is). Read in Kafka's record
        format, so it works against Kafka's brokers as against moldau's."""
        meta = await self.cluster.refresh([TRANSACTION_STATE_TOPIC])
        info = meta.topics.get(TRANSACTION_STATE_TOPIC)
        if info is None or info.error != ErrorCode.NONE or not info.partitions:
            return []
        index = partition_for_transaction(transactional_id, len(info.partitions))
        tp = TopicPartition(TRANSACTION_STATE_TOPIC, index)
        changes = []
        for record in await read_to_end(self.cluster, [tp], self.timeout_ms):
            try:
                if record.key is None or decode_key(record.key) != transactional_id:
                    continue
                value = decode_value(record.value)
            except DecodeError:
                continue  # a record of a newer Kafka: not ours to show
            changes.append(TransactionChange(record.offset, value))
        return changes


@dataclass(frozen=True)
class TransactionChange:
    """One record of a transactional id in ``__transaction_state``: its state
    from then on (None: the id was removed)."""

    offset: int
    record: TxnRecord | None
