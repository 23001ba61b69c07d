"""Kafka 3.9's ZooKeeper layout: znode paths and the JSON each znode holds.

Pure: no I/O, no kazoo, no asyncio. Everything here is what Kafka's
``ZkData.scala`` reads and writes in ZooKeeper mode, so an operator who knows
Kafka can read a moldau cluster with ``zookeeper-shell`` and the other way
round. Paths are relative to the chroot of ``zookeeper.connect``; the chroot
itself goes into the client's connection string (see ``parse_connect``).

Encoders write compact JSON as Kafka's Jackson does; the key order is the
one Kafka's output usually shows, and is of no meaning to any reader.
Decoders accept every version Kafka 3.9 still reads (broker registration
v1-v5, topic assignment v1-v3, controller v1-v2) and raise
``ZkDataError`` on anything they cannot read.

Where moldau departs from Kafka: the ACL, delegation-token, log-dir-event
and migration znodes are not modelled (moldau has no authorizer, no tokens,
one log-dir failure mode and no KRaft migration).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------- paths

CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
BROKERS = "/brokers"
BROKER_IDS = "/brokers/ids"
BROKER_SEQID = "/brokers/seqid"
TOPICS = "/brokers/topics"
CONFIG = "/config"
CONFIG_CHANGES = "/config/changes"
#: Prefix of the sequential change-notification znodes under /config/changes.
CONFIG_CHANGE_PREFIX = "config_change_"
ADMIN = "/admin"
DELETE_TOPICS = "/admin/delete_topics"
PREFERRED_REPLICA_ELECTION = "/admin/preferred_replica_election"
REASSIGN_PARTITIONS = "/admin/reassign_partitions"
CLUSTER_ID = "/cluster/id"
PRODUCER_ID_BLOCK = "/latest_producer_id_block"
ISR_CHANGE_NOTIFICATION = "/isr_change_notification"
ISR_CHANGE_PREFIX = "isr_change_"
LOG_DIR_EVENT_NOTIFICATION = "/log_dir_event_notification"

#: The config entity types Kafka keeps under /config (ConfigType.ALL).
CONFIG_ENTITY_TYPES = ("topics", "clients", "users", "brokers", "ips")
#: The entity name of the cluster-wide default (Kafka's
#: ZooKeeperInternals.DEFAULT_STRING): /config/brokers/<default> holds the
#: dynamic broker configs of every broker, /config/brokers/<id> one broker's.
DEFAULT_ENTITY = "<default>"

#: The znodes Kafka creates (empty) at startup, so that later writes and
#: watches on their children never race with their creation.
PERSISTENT_PATHS: tuple[str, ...] = (
    "/consumers",
    BROKER_IDS,
    TOPICS,
    CONFIG_CHANGES,
    DELETE_TOPICS,
    BROKER_SEQID,
    ISR_CHANGE_NOTIFICATION,
    PRODUCER_ID_BLOCK,
    LOG_DIR_EVENT_NOTIFICATION,
    *(f"{CONFIG}/{entity_type}" for entity_type in CONFIG_ENTITY_TYPES),
)

#: ZooKeeper's "any version" for a conditional write (Kafka: ZkVersion.MatchAnyVersion).
MATCH_ANY_VERSION = -1

#: Kafka's reserved.broker.max.id default: generated ids start above it.
RESERVED_BROKER_MAX_ID = 1000


class ZkDataError(ValueError):
    """A znode holds something that is not the JSON Kafka writes there."""


def _name(component: str, what: str) -> str:
    """A path component: never empty, never a slash (a topic name cannot hold one)."""
    if not component or "/" in component or component in (".", ".."):
        raise ValueError(f"invalid {what} for a znode path: {component!r}")
    return component


def broker_path(broker_id: int) -> str:
    return f"{BROKER_IDS}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{TOPICS}/{_name(topic, 'topic')}"


def partitions_path(topic: str) -> str:
    return f"{topic_path(topic)}/partitions"


def partition_path(topic: str, partition: int) -> str:
    return f"{partitions_path(topic)}/{partition}"


def partition_state_path(topic: str, partition: int) -> str:
    return f"{partition_path(topic, partition)}/state"


def config_entity_path(entity_type: str, name: str) -> str:
    return f"{CONFIG}/{_name(entity_type, 'entity type')}/{_name(name, 'entity name')}"


def topic_config_path(topic: str) -> str:
    return config_entity_path("topics", topic)


def broker_config_path(entity: str) -> str:
    """/config/brokers/<id> or /config/brokers/<default> (``DEFAULT_ENTITY``)."""
    return config_entity_path("brokers", entity)


def delete_topic_path(topic: str) -> str:
    return f"{DELETE_TOPICS}/{_name(topic, 'topic')}"


def config_change_create_path() -> str:
    """Where to create a sequential notification; ZooKeeper appends the number."""
    return f"{CONFIG_CHANGES}/{CONFIG_CHANGE_PREFIX}"


def isr_change_create_path() -> str:
    return f"{ISR_CHANGE_NOTIFICATION}/{ISR_CHANGE_PREFIX}"


def parse_connect(connect: str) -> tuple[str, str]:
    """Split ``zookeeper.connect`` into the host list and the chroot ("" for none).

    Kafka accepts ``host:port[,host:port...][/chroot]``; the chroot follows the
    last host and a trailing slash is not a chroot of its own.
    """
    hosts, slash, chroot = connect.partition("/")
    if not hosts:
        raise ValueError(f"zookeeper.connect names no host: {connect!r}")
    chroot = (slash + chroot).rstrip("/")
    return hosts, chroot


# --------------------------------------------------------------------------- json


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _load(data: bytes | None, what: str) -> dict[str, Any]:
    if not data:
        raise ZkDataError(f"{what}: empty znode")
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZkDataError(f"{what}: not JSON: {data[:200]!r}") from exc
    if not isinstance(obj, dict):
        raise ZkDataError(f"{what}: not a JSON object: {data[:200]!r}")
    return obj


def _int(obj: Mapping[str, Any], key: str, what: str) -> int:
    """An int field; Kafka writes some as JSON strings (timestamps, block bounds)."""
    try:
        value = obj[key]
    except KeyError:
        raise ZkDataError(f"{what}: no {key!r}") from None
    if isinstance(value, bool):
        raise ZkDataError(f"{what}: {key!r} is not a number: {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ZkDataError(f"{what}: {key!r} is not a number: {value!r}") from None


def _opt_int(obj: Mapping[str, Any], key: str, default: int, what: str) -> int:
    """An optional int field: ``default`` when absent or null."""
    return default if obj.get(key) is None else _int(obj, key, what)


def _int_list(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ZkDataError(f"{what}: not a list of broker ids: {value!r}")
    return tuple(value)


def kafka_uuid(value: uuid.UUID) -> str:
    """Kafka's ``Uuid.toString``: URL-safe base64 of the 16 bytes, no padding."""
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def parse_kafka_uuid(text: str) -> uuid.UUID:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ZkDataError(f"not a Kafka topic id: {text!r}") from None
    if len(raw) != 16:
        raise ZkDataError(f"not a Kafka topic id: {text!r}")
    return uuid.UUID(bytes=raw)


