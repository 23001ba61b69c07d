"""The controller's channels to the brokers (Kafka: ControllerChannelManager).

One queue and one sender task per live broker: requests to one broker go
out one at a time in the order the controller sent them (a broker must see
LeaderAndIsr before the UpdateMetadata that follows it), while a slow or
dead broker holds up no one else. A request whose send fails is retried
with a growing backoff, on a new connection each time, for as long as the
broker is live; when it leaves (or restarts with a new epoch) its queue is
dropped, since the controller tells a returning broker everything again.

A response is handed to the request's ``on_response`` callback on the event
loop; an error inside the response (say STALE_CONTROLLER_EPOCH) is the
caller's business and is not retried.

Encoding is ``moldau.cluster.wire``'s; tests replace the transport (what
sends a request and returns the response), not the encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from moldau.client.connection import BrokerConnection, connect
from moldau.cluster import wire
from moldau.cluster.controller.commands import BrokerRequest
from moldau.cluster.controller.context import LiveBroker
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.messages import Message

log = logging.getLogger(__name__)

Transport = Callable[[LiveBroker, BrokerRequest], Awaitable[Message]]
ResponseHandler = Callable[[Message], None]


class ConnectionTransport:
    """The default transport: moldau's client connection to the broker's
    endpoint on the inter-broker listener, kept open between requests and
    replaced after a failure."""

    def __init__(self, listener: str, request_timeout_ms: int) -> None:
        self.listener = listener
        self.request_timeout_ms = request_timeout_ms
        self._connections: dict[tuple[int, int], BrokerConnection] = {}

    async def __call__(self, broker: LiveBroker, request: BrokerRequest) -> Message:
        api_key, version, body = wire.encode_broker_request(request)
        key = (broker.broker_id, broker.epoch)
        conn = self._connections.get(key)
        if conn is None or conn.closed:
            conn = await self._connect(broker)
            self._connections[key] = conn
        try:
            return await conn.request(api_key, body, version=version)
        except BaseException:
            self._drop(key)
            raise

    async def _connect(self, broker: LiveBroker) -> BrokerConnection:
        endpoint = next((e for e in broker.endpoints if e.listener == self.listener), None)
        if endpoint is None:
            raise KafkaError(
                ErrorCode.BROKER_NOT_AVAILABLE,
                f"broker {broker.broker_id} has no {self.listener} endpoint",
            )
        return await connect(
            endpoint.host,
            endpoint.port,
            client_id=f"controller-to-broker-{broker.broker_id}",
            request_timeout_ms=self.request_timeout_ms,
        )

    def _drop(self, key: tuple[int, int]) -> None:
        conn = self._connections.pop(key, None)
        if conn is not None:
            conn.close()

    def forget(self, broker: LiveBroker) -> None:
        self._drop((broker.broker_id, broker.epoch))

    def close(self) -> None:
        for key in list(self._connections):
            self._drop(key)


@dataclass
class _Channel:
    broker: LiveBroker
    queue: asyncio.Queue[tuple[BrokerRequest, ResponseHandler | None]] = field(
        default_factory=asyncio.Queue
    )
    task: asyncio.Task[None] | None = None


class BrokerChannels:
    """A queue and a sender task per live broker (see the module doc)."""

    def __init__(
        self,
        listener: str = "PLAINTEXT",
        *,
        transport: Transport | None = None,
        retry_backoff_ms: int = 100,
        retry_backoff_max_ms: int = 1000,
        request_timeout_ms: int = 30_000,
    ) -> None:
        """``listener`` is ``inter.broker.listener.name``; ``transport`` replaces
        the connection to the broker (tests record requests with it)."""
        self._default_transport: ConnectionTransport | None = None
        if transport is None:
            self._default_transport = ConnectionTransport(listener, request_timeout_ms)
            transport = self._default_transport
        self._transport = transport
        self.retry_backoff = retry_backoff_ms / 1000
        self.retry_backoff_max = retry_backoff_max_ms / 1000
        self._channels: dict[int, _Channel] = {}

    def brokers(self) -> dict[int, LiveBroker]:
        """The brokers that have a channel now."""
        return {broker_id: channel.broker for broker_id, channel in self._channels.items()}

    def update_brokers(self, brokers: Mapping[int, LiveBroker]) -> None:
        """Open channels to new brokers, close those of brokers gone or
        restarted (a changed epoch); a closed channel's queue is dropped."""
        for broker_id, channel in list(self._channels.items()):
            now = brokers.get(broker_id)
            if now is None or now.epoch != channel.broker.epoch:
                self._remove(broker_id)
        for broker_id, broker in brokers.items():
            if broker_id not in self._channels:
                channel = _Channel(broker)
                channel.task = asyncio.get_running_loop().create_task(
                    self._send_loop(channel), name=f"controller-channel-{broker_id}"
                )
                self._channels[broker_id] = channel

    def _remove(self, broker_id: int) -> None:
        channel = self._channels.pop(broker_id)
        if channel.task is not None:
            channel.task.cancel()
        if self._default_transport is not None:
            self._default_transport.forget(channel.broker)

    def send(self, request: BrokerRequest, on_response: ResponseHandler | None = None) -> None:
        """Queue ``request`` for its broker; dropped if the broker has no channel
        (it left: the controller tells it everything when it returns)."""
        channel = self._channels.get(request.broker_id)
        if channel is None:
            log.debug("no channel to broker %d: dropped %s", request.broker_id, _name(request))
            return
        channel.queue.put_nowait((request, on_response))

    async def close(self) -> None:
        tasks = [c.task for c in self._channels.values() if c.task is not None]
        for broker_id in list(self._channels):
            self._remove(broker_id)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._default_transport is not None:
            self._default_transport.close()

    async def _send_loop(self, channel: _Channel) -> None:
        while True:
            request, on_response = await channel.queue.get()
            response = await self._send_until_done(channel.broker, request)
            if on_response is not None:
                try:
                    on_response(response)
                except Exception:
                    log.exception(
                        "handling the %s response of broker %d",
                        _name(request),
                        channel.broker.broker_id,
                    )

    async def _send_until_done(self, broker: LiveBroker, request: BrokerRequest) -> Message:
        """Retry with backoff until it is answered; the channel's removal
        (cancellation) is the only other way out."""
        backoff = self.retry_backoff
        while True:
            try:
                return await self._transport(broker, request)
            except Exception as exc:
                log.warning(
                    "controller: %s to broker %d failed (%s); retrying in %.0f ms",
                    _name(request),
                    broker.broker_id,
                    exc,
                    backoff * 1000,
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.retry_backoff_max)


def _name(request: BrokerRequest) -> str:
    return type(request).__name__
