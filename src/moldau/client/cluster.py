"""The client's view of a cluster: bootstrap, metadata, one connection per broker.

Producer, consumer and admin share one ``Cluster`` when they want to (pass it
in) or each make their own from a bootstrap string. Everything that asks a
particular broker goes through :meth:`Cluster.node`, which reuses a live
connection or opens one (concurrent callers share the attempt).

Retriable errors (a leader that moved, a topic just created and not yet
everywhere, a broker restarting) are retried with a metadata refresh in
between until a deadline; :meth:`Cluster.retry` is that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode, KafkaError

from .connection import BrokerConnection, connect
from .errors import topic_error
from .metadata import BrokerInfo, ClusterMetadata, TopicInfo, parse_address

#: FindCoordinator's key types.
GROUP_KEY, TRANSACTION_KEY = 0, 1
#: FindCoordinator v4 batches keys: a different shape of request, which one
#: key at a time does not need.
_SINGLE_KEY_FIND_COORDINATOR = 3

__all__ = ["METADATA_ERRORS", "Cluster"]

T = TypeVar("T")

#: Errors that mean our idea of who leads what is stale.
METADATA_ERRORS = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.NOT_CONTROLLER,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.REPLICA_NOT_AVAILABLE,
        ErrorCode.KAFKA_STORAGE_ERROR,
    }
)


class Cluster:
    """Connections and metadata for one cluster, reached via ``bootstrap_servers``
    (``"host:port,host:port"``)."""

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:9092",
        *,
        client_id: str = "moldau",
        request_timeout_ms: int = 30_000,
        connect_timeout_ms: int = 10_000,
        retry_backoff_ms: int = 100,
    ) -> None:
        self.bootstrap = [parse_address(a) for a in bootstrap_servers.split(",") if a.strip()]
        if not self.bootstrap:
            raise ValueError("bootstrap_servers names no broker")
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.retry_backoff = retry_backoff_ms / 1000
        self.metadata = ClusterMetadata()
        self._conns: dict[tuple[str, int], BrokerConnection] = {}
        self._connecting: dict[tuple[str, int], asyncio.Future[BrokerConnection]] = {}
        self._closed = False

    async def __aenter__(self) -> Cluster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- connections ---------------------------------------------------------

    async def connection_to(self, host: str, port: int) -> BrokerConnection:
        """A live connection to ``host:port``, opening one if needed."""
        if self._closed:
            raise KafkaError(ErrorCode.NETWORK_EXCEPTION, "client is closed")
        key = (host, port)
        conn = self._conns.get(key)
        if conn is not None and not conn.closed:
            return conn
        pending = self._connecting.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._open(host, port))
            self._connecting[key] = pending
            pending.add_done_callback(lambda _: self._connecting.pop(key, None))
        return await asyncio.shield(pending)

    async def _open(self, host: str, port: int) -> BrokerConnection:
        conn = await connect(
            host,
            port,
            client_id=self.client_id,
            request_timeout_ms=self.request_timeout_ms,
            connect_timeout_ms=self.connect_timeout_ms,
        )
        if self._closed:
            conn.close()
            raise KafkaError(ErrorCode.NETWORK_EXCEPTION, "client is closed")
        self._conns[(host, port)] = conn
        return conn

    async def node(self, node_id: int) -> BrokerConnection:
        """A connection to broker ``node_id`` (from the current metadata)."""
        broker = self.metadata.brokers.get(node_id)
        if broker is None:
            raise KafkaError(ErrorCode.LEADER_NOT_AVAILABLE, f"broker {node_id} is not known")
        return await self.connection_to(broker.host, broker.port)

    async def any_node(self) -> BrokerConnection:
        """Some broker: an open connection if there is one, else the known
        brokers, then the bootstrap addresses, in order."""
        for conn in self._conns.values():
            if not conn.closed:
                return conn
        addresses = [(b.host, b.port) for b in self.metadata.brokers.values()]
        addresses += [a for a in self.bootstrap if a not in addresses]
        errors = []
        for host, port in addresses:
            try:
                return await self.connection_to(host, port)
            except KafkaError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        where = ", ".join(f"{h}:{p}" for h, p in addresses)
        raise KafkaError(ErrorCode.NETWORK_EXCEPTION, f"cannot connect to any of {where}")

    async def coordinator(self, key: str, key_type: int) -> tuple[int, BrokerConnection]:
        """The node id of the coordinator of ``key`` (a group, ``key_type``
        GROUP_KEY, or a transactional id, TRANSACTION_KEY) and a connection
        to it, as FindCoordinator names it."""
        from .errors import check

        conn = await self.any_node()
        version = min(conn.version(ApiKey.FIND_COORDINATOR), _SINGLE_KEY_FIND_COORDINATOR)
        body = {"key": key, "key_type": key_type}
        answer = await conn.request(ApiKey.FIND_COORDINATOR, body, version=version)
        check(answer["error_code"], answer.get("error_message"), context="find coordinator")
        return answer["node_id"], await self.connection_to(answer["host"], answer["port"])

    async def controller(self) -> BrokerConnection:
        """The controller (admin requests go there), or any broker if unknown."""
        if self.metadata.controller_id < 0:
            await self.refresh([])
        if self.metadata.controller_id in self.metadata.brokers:
            return await self.node(self.metadata.controller_id)
        return await self.any_node()

    async def close(self) -> None:
        self._closed = True
        for pending in list(self._connecting.values()):
            pending.cancel()
        conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()

    # --- metadata ------------------------------------------------------------

    async def refresh(
        self, topics: Iterable[str] | None = None, *, allow_auto_create: bool = False
    ) -> ClusterMetadata:
        """Ask any broker about ``topics`` (None = all) and merge the answer."""
        names = None if topics is None else sorted(set(topics))
        conn = await self.any_node()
        body = {
            "topics": None if names is None else [{"name": n} for n in names],
            "allow_auto_topic_creation": allow_auto_create,
        }
        response = await conn.request(ApiKey.METADATA, body)
        self.metadata = self.metadata.merged(ClusterMetadata.from_response(response), names)
        return self.metadata

    def brokers(self) -> list[BrokerInfo]:
        return sorted(self.metadata.brokers.values(), key=lambda b: b.node_id)

    async def topic(
        self, name: str, *, timeout_ms: int = 10_000, allow_auto_create: bool = False
    ) -> TopicInfo:
        """Metadata of ``name`` with a leader for every partition.

        Retries while the topic is unknown or leaderless (it may just have been
        created) and raises UNKNOWN_TOPIC_OR_PARTITION "topic 'x' does not
        exist" when the deadline passes.
        """

        async def attempt() -> TopicInfo:
            meta = await self.refresh([name], allow_auto_create=allow_auto_create)
            info = meta.topics.get(name)
            if info is None:
                raise topic_error(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            if info.error != ErrorCode.NONE:
                raise topic_error(name, info.error)
            if not info.partitions or any(meta.leader(name, p) is None for p in info.partitions):
                raise KafkaError(
                    ErrorCode.LEADER_NOT_AVAILABLE, f"topic '{name}' has partitions without leader"
                )
            return info

        return await self.retry(attempt, timeout_ms=timeout_ms, refresh=False)

    # --- retries -------------------------------------------------------------

    async def retry(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        timeout_ms: int,
        refresh: bool = True,
        topics: Iterable[str] | None = (),
    ) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or ``timeout_ms``
        passes; the last error is raised. Between tries: a backoff, and a
        metadata refresh (of ``topics``) when the error says it is stale."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_ms / 1000
        wanted = None if topics is None else list(topics)
        while True:
            try:
                return await attempt()
            except KafkaError as exc:
                if not exc.code.retriable or loop.time() + self.retry_backoff >= deadline:
                    raise
                await asyncio.sleep(self.retry_backoff)
                if refresh and exc.code in METADATA_ERRORS:
                    with contextlib.suppress(KafkaError):
                        await self.refresh(wanted)

    async def request_controller(self, api_key: int, body: dict[str, Any]) -> dict[str, Any]:
        """Send to the controller; a NOT_CONTROLLER answer is the caller's to
        retry (see ``retry``), after which the controller is looked up again."""
        conn = await self.controller()
        return await conn.request(api_key, body)