# --------------------------------------------------------------------------- brokers

#: Kafka's default listener.security.protocol.map: each protocol names a listener.
DEFAULT_SECURITY_PROTOCOL_MAP: Mapping[str, str] = {
    name: name for name in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
}

_ENDPOINT = re.compile(r"^(.*)://\[?([0-9a-zA-Z\-%._:]*)\]?:(-?[0-9]+)$")


@dataclass(frozen=True)
class Endpoint:
    """One advertised listener: ``LISTENER://host:port`` and its security protocol."""

    listener: str
    host: str
    port: int
    security_protocol: str = "PLAINTEXT"

    def connection_string(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.listener}://{host}:{self.port}"

    @classmethod
    def parse(cls, text: str, protocol_map: Mapping[str, str]) -> Endpoint:
        match = _ENDPOINT.match(text)
        if match is None:
            raise ZkDataError(f"not a listener: {text!r}")
        listener = match.group(1)
        try:
            protocol = protocol_map[listener]
        except KeyError:
            raise ZkDataError(f"listener {listener!r} has no security protocol") from None
        return cls(listener, match.group(2), int(match.group(3)), protocol)


@dataclass(frozen=True)
class BrokerRegistration:
    """The ephemeral /brokers/ids/N: where a live broker listens, and its rack.

    ``features`` is Kafka's supported-features map (name to
    ``{"min_version": .., "max_version": ..}``); a ZooKeeper-mode Kafka 3.9
    broker registers ``{}``, and moldau does too.
    """

    broker_id: int
    endpoints: tuple[Endpoint, ...]
    rack: str | None = None
    timestamp_ms: int = 0
    jmx_port: int = -1
    features: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    version: int = 5

    def endpoint(self, listener: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.listener == listener), None)


