"""The ZooKeeper client of cluster mode: kazoo, bridged to asyncio.

kazoo runs its own threads (one for the connection, one for callbacks).
Nothing here blocks the event loop and nothing of the loop runs on those
threads:

- Every request uses kazoo's ``*_async`` call; its result is linked to an
  asyncio future, which the callback thread resolves with
  ``call_soon_threadsafe``.
- A watch or a session-state change calls the handler given by the caller
  on the loop, also through ``call_soon_threadsafe``; a handler posted after
  the loop closed is dropped, since nobody is left to act on it.

Kafka's ZooKeeperClient does the same job for the JVM. As Kafka does, the
chroot of ``zookeeper.connect`` is created when it is missing, by a short
connection to the root before the real one (the chroot is fixed for the
life of a kazoo client).

Errors are kazoo's (``NodeExistsError``, ``NoNodeError``, ``BadVersionError``,
...); the typed store above this turns them into moldau's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from kazoo.client import KazooClient, KazooState, TransactionRequest
from kazoo.exceptions import ConnectionLoss, SessionExpiredError
from kazoo.protocol.states import WatchedEvent, ZnodeStat

from moldau.cluster.zk.paths import MATCH_ANY_VERSION, parse_connect


class SessionState(Enum):
    """What the session did (kazoo's KazooState).

    SUSPENDED: the connection dropped, the session may still be alive.
    CONNECTED: (re)connected, the session and its ephemerals are intact.
    LOST: the session expired or was closed; its ephemeral znodes are gone
    and a broker must register again in a new session.
    """

    CONNECTED = "CONNECTED"
    SUSPENDED = "SUSPENDED"
    LOST = "LOST"


@dataclass(frozen=True)
class Op:
    """One operation of a multi-op (``ZkClient.multi``)."""

    kind: str  # "check", "create", "set", "delete"
    path: str
    data: bytes = b""
    version: int = MATCH_ANY_VERSION
    ephemeral: bool = False
    sequence: bool = False

    @classmethod
    def check(cls, path: str, version: int) -> Op:
        return cls("check", path, version=version)

    @classmethod
    def create(cls, path: str, data: bytes = b"", *, ephemeral: bool = False) -> Op:
        return cls("create", path, data, ephemeral=ephemeral)

    @classmethod
    def set(cls, path: str, data: bytes, version: int = MATCH_ANY_VERSION) -> Op:
        return cls("set", path, data, version=version)

    @classmethod
    def delete(cls, path: str, version: int = MATCH_ANY_VERSION) -> Op:
        return cls("delete", path, version=version)


WatchHandler = Callable[[WatchedEvent], None]


class ZkClient:
    """One ZooKeeper session, used from one asyncio event loop."""

    def __init__(
        self,
        connect: str,
        *,
        session_timeout_ms: int = 18000,
        connection_timeout_ms: int = 18000,
    ) -> None:
        """``connect`` is Kafka's ``zookeeper.connect``; the timeouts are
        ``zookeeper.session.timeout.ms`` and ``zookeeper.connection.timeout.ms``
        (Kafka's defaults)."""
        self.hosts, self.chroot = parse_connect(connect)
        self.session_timeout = session_timeout_ms / 1000
        self.connection_timeout = connection_timeout_ms / 1000
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kazoo = KazooClient(hosts=self.hosts + self.chroot, timeout=self.session_timeout)
        self._state_handlers: list[Callable[[SessionState], None]] = []
        #: Set on the loop while the connection is down (SUSPENDED or LOST).
        self._away = asyncio.Event()
        self._kazoo.add_listener(self._on_state)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Connect (creating the chroot if needed); raises on timeout."""
        self._loop = asyncio.get_running_loop()
        if self.chroot:
            await self._loop.run_in_executor(None, self._ensure_chroot)
        await self._loop.run_in_executor(None, self._kazoo.start, self.connection_timeout)

    def _ensure_chroot(self) -> None:
        root = KazooClient(hosts=self.hosts, timeout=self.session_timeout)
        root.start(timeout=self.connection_timeout)
        try:
            root.ensure_path(self.chroot)
        finally:
            root.stop()
            root.close()

    async def close(self) -> None:
        """End the session: its ephemeral znodes go at once."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._kazoo.stop)
        await loop.run_in_executor(None, self._kazoo.close)

    @property
    def connected(self) -> bool:
        """Whether the connection is up now. A request made while it is down
        waits until it comes back, however long that takes."""
        return bool(self._kazoo.connected)

    @property
    def session(self) -> tuple[int, bytes] | None:
        """(session id, password), for tests that expire the session."""
        client_id: tuple[int, bytes] | None = self._kazoo.client_id
        return client_id

    async def unless_away(self, awaitable: Awaitable[object]) -> bool:
        """Await ``awaitable`` unless the connection is down or drops first;
        whether it ran to its end (when it did not, it is cancelled). For
        what a stopping broker does through ZooKeeper (its controlled
        shutdown, its resignation), which would otherwise wait for
        ZooKeeper's return. ``connected`` alone does not do: the connection
        may have dropped with kazoo yet to notice. A ZooKeeper request of
        ``awaitable`` that fails for the drop counts as given up too."""
        work = asyncio.ensure_future(awaitable)
        if not self.connected:
            work.cancel()
        away = asyncio.ensure_future(self._away.wait())
        try:
            await asyncio.wait({work, away}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            away.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if work.cancelled():
            return False
        try:
            work.result()
        except (ConnectionLoss, SessionExpiredError):  # kazoo saw the drop first
            return False
        return True

    def on_state(self, handler: Callable[[SessionState], None]) -> None:
        """Call ``handler`` on the loop at every session state change."""
        self._state_handlers.append(handler)

    def _on_state(self, state: str) -> None:
        mapped = {
            KazooState.CONNECTED: SessionState.CONNECTED,
            KazooState.SUSPENDED: SessionState.SUSPENDED,
            KazooState.LOST: SessionState.LOST,
        }[state]
        self._post(self._note_state, mapped)
        for handler in list(self._state_handlers):
            self._post(handler, mapped)

    def _note_state(self, state: SessionState) -> None:
        if state is SessionState.CONNECTED:
            self._away.clear()
        else:
            self._away.set()

    # -- bridging ------------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop, from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # RuntimeError: the loop closed between the check and the call.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    def _watch(self, handler: WatchHandler | None) -> Callable[[WatchedEvent], None] | None:
        if handler is None:
            return None
        return lambda event: self._post(handler, event)

    async def _await(self, async_result: Any) -> Any:
        """An asyncio future for a kazoo IAsyncResult."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def settle(result: Any) -> None:
            if future.done():
                return
            try:
                value = result.get_nowait()
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(value)

        async_result.rawlink(lambda result: self._post(settle, result))
        return await future

    # -- requests ------------------------------------------------------------

    async def create(
        self,
        path: str,
        data: bytes = b"",
        *,
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
    ) -> str:
        """Create a znode; returns its path (with the sequence number, if any)."""
        created: str = await self._await(
            self._kazoo.create_async(
                path, data, ephemeral=ephemeral, sequence=sequence, makepath=makepath
            )
        )
        return created

    async def create_with_stat(self, path: str, data: bytes, *, ephemeral: bool) -> ZnodeStat:
        """Create and return the new znode's stat (Kafka's broker epoch is its czxid)."""
        result = await self._await(
            self._kazoo.create_async(path, data, ephemeral=ephemeral, include_data=True)
        )
        stat: ZnodeStat = result[1]
        return stat

    async def ensure_path(self, path: str) -> None:
        await self._await(self._kazoo.ensure_path_async(path))

    async def get(self, path: str, watch: WatchHandler | None = None) -> tuple[bytes, ZnodeStat]:
        """Data and stat; raises NoNodeError. ``watch`` fires once, on the loop."""
        data, stat = await self._await(self._kazoo.get_async(path, watch=self._watch(watch)))
        return data, stat

    async def exists(self, path: str, watch: WatchHandler | None = None) -> ZnodeStat | None:
        """The stat, or None; a watch is set either way (on creation or on change)."""
        stat: ZnodeStat | None = await self._await(
            self._kazoo.exists_async(path, watch=self._watch(watch))
        )
        return stat

    async def children(self, path: str, watch: WatchHandler | None = None) -> list[str]:
        names: list[str] = await self._await(
            self._kazoo.get_children_async(path, watch=self._watch(watch))
        )
        return names

    async def set(self, path: str, data: bytes, version: int = MATCH_ANY_VERSION) -> ZnodeStat:
        """Write if the znode's version is ``version``; raises BadVersionError."""
        stat: ZnodeStat = await self._await(self._kazoo.set_async(path, data, version))
        return stat

    async def delete(self, path: str, version: int = MATCH_ANY_VERSION) -> None:
        await self._await(self._kazoo.delete_async(path, version))

    async def multi(self, ops: Sequence[Op]) -> list[Any]:
        """All ops or none. Returns kazoo's result per op: the created path,
        a stat, True, or, when the transaction failed, the exception of the
        op that failed and RolledBackError for the others."""
        tx: TransactionRequest = self._kazoo.transaction()
        for op in ops:
            if op.kind == "check":
                tx.check(op.path, op.version)
            elif op.kind == "create":
                tx.create(op.path, op.data, ephemeral=op.ephemeral, sequence=op.sequence)
            elif op.kind == "set":
                tx.set_data(op.path, op.data, op.version)
            elif op.kind == "delete":
                tx.delete(op.path, op.version)
            else:
                raise ValueError(f"unknown op {op.kind!r}")
        results: list[Any] = await self._await(tx.commit_async())
        return results
