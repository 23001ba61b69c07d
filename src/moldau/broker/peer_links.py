"""Connections from this broker to the other brokers, one per peer, opened on
first use and opened again after they broke.

The transaction coordinator sends WriteTxnMarkers to partition leaders, and
a partition leader asks the coordinator of a transactional id whether a
batch's partition is in its transaction (AddPartitionsToTxn v4 with
verify_only); both go through these links (Kafka: the
``InterBrokerSendThread``s of the marker channel manager and of
``AddPartitionsToTxnManager``).

Where moldau departs from Kafka: a peer is reached on the address the
metadata names for it (Kafka uses the inter-broker listener).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..cluster.metadata import BrokerInfo
from ..protocol.errors import ErrorCode, KafkaError
from ..protocol.messages import Message

if TYPE_CHECKING:
    from ..client.connection import BrokerConnection


class PeerLinks:
    def __init__(
        self,
        client_id: str,
        broker: Callable[[int], BrokerInfo | None],
        request_timeout_ms: int = 30_000,
    ) -> None:
        self.client_id = client_id
        self._broker = broker
        self.request_timeout_ms = request_timeout_ms
        self._links: dict[int, tuple[BrokerInfo, BrokerConnection]] = {}
        self._opening: dict[int, asyncio.Lock] = {}

    async def request(self, broker_id: int, api_key: int, version: int, body: Message) -> Message:
        """Send ``body`` to broker ``broker_id`` and wait for its answer;
        KafkaError (NETWORK_EXCEPTION, BROKER_NOT_AVAILABLE, ...) when it
        cannot be reached."""
        connection = await self._connection(broker_id)
        try:
            return await connection.request(api_key, body, version=version)
        except KafkaError:
            self._drop(broker_id)
            raise

    async def _connection(self, broker_id: int) -> BrokerConnection:
        lock = self._opening.setdefault(broker_id, asyncio.Lock())
        async with lock:
            info = self._broker(broker_id)
            if info is None:
                raise KafkaError(ErrorCode.BROKER_NOT_AVAILABLE, f"broker {broker_id} is unknown")
            link = self._links.get(broker_id)
            if link is not None and (link[0] != info or link[1].closed):
                self._drop(broker_id)
                link = None
            if link is None:
                # Imported here: a single node never talks to another broker.
                from ..client.connection import connect

                connection = await connect(
                    info.host,
                    info.port,
                    client_id=self.client_id,
                    request_timeout_ms=self.request_timeout_ms,
                )
                link = (info, connection)
                self._links[broker_id] = link
            return link[1]

    def _drop(self, broker_id: int) -> None:
        link = self._links.pop(broker_id, None)
        if link is not None:
            link[1].close()

    async def close(self) -> None:
        for broker_id in list(self._links):
            link = self._links.pop(broker_id)
            link[1].close()
            with contextlib.suppress(Exception):
                await link[1].wait_closed()