def encode_broker(reg: BrokerRegistration) -> bytes:
    """Version 5 JSON; the top-level host/port are the first PLAINTEXT endpoint's
    (for clients older than 0.10), null and -1 when there is none."""
    plaintext = next((e for e in reg.endpoints if e.security_protocol == "PLAINTEXT"), None)
    obj: dict[str, Any] = {
        "features": {name: dict(vr) for name, vr in reg.features.items()},
        "listener_security_protocol_map": {e.listener: e.security_protocol for e in reg.endpoints},
        "endpoints": [e.connection_string() for e in reg.endpoints],
        "jmx_port": reg.jmx_port,
        "port": plaintext.port if plaintext else -1,
        "host": plaintext.host if plaintext else None,
        "version": 5,
        "timestamp": str(reg.timestamp_ms),
    }
    if reg.rack is not None:
        obj["rack"] = reg.rack
    return _dump(obj)


def decode_broker(broker_id: int, data: bytes | None) -> BrokerRegistration:
    what = f"broker {broker_id} registration"
    obj = _load(data, what)
    version = _int(obj, "version", what)
    if version < 1:
        raise ZkDataError(f"{what}: unsupported version {version}")
    if version == 1:
        host = obj.get("host")
        if not isinstance(host, str):
            raise ZkDataError(f"{what}: no host")
        endpoints: tuple[Endpoint, ...] = (Endpoint("PLAINTEXT", host, _int(obj, "port", what)),)
    else:
        protocol_map = obj.get("listener_security_protocol_map", DEFAULT_SECURITY_PROTOCOL_MAP)
        if not isinstance(protocol_map, dict):
            raise ZkDataError(f"{what}: listener_security_protocol_map is not an object")
        raw = obj.get("endpoints")
        if not isinstance(raw, list) or not all(isinstance(e, str) for e in raw):
            raise ZkDataError(f"{what}: endpoints is not a list of strings")
        endpoints = tuple(Endpoint.parse(e, protocol_map) for e in raw)
    rack = obj.get("rack")
    features = obj.get("features") or {}
    if not isinstance(features, dict):
        raise ZkDataError(f"{what}: features is not an object")
    return BrokerRegistration(
        broker_id=broker_id,
        endpoints=endpoints,
        rack=rack if isinstance(rack, str) else None,
        timestamp_ms=_opt_int(obj, "timestamp", 0, what),
        jmx_port=_opt_int(obj, "jmx_port", -1, what),
        features=features,
        version=version,
    )


# --------------------------------------------------------------------------- controller


@dataclass(frozen=True)
class ControllerRegistration:
    """The ephemeral /controller: which broker is the controller.

    ``kraft_controller_epoch`` is -1 for a ZooKeeper-mode controller (Kafka
    writes it for the KRaft migration); version 1 did not have it (None).
    """

    broker_id: int
    timestamp_ms: int = 0
    kraft_controller_epoch: int | None = -1


def encode_controller(reg: ControllerRegistration) -> bytes:
    return _dump(
        {
            "version": 2,
            "brokerid": reg.broker_id,
            "timestamp": str(reg.timestamp_ms),
            "kraftControllerEpoch": (
                -1 if reg.kraft_controller_epoch is None else reg.kraft_controller_epoch
            ),
        }
    )


