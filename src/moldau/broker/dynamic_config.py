"""Dynamic broker configs (Kafka's DynamicBrokerConfig and BrokerConfigHandler,
ZooKeeper mode), for the keys moldau changes at run time: the replication
throttles' rates (``config.DYNAMIC_BROKER_KEYS``).

Where they live is Kafka's: /config/brokers/<id> for one broker and
/config/brokers/<default> for every broker, each change followed by a
/config/changes/config_change_N notification naming ``brokers/<id>`` or
``brokers/<default>``; every broker reads both at startup and again on each
notification. A broker's value is its own, else the default's, else
unlimited (Kafka's BrokerConfigHandler.getOrDefault).

AlterConfigs and IncrementalAlterConfigs reach ``alter`` with a BROKER
resource: its name is this broker's id (a client sends it to that broker)
or "" for the default, which any broker writes. As in Kafka 3.9
(ConfigAdminManager.preprocess), another broker's id is INVALID_REQUEST
"Unexpected broker id, expected <this>, but received <that>", and a key
that cannot change at run time INVALID_REQUEST "Cannot update these configs
dynamically: Set(<keys>)". The writing broker applies the new values at
once, so its DescribeConfigs sees them; the others follow the notification.

Where moldau departs from Kafka: a key Kafka would keep as a custom config
(one it does not know) is refused like a non-dynamic one, and so are
Kafka's other dynamic broker keys, which moldau does not change at run
time. A single node (no ZooKeeper) refuses the throttle rates: it has no
followers, so there is nothing to throttle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..cluster.zk.paths import DEFAULT_ENTITY
from ..protocol.errors import ErrorCode, KafkaError
from ..replication.quota import FOLLOWER_RATE, LEADER_RATE, UNLIMITED, ReplicationQuotas
from .config import DYNAMIC_BROKER_KEYS

if TYPE_CHECKING:
    from ..cluster.zk.store import ZkStore
    from .core import BrokerCore

log = logging.getLogger(__name__)

#: DescribeConfigs' sources of a dynamic broker config.
DYNAMIC_BROKER_CONFIG = 2
DYNAMIC_DEFAULT_BROKER_CONFIG = 3

BROKERS = "brokers"

#: A DescribeConfigs entry: name, value, source, synonyms as (value, source).
Entry = tuple[str, str, int, list[tuple[str, int]]]


class DynamicBrokerConfig:
    """This broker's dynamic configs: its own and the cluster default, and
    the throttle rates they give."""

    def __init__(self, broker_id: int) -> None:
        self.broker_id = broker_id
        #: The throttles the rates go to, once the broker has them.
        self.quotas: ReplicationQuotas | None = None
        self.own: dict[str, str] = {}
        self.default: dict[str, str] = {}

    async def load(self, store: ZkStore) -> None:
        """Read both entities (at startup)."""
        for entity in (DEFAULT_ENTITY, str(self.broker_id)):
            await self.reload(store, entity)

    async def reload(self, store: ZkStore, entity: str) -> None:
        """Read ``entity`` again (a change notification named it); another
        broker's entity is none of this one's business."""
        if entity not in (DEFAULT_ENTITY, str(self.broker_id)):
            return
        try:
            configs = await store.entity_config(BROKERS, entity)
        except Exception as exc:
            log.warning("could not read the dynamic configs of broker %s: %s", entity, exc)
            return
        self.update(entity, configs)

    def update(self, entity: str, configs: Mapping[str, str]) -> None:
        """Take ``entity``'s configs; values that do not parse are ignored with
        a warning, as Kafka ignores invalid configs found in ZooKeeper."""
        usable = {}
        for name, value in configs.items():
            problem = _problem(name, value)
            if problem is None:
                usable[name] = value
            else:
                log.warning("ignoring dynamic config of broker %s: %s", entity, problem)
        if entity == DEFAULT_ENTITY:
            self.default = usable
        elif entity == str(self.broker_id):
            self.own = usable
        else:
            return
        self.apply()

    def apply(self) -> None:
        """Give the throttles the rates of the configs now in force."""
        if self.quotas is None:
            return
        self.quotas.set_rates(self.rate(LEADER_RATE), self.rate(FOLLOWER_RATE))
        log.info(
            "broker %d: replication throttles now leader %s, follower %s bytes/s",
            self.broker_id,
            self.value(LEADER_RATE) or "unlimited",
            self.value(FOLLOWER_RATE) or "unlimited",
        )

    def value(self, name: str) -> str | None:
        """The effective value: this broker's, else the default's, else None."""
        return self.own.get(name, self.default.get(name))

    def rate(self, name: str) -> int:
        value = self.value(name)
        return UNLIMITED if value is None else int(value)

    def describe(self, entity: str) -> list[Entry]:
        """(name, value, source, synonyms as (value, source)) of every key set,
        for DescribeConfigs of ``entity`` (this broker's id, or the default)."""
        if entity == DEFAULT_ENTITY:
            return [
                (
                    name,
                    value,
                    DYNAMIC_DEFAULT_BROKER_CONFIG,
                    [(value, DYNAMIC_DEFAULT_BROKER_CONFIG)],
                )
                for name, value in sorted(self.default.items())
            ]
        entries = []
        for name in sorted({*self.own, *self.default}):
            synonyms = [(self.own[name], DYNAMIC_BROKER_CONFIG)] if name in self.own else []
            if name in self.default:
                synonyms.append((self.default[name], DYNAMIC_DEFAULT_BROKER_CONFIG))
            entries.append((name, synonyms[0][0], synonyms[0][1], synonyms))
        return entries


def entity_of(resource_name: str, broker_id: int) -> str:
    """The ZooKeeper entity of a BROKER resource this broker may alter."""
    if not resource_name:
        return DEFAULT_ENTITY
    try:
        named = int(resource_name)
    except ValueError:
        raise KafkaError(
            ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {resource_name}"
        ) from None
    if named != broker_id:
        raise KafkaError(
            ErrorCode.INVALID_REQUEST,
            f"Unexpected broker id, expected {broker_id}, but received {resource_name}",
        )
    return resource_name


def _problem(name: str, value: str) -> str | None:
    """Why ``name=value`` cannot be a dynamic broker config (Kafka's
    ConfigDef messages), or None."""
    key = DYNAMIC_BROKER_KEYS.get(name)
    if key is None:
        return f"Cannot update these configs dynamically: Set({name})"
    invalid = f"Invalid value {value} for configuration {name}"
    try:
        number = int(value.strip())
    except ValueError:
        return f"{invalid}: Not a number of type LONG"
    if not -(2**63) <= number < 2**63:
        return f"{invalid}: Not a number of type LONG"
    if key.minimum is not None and number < key.minimum:
        return f"{invalid}: Value must be at least {key.minimum:g}"
    return None


def validate(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Check a new set of dynamic configs; INVALID_REQUEST names what is wrong."""
    nulls = sorted(name for name, value in configs.items() if value is None)
    if nulls:
        raise KafkaError(
            ErrorCode.INVALID_REQUEST, f"Null value not supported for : {', '.join(nulls)}"
        )
    checked = {name: str(value).strip() for name, value in configs.items() if value is not None}
    static = sorted(name for name in checked if name not in DYNAMIC_BROKER_KEYS)
    if static:
        raise KafkaError(
            ErrorCode.INVALID_REQUEST,
            f"Cannot update these configs dynamically: Set({', '.join(static)})",
        )
    for name, value in checked.items():
        problem = _problem(name, value)
        if problem is not None:
            raise KafkaError(ErrorCode.INVALID_REQUEST, problem)
    return checked


Change = Callable[[dict[str, str]], dict[str, str | None]]


async def alter(core: BrokerCore, resource_name: str, change: Change, validate_only: bool) -> None:
    """Alter a BROKER resource: ``change`` turns the entity's current configs
    (as stored in ZooKeeper) into the new ones, which are checked, written,
    announced, and applied here at once."""
    entity = entity_of(resource_name, core.broker_id)
    node = core.cluster
    if node is None:
        validate(change({}))
        raise KafkaError(
            ErrorCode.INVALID_REQUEST,
            "moldau runs as a single node (no zookeeper.connect): it has no followers, "
            "so there is no replication to throttle",
        )
    from kazoo.exceptions import KazooException  # cluster mode only: a single node has none

    try:
        stored = await node.store.entity_config(BROKERS, entity)
        # What Kafka would not load from there either is dropped (fromPersistentProps).
        current = {k: v for k, v in stored.items() if _problem(k, v) is None}
        checked = validate(change(current))
        if validate_only:
            return
        await node.store.set_entity_config(BROKERS, entity, checked)
    except KazooException as exc:
        log.warning("could not alter the configs of broker %s: ZooKeeper: %r", entity, exc)
        raise KafkaError(
            ErrorCode.REQUEST_TIMED_OUT,
            f"Could not alter the configs of broker {entity}: ZooKeeper is unavailable",
        ) from None
    node.dynamic_config.update(entity, checked)
    log.info("dynamic configs of broker %s now %s", entity, checked)


def describe_entries(core: BrokerCore, resource_name: str) -> list[Entry]:
    """The dynamic entries DescribeConfigs shows for a BROKER resource (none
    on a single node)."""
    node = core.cluster
    if node is None:
        return []
    return node.dynamic_config.describe(resource_name or DEFAULT_ENTITY)
