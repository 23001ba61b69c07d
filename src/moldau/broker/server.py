"""The broker process's shell: listening sockets, connections, housekeeping.

``BrokerServer`` wires the pieces together (config, log manager, metadata
store, core, handlers) on one asyncio event loop, accepts connections within
Kafka's limits (``max.connections``, ``max.connections.per.ip``, see
``connection_limits``), and runs the periodic jobs (flushes, checkpoints).
It starts in milliseconds: logs open lazily through the page cache and
codecs compile on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..cluster.metadata import BrokerInfo, LocalMetadataStore
from ..log.cleaner import CleanerConfig
from ..log.manager import LogManager
from . import handlers  # noqa: F401  (registers every API handler)
from .config import LONG_MAX, BrokerConfig
from .connection import Connection
from .connection_limits import ConnectionLimits
from .core import BrokerCore
from .dispatch import Dispatcher
from .internal_topics import is_internal_topic
from .log_limit import RateLimitedLog
from .producer_ids import local_allocator
from .request_memory import RequestMemory
from .topic_config import log_config
from .topics import TopicAdmin

if TYPE_CHECKING:
    from ..cluster.zk.paths import Endpoint
    from .cluster_node import ClusterNode

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 60.0
#: How often the segment files are checked for removal from under the broker.
STORAGE_CHECK_INTERVAL_S = 5.0
#: Stored bytes the cleaner reads per step: a step takes tens of milliseconds
#: at most, so requests never wait long behind compaction.
CLEAN_STEP_BYTES = 128 * 1024


class BrokerServer:
    """One broker: bind, serve, stop."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.core: BrokerCore | None = None
        self.logs: LogManager | None = None
        self.bound: list[tuple[str, int]] = []
        self._listeners: list[socket.socket] = []
        #: Each listening socket's listener name.
        self._listener_names: dict[socket.socket, str] = {}
        self._connections: set[Connection] = set()
        self._limits = ConnectionLimits.from_config(config)
        self._accepting = False
        self._memory = RequestMemory(int(config.get("queued.max.request.bytes")))
        #: One rate limit for every warning a client can provoke on this broker.
        self._warnings = RateLimitedLog(logging.getLogger("moldau.broker.requests"))
        self._dispatcher: Dispatcher | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        #: What the last stop could not make durable (empty: a clean shutdown).
        self.stop_problems: list[str] = []

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{host}:{port}" for host, port in self.bound)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._bind()
        node: ClusterNode | None = None
        if self.config.cluster_mode:
            # Imported here: a single node loads no ZooKeeper or controller code.
            from .cluster_node import ClusterNode

            node = await ClusterNode.join(self.config)
            if node.broker_id != self.config.broker_id:  # generated or remembered
                self.config = self.config.with_overrides({"broker.id": str(node.broker_id)})
        config = self.config
        advertised = self._advertised()
        self.logs = logs = LogManager(
            config.log_dirs,
            log_config({}, config),
            cleaner_config=CleanerConfig(
                enable=bool(config.get("log.cleaner.enable")),
                backoff_ms=int(config.get("log.cleaner.backoff.ms")),
                dedupe_buffer_size=int(config.get("log.cleaner.dedupe.buffer.size")),
            ),
        )
        try:
            self.logs.lock()
            if node is None:
                self.core = self._single_node_core(advertised, logs)
            else:
                self.core = self._cluster_core(node, advertised, logs)
            self.core.start_groups()
            if self.core.needs_transactions_at_start():
                self.core.start_transactions()
            self._dispatcher = Dispatcher(self.core, self._warnings)
            self._accept_new(True)
            if node is not None:
                await node.register(self._endpoints())
        except BaseException:
            if node is not None:
                await node.leave()
            raise
        self._start_jobs()
        log.info(
            "moldau broker %d serving on %s (data in %s)%s",
            config.broker_id,
            self.bootstrap_servers,
            ",".join(config.log_dirs),
            "" if node is None else f" in cluster {node.cluster_id}",
        )

    def _single_node_core(self, advertised: dict[str, BrokerInfo], logs: LogManager) -> BrokerCore:
        """The embedded default: metadata in a file next to the logs."""
        config = self.config
        metadata = LocalMetadataStore(config.log_dirs[0], advertised)
        core = BrokerCore(
            config,
            metadata,
            logs,
            topic_admin=lambda replicas: TopicAdmin(config, metadata, logs, replicas),
            producer_id_blocks=local_allocator(metadata),
        )
        # Partition dirs the metadata does not name are a crash's leftovers,
        # unless the metadata itself is new (then nothing is judged).
        logs.load(core.replicas.keeps_log if metadata.restored else None)
        core.replicas.open_partitions()
        return core

    def _cluster_core(
        self, node: ClusterNode, advertised: dict[str, BrokerInfo], logs: LogManager
    ) -> BrokerCore:
        """Cluster mode: metadata from the controller, topics through
        ZooKeeper. Every log on disk is loaded; which are hosted, and how,
        the controller's LeaderAndIsr requests decide (and a replica of a
        topic deleted while this broker was down is deleted when the
        controller sees it return)."""
        from ..cluster.metadata_cache import MetadataCache
        from .cluster_topics import ClusterTopicAdmin

        config = self.config
        cache = MetadataCache(node.cluster_id, advertised, is_internal_topic)
        core = BrokerCore(
            config,
            cache,
            logs,
            topic_admin=lambda replicas: ClusterTopicAdmin(
                config, cache, logs, replicas, node.store
            ),
            producer_id_blocks=node.allocate_producer_ids,
        )
        core.cluster = node
        core.replicas.broker_epoch = lambda: node.broker_epoch
        node.attach(core, cache)
        logs.load(None)
        return core

    def _endpoints(self) -> tuple[Endpoint, ...]:
        """The registration's endpoints: every advertised listener, the
        inter-broker one first."""
        from ..cluster.zk.paths import Endpoint

        protocols = self.config.security_protocols
        endpoints = [
            Endpoint(name, host, port, protocols.get(name, "PLAINTEXT"))
            for name, host, port in self._advertised_addresses()
        ]
        inter = self.config.inter_broker_listener
        endpoints.sort(key=lambda e: e.listener != inter)
        return tuple(endpoints)

    def _advertised_addresses(self) -> list[tuple[str, str, int]]:
        """Every advertised listener as (name, host, port), in configured
        order: port 0 resolved to the port its listener was bound to, a
        wildcard host to this machine's name."""
        bound = {
            name: port
            for (name, _, _), (_, port) in zip(self.config.listeners, self.bound, strict=True)
        }
        addresses = []
        for name, host, port in self.config.advertised_listeners:
            if port == 0:
                port = bound.get(name, port)
            if host in ("", "0.0.0.0", "::"):
                host = socket.gethostname()
            addresses.append((name, host, port))
        return addresses

    def _start_jobs(self) -> None:
        assert self._loop is not None
        config = self.config
        self._start_job(CHECKPOINT_INTERVAL_S * 1000, self._checkpoint)
        self._start_job(STORAGE_CHECK_INTERVAL_S * 1000, self._check_storage)
        flush_ms = config.get("log.flush.interval.ms") or config.get(
            "log.flush.scheduler.interval.ms"
        )
        if flush_ms < LONG_MAX:
            self._start_job(flush_ms, self._flush)
        self._start_job(config.get("log.retention.check.interval.ms"), self._enforce_retention)
        self._start_job(
            config.get("producer.id.expiration.check.interval.ms"), self._expire_producers
        )
        if config.get("log.cleaner.enable"):
            self._jobs.append(self._loop.create_task(self._clean()))

    def _bind(self) -> None:
        for name, host, port in self.config.listeners:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                listener.bind((host, port))
            except OSError as exc:  # one line naming the address (moldau broker prints it)
                listener.close()
                error = OSError(f"cannot listen on {host or '0.0.0.0'}:{port}: {exc.strerror}")
                error.errno = exc.errno
                raise error from exc
            listener.listen(1024)
            listener.setblocking(False)
            self._listeners.append(listener)
            self._listener_names[listener] = name
            self.bound.append((host or "0.0.0.0", listener.getsockname()[1]))

    def _advertised(self) -> dict[str, BrokerInfo]:
        """What clients are told to connect to, per listener: a client is
        given the addresses of the listener it came in on, as in Kafka. The
        first is the default."""
        return {
            name: BrokerInfo(self.config.broker_id, host, port)
            for name, host, port in self._advertised_addresses()
        }

    def _accept_new(self, accepting: bool) -> None:
        """Listen for new connections, or leave them in the backlog (max.connections)."""
        if self._loop is None or accepting == self._accepting:
            return
        self._accepting = accepting
        for listener in self._listeners:
            if accepting:
                self._loop.add_reader(listener.fileno(), self._accept, listener)
            else:
                self._loop.remove_reader(listener.fileno())

    def _accept(self, listener: socket.socket) -> None:
        assert self._loop is not None and self._dispatcher is not None
        while self._accepting:
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("accept failed: %s", exc)
                return
            host = address[0]
            if not self._limits.admit(host):
                self._warnings.warning(
                    f"closing a connection from {host}: max.connections.per.ip "
                    f"({self._limits.limit_for(host)}) reached"
                )
                sock.close()
                continue
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # the client is gone already
                self._limits.release(host)
                sock.close()
                continue
            connection = Connection(
                self._loop,
                sock,
                self._dispatcher,
                int(self.config.get("socket.request.max.bytes")),
                self._connection_closed,
                memory=self._memory,
                idle_ms=int(self.config.get("connections.max.idle.ms")),
                warnings=self._warnings,
            )
            connection.client_host = host  # the key its per-address count was taken under
            connection.listener = self._listener_names[listener]
            self._connections.add(connection)
            if len(self._connections) >= self._limits.max_connections:
                self._warnings.warning(
                    f"max.connections ({self._limits.max_connections}) reached: "
                    "new connections wait"
                )
                self._accept_new(False)

    def _connection_closed(self, connection: Connection) -> None:
        if connection not in self._connections:
            return
        self._connections.remove(connection)
        self._limits.release(connection.client_host)
        if self._listeners and len(self._connections) < self._limits.max_connections:
            self._accept_new(True)

    async def _close_connections(self) -> None:
        """Close every connection and wait for the requests they cancel."""
        closing = list(self._connections)
        for connection in closing:
            connection.close()
        for connection in closing:
            await connection.wait_closed()

    def _start_job(self, interval_ms: float, job: Callable[[], Any]) -> None:
        assert self._loop is not None
        self._jobs.append(self._loop.create_task(self._every(interval_ms / 1000, job)))

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                job()
            except Exception:
                log.exception("periodic job %s failed", job.__name__)

    async def _clean(self) -> None:
        """Compact logs in small steps, yielding to requests between steps."""
        backoff_s = int(self.config.get("log.cleaner.backoff.ms")) / 1000
        while True:
            more = self.logs is not None and self.logs.clean_step(CLEAN_STEP_BYTES)
            await asyncio.sleep(0 if more else backoff_s)

    def _enforce_retention(self) -> None:
        if self.logs is not None:
            removed = self.logs.enforce_retention()
            if removed:
                log.info("retention removed %d segments", removed)

    def _expire_producers(self) -> None:
        if self.logs is not None:
            self.logs.expire_producers(int(self.config.get("producer.id.expiration.ms")))

    def _flush(self) -> None:
        if self.logs is not None:
            self.logs.flush_due()

    def _checkpoint(self) -> None:
        if self.logs is not None:
            self.logs.checkpoint()

    def _check_storage(self) -> None:
        if self.logs is not None:
            self.logs.check_storage()

    async def stop(self) -> None:
        """Stop serving, then flush and checkpoint every log. On a full or
        failed disk this still completes: what could not be made durable is
        logged and kept in ``stop_problems``, the dir is not marked clean, and
        the next start recovers (nothing acknowledged is lost: it is in the
        files, only not known to be fsynced)."""
        loop = self._loop
        if self.core is not None and self.core.cluster is not None:
            # Leave the cluster first: the controller moves leaderships away
            # while this broker still closes its logs.
            await self.core.cluster.leave()
        if self.core is not None:
            await self.core.replicas.close()
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        for listener in self._listeners:
            if loop is not None:
                loop.remove_reader(listener.fileno())
            listener.close()
        self._listeners.clear()
        self._listener_names.clear()
        await self._close_connections()
        if self.core is not None and self.core.groups is not None:
            await self.core.groups.close()
        if self.core is not None and self.core.transactions is not None:
            await self.core.transactions.close()
        if self.logs is not None:
            self.stop_problems = self.logs.close()
            self.logs = None
        self._stopped.set()
        if self.stop_problems:
            log.error(
                "moldau broker %d stopped without a clean shutdown (%s): "
                "the next start recovers the logs",
                self.config.broker_id,
                "; ".join(self.stop_problems),
            )
        else:
            log.info("moldau broker %d stopped", self.config.broker_id)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