def decode_controller(data: bytes | None) -> ControllerRegistration:
    obj = _load(data, "controller")
    kraft = obj.get("kraftControllerEpoch")
    return ControllerRegistration(
        broker_id=_int(obj, "brokerid", "controller"),
        timestamp_ms=_opt_int(obj, "timestamp", 0, "controller"),
        kraft_controller_epoch=None
        if kraft is None
        else _int(obj, "kraftControllerEpoch", "controller"),
    )


#: The epoch /controller_epoch starts with; the first controller makes it 1.
INITIAL_CONTROLLER_EPOCH = 0


def encode_controller_epoch(epoch: int) -> bytes:
    """A bare decimal number, not JSON (as Kafka writes it)."""
    return str(epoch).encode()


def decode_controller_epoch(data: bytes | None) -> int:
    try:
        return int((data or b"").decode())
    except (UnicodeDecodeError, ValueError):
        raise ZkDataError(f"controller_epoch: not a number: {data!r}") from None


# --------------------------------------------------------------------------- topics


@dataclass(frozen=True)
class ReplicaAssignment:
    """A partition's replicas (the first is the preferred leader) and, while a
    reassignment runs, the replicas being added and removed."""

    replicas: tuple[int, ...]
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    def target_replicas(self) -> tuple[int, ...]:
        """Where the partition ends up once a reassignment completes."""
        return tuple(r for r in self.replicas if r not in self.removing)

    def origin_replicas(self) -> tuple[int, ...]:
        """Where the partition was before the reassignment (where a cancel returns it)."""
        return tuple(r for r in self.replicas if r not in self.adding)

    @property
    def is_reassigning(self) -> bool:
        return bool(self.adding or self.removing)


@dataclass(frozen=True)
class TopicAssignment:
    """/brokers/topics/T: the topic id and each partition's replicas."""

    topic_id: uuid.UUID | None
    partitions: Mapping[int, ReplicaAssignment]


def reassignments_in_progress(
    assignments: Mapping[str, TopicAssignment],
) -> dict[tuple[str, int], ReplicaAssignment]:
    """The partitions being reassigned (adding or removing replicas), as the
    topic znodes tell them (for tools: ``moldau cluster status``)."""
    return {
        (topic, partition): replicas
        for topic, assignment in sorted(assignments.items())
        for partition, replicas in sorted(assignment.partitions.items())
        if replicas.is_reassigning
    }


def encode_topic(assignment: TopicAssignment) -> bytes:
    """Version 3; ``adding_replicas``/``removing_replicas`` list only the
    partitions that have some, as Kafka does."""
    parts = sorted(assignment.partitions.items())
    obj: dict[str, Any] = {
        "partitions": {str(p): list(a.replicas) for p, a in parts},
    }
    if assignment.topic_id is not None:
        obj["topic_id"] = kafka_uuid(assignment.topic_id)
    obj["adding_replicas"] = {str(p): list(a.adding) for p, a in parts if a.adding}
    obj["removing_replicas"] = {str(p): list(a.removing) for p, a in parts if a.removing}
    obj["version"] = 3
    return _dump(obj)


def decode_topic(topic: str, data: bytes | None) -> TopicAssignment:
    """Any version; a topic znode with no partitions decodes to none (Kafka too)."""
    what = f"topic {topic}"
    obj = _load(data, what)
    raw_id = obj.get("topic_id")
    topic_id = parse_kafka_uuid(raw_id) if isinstance(raw_id, str) else None

    def section(key: str) -> dict[str, Any]:
        value = obj.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ZkDataError(f"{what}: {key} is not an object")
        return value

    adding, removing = section("adding_replicas"), section("removing_replicas")
    partitions: dict[int, ReplicaAssignment] = {}
    for key, replicas in section("partitions").items():
        try:
            partition = int(key)
        except ValueError:
            raise ZkDataError(f"{what}: partition {key!r} is not a number") from None
        partitions[partition] = ReplicaAssignment(
            replicas=_int_list(replicas, what),
            adding=_int_list(adding.get(key, []), what),
            removing=_int_list(removing.get(key, []), what),
        )
    return TopicAssignment(topic_id, partitions)


