"""A broker's membership of a cluster (Kafka's KafkaServer in ZooKeeper mode).

The broker's shell around ZooKeeper, in the order Kafka starts one:

1. ``join``: a ZooKeeper session (``zookeeper.connect``), the persistent
   znodes, the cluster id (/cluster/id, written by the first broker), the
   broker id (``broker.id``, else the one in meta.properties, else generated
   from /brokers/seqid when ``broker.id.generation.enable``), and
   meta.properties checked in every log dir;
2. the server builds the broker core over a ``MetadataCache`` and opens its
   listeners (``attach``);
3. ``register``: the ephemeral /brokers/ids/N with the advertised endpoints
   and rack, whose czxid is this broker's epoch; the controller candidacy
   (``ControllerShell``); the watch on config changes (topics, and this
   broker's dynamic configs, ``dynamic_config.py``).

Requests from the controller (LeaderAndIsr, UpdateMetadata, StopReplica)
arrive through the handlers and are fenced here: a request of an older
controller epoch than one already seen is STALE_CONTROLLER_EPOCH, one meant
for an earlier registration of this broker STALE_BROKER_EPOCH, as in Kafka.

When the session is lost (expired while the broker was paused or cut off),
ZooKeeper has dropped the registration: the broker registers again in the
new session, with a new broker epoch, as Kafka's does. ``leave`` ends the
session, which removes the registration at once.

Where moldau departs from Kafka: no controlled shutdown yet (the
operations issue), and the inter-broker requests carry no authentication
(Kafka's are as open without ACLs and TLS).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..client.connection import connect
from ..cluster import wire
from ..cluster.channels import BrokerChannels
from ..cluster.controller.commands import LeaderAndIsr, StopReplica, UpdateMetadata
from ..cluster.controller.rebalance import RebalanceConfig
from ..cluster.controller_shell import ControllerShell
from ..cluster.metadata import _new_cluster_id
from ..cluster.metadata_cache import MetadataCache
from ..cluster.zk import paths as zp
from ..cluster.zk.client import SessionState, ZkClient
from ..cluster.zk.store import BrokerIdInUse, ZkStore
from ..log.config import LogConfig
from ..protocol.errors import ErrorCode, KafkaError
from . import meta_properties
from .config import BrokerConfig
from .dynamic_config import DynamicBrokerConfig
from .join_error import ClusterJoinError
from .purgatory import TopicPartition
from .topic_config import log_config

if TYPE_CHECKING:
    from .core import BrokerCore

log = logging.getLogger(__name__)


class ClusterNode:
    """This broker's session, registration and controller candidacy."""

    def __init__(
        self, config: BrokerConfig, zk: ZkClient, store: ZkStore, cluster_id: str, broker_id: int
    ) -> None:
        self.config = config
        self.zk = zk
        self.store = store
        self.cluster_id = cluster_id
        self.broker_id = broker_id
        #: The czxid of this broker's registration (-1 before it registers).
        self.broker_epoch = -1
        #: The newest controller epoch a request came with.
        self.controller_epoch = -1
        self.controller: ControllerShell | None = None
        self._core: BrokerCore | None = None
        self._cache: MetadataCache | None = None
        self._registration: zp.BrokerRegistration | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_config_change = ""
        #: /config/brokers/<id> and <default>: the replication throttles' rates.
        self.dynamic_config = DynamicBrokerConfig(broker_id)
        self._leaving = False

    # -- startup ---------------------------------------------------------------

    @classmethod
    async def join(cls, config: BrokerConfig) -> ClusterNode:
        """Connect to ZooKeeper and settle the cluster id and broker id."""
        session_ms = int(config.get("zookeeper.session.timeout.ms"))
        connect_ms = config.get("zookeeper.connection.timeout.ms")
        zk = ZkClient(
            str(config.get("zookeeper.connect")),
            session_timeout_ms=session_ms,
            connection_timeout_ms=int(connect_ms if connect_ms is not None else session_ms),
        )
        try:
            await zk.start()
        except Exception as exc:
            await zk.close()
            raise ClusterJoinError(
                f"cannot reach ZooKeeper at {config.get('zookeeper.connect')}: {exc!r}"
            ) from None
        store = ZkStore(zk)
        try:
            await store.create_top_level_paths()
            configured = config.get("cluster.id")
            cluster_id = await store.get_or_create_cluster_id(
                lambda: str(configured) if configured else _new_cluster_id()
            )
            broker_id = await _broker_id(config, store)
            meta_properties.check_and_write(config.log_dirs, cluster_id, broker_id)
        except meta_properties.MetaPropertiesError as exc:
            await zk.close()
            raise ClusterJoinError(str(exc)) from None
        except BaseException:
            await zk.close()
            raise
        log.info("joining cluster %s as broker %d", cluster_id, broker_id)
        return cls(config, zk, store, cluster_id, broker_id)

    def attach(self, core: BrokerCore, cache: MetadataCache) -> None:
        """The parts the controller's requests drive."""
        self._core = core
        self._cache = cache
        self.dynamic_config.quotas = core.replicas.quotas

    async def register(self, endpoints: tuple[zp.Endpoint, ...]) -> None:
        """Register in /brokers/ids and stand for controller."""
        rack = self.config.get("broker.rack")
        self._registration = zp.BrokerRegistration(
            self.broker_id, endpoints, rack=None if rack is None else str(rack)
        )
        # The replication throttles before the registration: the controller
        # answers a registration with LeaderAndIsr, and the fetches it starts
        # must not run unthrottled until the configs are read (Kafka too
        # reads its dynamic configs before it registers).
        await self._watch_config_changes(initial=True)
        await self.dynamic_config.load(self.store)
        await self._register()
        self.zk.on_state(self._session_changed)
        channels = BrokerChannels(
            self.config.inter_broker_listener,
            request_timeout_ms=int(self.config.get("controller.socket.timeout.ms")),
        )
        self.controller = ControllerShell(
            self.store,
            self.broker_id,
            channels,
            clock=lambda: int(time.time() * 1000),
            unclean_default=bool(self.config.get("unclean.leader.election.enable")),
            rebalance=RebalanceConfig(
                bool(self.config.get("auto.leader.rebalance.enable")),
                int(self.config.get("leader.imbalance.check.interval.seconds")) * 1000,
                int(self.config.get("leader.imbalance.per.broker.percentage")),
            ),
        )
        await self.controller.start()

    async def _register(self) -> None:
        assert self._registration is not None
        registration = zp.BrokerRegistration(
            self._registration.broker_id,
            self._registration.endpoints,
            rack=self._registration.rack,
            timestamp_ms=int(time.time() * 1000),
        )
        try:
            self.broker_epoch = await self.store.register_broker(registration)
        except BrokerIdInUse as exc:
            raise ClusterJoinError(f"{exc}: another broker runs with this id") from None
        log.info(
            "registered broker %d at %s (broker epoch %d)",
            self.broker_id,
            ",".join(e.connection_string() for e in registration.endpoints),
            self.broker_epoch,
        )

    def _session_changed(self, state: SessionState) -> None:
        if state is SessionState.LOST:
            log.warning("the ZooKeeper session of broker %d expired", self.broker_id)
            self.broker_epoch = -1
        elif state is SessionState.CONNECTED and self.broker_epoch == -1 and not self._leaving:
            self._spawn(self._reregister())

    async def _reregister(self) -> None:
        try:
            await self._register()
        except Exception as exc:
            log.error("broker %d could not register again: %s", self.broker_id, exc)

    async def leave(self) -> None:
        """Hand leaderships away (controlled shutdown), resign as controller,
        end the session (the registration goes with it)."""
        hand_over = self.broker_epoch != -1 and bool(self.config.get("controlled.shutdown.enable"))
        # No controller can move leaderships without ZooKeeper, and the
        # controller's answer would wait for its return: stop now (Kafka's
        # controlled shutdown fails the same way, after its ZooKeeper request
        # times out).
        if hand_over and not await self.zk.unless_away(self._controlled_shutdown()):
            log.warning(
                "ZooKeeper is unreachable: broker %d stops without a controlled shutdown",
                self.broker_id,
            )
        self._leaving = True
        if self.controller is not None:
            try:
                await self.controller.stop()
            except Exception as exc:
                log.warning("the controller did not stop cleanly: %s", exc)
        for task in list(self._tasks):
            task.cancel()
        await self.zk.close()

    async def _controlled_shutdown(self) -> None:
        """Kafka's controlled shutdown: ask the controller to move every
        leadership this broker holds to another in-sync replica, and retry
        (``controlled.shutdown.max.retries``, with
        ``controlled.shutdown.retry.backoff.ms`` between attempts) while it
        answers that some remain or cannot be reached. Then stop anyway: a
        broker that cannot hand over its leaderships still stops, as in Kafka."""
        attempts = int(self.config.get("controlled.shutdown.max.retries")) + 1
        backoff_s = int(self.config.get("controlled.shutdown.retry.backoff.ms")) / 1000
        timeout_ms = int(self.config.get("controller.socket.timeout.ms"))
        outcome = "no controller"
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(backoff_s)
            target = None
            if self._cache is not None:
                target = self._cache.broker(
                    self._cache.controller_id(), self.config.inter_broker_listener
                )
            if target is None:
                outcome = "no controller"
                continue
            try:
                connection = await connect(target.host, target.port, request_timeout_ms=timeout_ms)
                try:
                    api_key, version, body = wire.controlled_shutdown_request(
                        self.broker_id, self.broker_epoch
                    )
                    answer = await connection.request(api_key, body, version=version)
                finally:
                    connection.close()
                error, remaining = wire.decode_controlled_shutdown_response(answer)
            except Exception as exc:  # the controller moved or went away: ask again
                outcome = f"{type(exc).__name__}: {exc}"
                continue
            if error == ErrorCode.NONE and not remaining:
                log.info("controlled shutdown of broker %d done", self.broker_id)
                return
            outcome = f"{error.name}, {len(remaining)} leaderships left"
        log.warning(
            "controlled shutdown of broker %d did not complete after %d attempts (%s): "
            "stopping anyway",
            self.broker_id,
            attempts,
            outcome,
        )

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- fencing -----------------------------------------------------------------

    def check_epochs(self, controller_epoch: int, broker_epoch: int) -> None:
        """Refuse a request of a deposed controller, or one meant for an
        earlier registration of this broker (Kafka's isBrokerEpochStale:
        -1 means the sender did not say)."""
        if controller_epoch < self.controller_epoch:
            raise KafkaError(
                ErrorCode.STALE_CONTROLLER_EPOCH,
                f"controller epoch {controller_epoch} is older than {self.controller_epoch}",
            )
        if broker_epoch != -1 and broker_epoch < self.broker_epoch:
            raise KafkaError(
                ErrorCode.STALE_BROKER_EPOCH,
                f"broker epoch {broker_epoch} is older than {self.broker_epoch}",
            )
        self.controller_epoch = controller_epoch

    # -- the controller's requests ------------------------------------------------

    async def leader_and_isr(self, request: LeaderAndIsr) -> dict[TopicPartition, ErrorCode]:
        """Lead or follow the partitions named, with their topics' configs."""
        self.check_epochs(request.controller_epoch, request.broker_epoch)
        core, cache = self._parts()
        configs: dict[str, LogConfig] = {}
        for name in {p.topic for p in request.partitions}:
            overrides = cache.configs_of(name)
            if overrides is None:  # a topic new to this broker: read them first
                overrides = await self.store.topic_config(name)
            configs[name] = log_config(overrides, self.config)
        # The request may have waited on ZooKeeper: a newer one may have come.
        self.check_epochs(request.controller_epoch, request.broker_epoch)
        return core.replicas.become_leader_or_follower(request, configs)

    def update_metadata(self, request: UpdateMetadata) -> None:
        """Take the controller's view of brokers and partitions."""
        self.check_epochs(request.controller_epoch, request.broker_epoch)
        _, cache = self._parts()
        for topic in cache.apply(request):
            self._spawn(self._load_topic_config(topic))

    def stop_replica(self, request: StopReplica) -> dict[TopicPartition, ErrorCode]:
        self.check_epochs(request.controller_epoch, request.broker_epoch)
        core, _ = self._parts()
        return core.replicas.stop_replicas(request)

    def _parts(self) -> tuple[BrokerCore, MetadataCache]:
        if self._core is None or self._cache is None:
            raise KafkaError(ErrorCode.BROKER_NOT_AVAILABLE, "the broker is starting")
        return self._core, self._cache

    # -- topic configs ---------------------------------------------------------------

    async def _load_topic_config(self, topic: str) -> None:
        try:
            configs = await self.store.topic_config(topic)
        except Exception as exc:
            log.warning("could not read the configs of topic %s: %s", topic, exc)
            return
        self._apply_topic_config(topic, configs)

    def _apply_topic_config(self, topic: str, configs: dict[str, str]) -> None:
        core, cache = self._parts()
        if cache.topic(topic) is None:
            return
        cache.set_configs(topic, configs)
        info = cache.topic(topic)
        assert info is not None
        core.replicas.set_log_config(info, log_config(info.configs, self.config))

    async def _watch_config_changes(self, initial: bool = False) -> None:
        """Follow /config/changes (Kafka's config change notifications): each
        new notification names an entity whose config to read again."""
        try:
            names = sorted(await self.zk.children(zp.CONFIG_CHANGES, self._config_changes_fired))
        except Exception as exc:
            log.warning("could not watch topic config changes: %s", exc)
            return
        fresh = [n for n in names if n > self._last_config_change]
        if names:
            self._last_config_change = names[-1]
        if initial:
            return
        for name in fresh:
            try:
                data, _ = await self.zk.get(f"{zp.CONFIG_CHANGES}/{name}")
                entity_type, entity = zp.decode_config_change(data)
            except Exception as exc:
                log.warning("skipped config change %s: %s", name, exc)
                continue
            if entity_type == "topics":
                await self._load_topic_config(entity)
            elif entity_type == "brokers":
                await self.dynamic_config.reload(self.store, entity)

    def _config_changes_fired(self, _event: object) -> None:
        if not self._leaving:
            self._spawn(self._watch_config_changes())

    # -- producer ids --------------------------------------------------------------------

    async def allocate_producer_ids(self, count: int) -> int:
        """A block of ``count`` ids from /latest_producer_id_block."""
        try:
            block = await self.store.allocate_producer_id_block(self.broker_id, count)
        except Exception as exc:
            raise KafkaError(
                ErrorCode.COORDINATOR_NOT_AVAILABLE, f"cannot reserve producer ids: {exc}"
            ) from None
        return block.first


async def _broker_id(config: BrokerConfig, store: ZkStore) -> int:
    """broker.id if set, else the one meta.properties remembers, else a new
    one from /brokers/seqid (broker.id.generation.enable), as Kafka does."""
    stored = meta_properties.stored_broker_id(config.log_dirs)
    if "broker.id" in config.explicit or "node.id" in config.explicit:
        return config.broker_id
    if stored is not None:
        return stored
    if not config.get("broker.id.generation.enable"):
        return config.broker_id
    return await store.generate_broker_id(int(config.get("reserved.broker.max.id")))