# --------------------------------------------------------------------------- partition state

#: Kafka's LeaderAndIsr constants.
NO_LEADER = -1
LEADER_DURING_DELETE = -2
INITIAL_LEADER_EPOCH = 0

#: Kafka's LeaderRecoveryState: RECOVERING after an unclean election until the
#: new leader has truncated its followers' view (KIP-704).
RECOVERED = 0
RECOVERING = 1


@dataclass(frozen=True)
class PartitionState:
    """/brokers/topics/T/partitions/P/state: leader, leader epoch, ISR, and the
    epoch of the controller that wrote it.

    ``zk_version`` is the znode's version when read (-1 when not read from
    ZooKeeper); Kafka uses it as the partition epoch and every update of the
    znode is conditional on it.
    """

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int
    leader_recovery_state: int = RECOVERED
    zk_version: int = MATCH_ANY_VERSION


def encode_partition_state(state: PartitionState) -> bytes:
    """``leader_recovery_state`` is written only when not RECOVERED (Kafka too)."""
    obj: dict[str, Any] = {
        "controller_epoch": state.controller_epoch,
        "leader": state.leader,
        "version": 1,
        "leader_epoch": state.leader_epoch,
        "isr": list(state.isr),
    }
    if state.leader_recovery_state != RECOVERED:
        obj["leader_recovery_state"] = state.leader_recovery_state
    return _dump(obj)


def decode_partition_state(
    data: bytes | None, zk_version: int = MATCH_ANY_VERSION
) -> PartitionState:
    what = "partition state"
    obj = _load(data, what)
    recovery = _opt_int(obj, "leader_recovery_state", RECOVERED, what)
    if recovery not in (RECOVERED, RECOVERING):
        raise ZkDataError(f"{what}: unknown leader_recovery_state {recovery}")
    return PartitionState(
        leader=_int(obj, "leader", what),
        leader_epoch=_int(obj, "leader_epoch", what),
        isr=_int_list(obj.get("isr"), what),
        controller_epoch=_int(obj, "controller_epoch", what),
        leader_recovery_state=recovery,
        zk_version=zk_version,
    )


# --------------------------------------------------------------------------- configs


def encode_entity_config(config: Mapping[str, str]) -> bytes:
    """/config/<type>/<name>: the overrides only, every value a string."""
    return _dump({"version": 1, "config": {k: str(v) for k, v in sorted(config.items())}})


def decode_entity_config(data: bytes | None) -> dict[str, str]:
    """No znode, an empty one or one without ``config`` means no overrides."""
    if not data:
        return {}
    obj = _load(data, "entity config")
    config = obj.get("config") or {}
    if not isinstance(config, dict):
        raise ZkDataError("entity config: config is not an object")
    return {str(k): str(v) for k, v in config.items()}


def encode_config_change(entity_type: str, name: str) -> bytes:
    """A /config/changes/config_change_NNNNNNNNNN notification (version 2)."""
    return _dump({"version": 2, "entity_path": f"{entity_type}/{name}"})


def decode_config_change(data: bytes | None) -> tuple[str, str]:
    """(entity type, entity name). Version 1 (``entity_type``/``entity_name``) too."""
    obj = _load(data, "config change")
    if "entity_path" in obj:
        entity_type, sep, name = str(obj["entity_path"]).partition("/")
        if not sep:
            raise ZkDataError(f"config change: bad entity_path {obj['entity_path']!r}")
        return entity_type, name
    try:
        return str(obj["entity_type"]), str(obj["entity_name"])
    except KeyError:
        raise ZkDataError(f"config change: no entity in {obj!r}") from None


# --------------------------------------------------------------------------- admin


def _encode_partitions(partitions: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"topic": t, "partition": p} for t, p in sorted(partitions)]


def _decode_partitions(data: bytes | None, what: str) -> frozenset[tuple[str, int]]:
    obj = _load(data, what)
    items = obj.get("partitions")
    if not isinstance(items, list):
        raise ZkDataError(f"{what}: partitions is not a list")
    out = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("topic"), str):
            raise ZkDataError(f"{what}: bad partition {item!r}")
        out.add((item["topic"], _int(item, "partition", what)))
    return frozenset(out)


def encode_isr_change(partitions: Iterable[tuple[str, int]]) -> bytes:
    return _dump({"version": 1, "partitions": _encode_partitions(partitions)})


def decode_isr_change(data: bytes | None) -> frozenset[tuple[str, int]]:
    return _decode_partitions(data, "isr change")


def encode_preferred_replica_election(partitions: Iterable[tuple[str, int]]) -> bytes:
    return _dump({"version": 1, "partitions": _encode_partitions(partitions)})


def decode_preferred_replica_election(data: bytes | None) -> frozenset[tuple[str, int]]:
    return _decode_partitions(data, "preferred replica election")


def encode_reassignment(reassignment: Mapping[tuple[str, int], Iterable[int]]) -> bytes:
    """/admin/reassign_partitions, the legacy (ZooKeeper) reassignment request."""
    return _dump(
        {
            "version": 1,
            "partitions": [
                {"topic": t, "partition": p, "replicas": list(replicas)}
                for (t, p), replicas in sorted(reassignment.items())
            ],
        }
    )


def decode_reassignment(data: bytes | None) -> dict[tuple[str, int], tuple[int, ...]]:
    what = "reassignment"
    obj = _load(data, what)
    items = obj.get("partitions")
    if not isinstance(items, list):
        raise ZkDataError(f"{what}: partitions is not a list")
    out: dict[tuple[str, int], tuple[int, ...]] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("topic"), str):
            raise ZkDataError(f"{what}: bad partition {item!r}")
        out[(item["topic"], _int(item, "partition", what))] = _int_list(item.get("replicas"), what)
    return out


# --------------------------------------------------------------------------- cluster id


def encode_cluster_id(cluster_id: str) -> bytes:
    """Kafka writes the version of this one as a string: ``{"version":"1",...}``."""
    return _dump({"version": "1", "id": cluster_id})


def decode_cluster_id(data: bytes | None) -> str:
    obj = _load(data, "cluster id")
    cluster_id = obj.get("id")
    if not isinstance(cluster_id, str) or not cluster_id:
        raise ZkDataError(f"cluster id: no id in {obj!r}")
    return cluster_id


# --------------------------------------------------------------------------- producer ids

#: Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE.
PRODUCER_ID_BLOCK_SIZE = 1000


@dataclass(frozen=True)
class ProducerIdBlock:
    """A range of producer ids one broker hands out: [first, first + size)."""

    broker_id: int
    first: int
    size: int = PRODUCER_ID_BLOCK_SIZE

    @property
    def last(self) -> int:
        return self.first + self.size - 1

    def next_block(self, broker_id: int, size: int = PRODUCER_ID_BLOCK_SIZE) -> ProducerIdBlock:
        """The block after this one; Kafka treats running past 2^63-1 as fatal."""
        if self.last > (1 << 63) - 1 - size:
            raise OverflowError("producer ids exhausted")
        return ProducerIdBlock(broker_id, self.last + 1, size)


def encode_producer_id_block(block: ProducerIdBlock) -> bytes:
    """The bounds are JSON strings, as Kafka writes them."""
    return _dump(
        {
            "version": 1,
            "broker": block.broker_id,
            "block_start": str(block.first),
            "block_end": str(block.last),
        }
    )


def decode_producer_id_block(data: bytes | None) -> ProducerIdBlock | None:
    """None for the empty znode Kafka creates at startup: no block handed out yet."""
    if not data:
        return None
    what = "producer id block"
    obj = _load(data, what)
    first, last = _int(obj, "block_start", what), _int(obj, "block_end", what)
    if last < first:
        raise ZkDataError(f"{what}: block_end {last} before block_start {first}")
    return ProducerIdBlock(_int(obj, "broker", what), first, last - first + 1)
