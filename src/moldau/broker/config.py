"""Broker configuration: Kafka's property names, types and defaults.

A user moving from Kafka keeps their ``server.properties``: every key here is
spelled as Kafka spells it and defaults as Kafka defaults it, except where
moldau's embedded default has to differ (listeners on 127.0.0.1 rather than
every interface, data in ./data rather than /tmp). Keys of Kafka's sample
configuration that tune things moldau does not have (thread pools, socket
buffers) are accepted and ignored, so that file still loads; any other
unknown key, or a value of the wrong type, stops the broker at startup with
one line naming the key.

Values are checked against Kafka's valid ranges and enumerations (its
``ConfigDef`` validators), plus a few cross-key rules Kafka applies at
startup (``group.min.session.timeout.ms`` <= ``group.max...``, ``node.id`` =
``broker.id``). Where moldau departs, the key's entry says why:
``log.cleaner.backoff.ms`` must be at least 1 (Kafka accepts 0, on which
moldau's cleaner loop would spin), and ``max.broker.partitions`` is moldau's
own key (Kafka has no broker-wide partition limit; the name is KIP-578's).

``zookeeper.connect`` switches the broker to cluster mode. Its keys default
as Kafka 3.9's do; ``broker.id`` defaults to 0 in single-node mode (one
broker needs no id) and, in cluster mode, when not set, is generated from
/brokers/seqid as ``broker.id.generation.enable`` asks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LONG_MAX = 2**63 - 1

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration key is unknown or its value is malformed."""


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError(f"expected true or false, got {text!r}")


def _parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _bounded_int(bits: int) -> Callable[[str], int]:
    """Java's int or long: out of range is as malformed as "abc"."""

    def parse(text: str) -> int:
        value = int(text)
        if not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise ValueError(f"{value} does not fit in {bits} bits")
        return value

    return parse


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": _bounded_int(32),
    "long": _bounded_int(64),
    "double": float,
    "boolean": _parse_bool,
    "string": str,
    "list": _parse_list,
}


@dataclass(frozen=True)
class ConfigKey:
    """One Kafka configuration key and the values Kafka accepts for it."""

    name: str
    type: str
    default: Any
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    #: The allowed values (each item of a list), case-sensitive as in Kafka.
    choices: frozenset[str] | None = None


def _key(
    name: str,
    type_: str,
    default: Any,
    doc: str,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Iterable[str] | None = None,
) -> ConfigKey:
    return ConfigKey(
        name, type_, default, doc, minimum, maximum, frozenset(choices) if choices else None
    )


#: Kafka's compression.type values (BrokerCompressionType).
COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
#: moldau's limit on the partitions one broker hosts (``max.broker.partitions``):
#: each costs at least one open file and a little memory, and a data dir
#: must always be able to start again.
DEFAULT_MAX_BROKER_PARTITIONS = 10_000


BROKER_KEYS: dict[str, ConfigKey] = {
    k.name: k
    for k in [
        _key("broker.id", "int", 0, "This broker's id in the cluster.", -1),
        _key("node.id", "int", None, "Synonym of broker.id (KRaft's name).", -1),
        _key("listeners", "list", ["PLAINTEXT://127.0.0.1:9092"], "Addresses to listen on."),
        _key("advertised.listeners", "list", None, "Addresses given to clients."),
        _key("log.dirs", "list", None, "Directories holding the partition logs."),
        _key("log.dir", "string", "./data", "The log directory when log.dirs is unset."),
        _key("num.partitions", "int", 1, "Partitions of an auto-created topic.", 1),
        _key("default.replication.factor", "int", 1, "Replicas of an auto-created topic.", 1),
        _key("auto.create.topics.enable", "boolean", True, "Create topics on first use."),
        _key("delete.topic.enable", "boolean", True, "Allow DeleteTopics."),
        _key("log.segment.bytes", "int", 1073741824, "Size at which a segment rolls.", 14),
        _key("log.roll.ms", "long", None, "Age at which a segment rolls.", 1),
        _key("log.roll.hours", "int", 168, "Age at which a segment rolls, in hours.", 1),
        _key("log.index.interval.bytes", "int", 4096, "Bytes between index entries.", 0),
        _key("log.index.size.max.bytes", "int", 10485760, "Largest offset index.", 4),
        _key("message.max.bytes", "int", 1048588, "Largest record batch accepted.", 0),
        _key("socket.request.max.bytes", "int", 104857600, "Largest request frame.", 1),
        _key(
            "queued.max.request.bytes",
            "long",
            536870912,
            "Request bytes held before reading stops (Kafka: -1, unbounded; <= 0 here too).",
        ),
        _key("connections.max.idle.ms", "long", 600000, "Close connections idle this long."),
        _key("max.connections", "int", 2147483647, "Connections the broker accepts.", 0),
        _key("max.connections.per.ip", "int", 2147483647, "Connections from one address.", 0),
        _key(
            "max.connections.per.ip.overrides",
            "string",
            "",
            "Per-address limits: host:count,host:count.",
        ),
        _key("log.flush.interval.messages", "long", LONG_MAX, "fsync after this many.", 1),
        _key("log.flush.interval.ms", "long", None, "fsync after this long.", 0),
        _key("log.flush.scheduler.interval.ms", "long", LONG_MAX, "Flush check interval.", 0),
        _key("log.retention.hours", "int", 168, "Keep data this long, in hours.", -1),
        _key("log.retention.minutes", "int", None, "Keep data this long, in minutes.", -1),
        _key("log.retention.ms", "long", None, "Keep data this long (-1: forever).", -1),
        _key("log.retention.bytes", "long", -1, "Keep at most this much per partition.", -1),
        _key("log.retention.check.interval.ms", "long", 300000, "Retention check period.", 1),
        _key(
            "log.cleanup.policy",
            "list",
            ["delete"],
            "delete, compact or both.",
            choices=("delete", "compact"),
        ),
        _key(
            "log.message.timestamp.type",
            "string",
            "CreateTime",
            "CreateTime or LogAppendTime.",
            choices=("CreateTime", "LogAppendTime"),
        ),
        _key(
            "compression.type",
            "string",
            "producer",
            "Compression of stored batches.",
            choices=COMPRESSION_TYPES,
        ),
        _key("min.insync.replicas", "int", 1, "Replicas acks=all waits for.", 1),
        _key("offsets.topic.num.partitions", "int", 50, "Partitions of __consumer_offsets.", 1),
        _key(
            "offsets.topic.replication.factor",
            "int",
            3,
            "Replicas of __consumer_offsets (capped by the live brokers).",
            1,
        ),
        _key("offsets.topic.segment.bytes", "int", 104857600, "Segment size of offsets.", 1),
        _key("offsets.retention.minutes", "int", 10080, "Keep an empty group's offsets.", 1),
        _key(
            "offsets.retention.check.interval.ms",
            "long",
            600000,
            "How often expired offsets are removed.",
            1,
        ),
        _key(
            "offsets.commit.timeout.ms",
            "int",
            5000,
            "Wait this long for the ISR to have a group write before failing it.",
            1,
        ),
        _key("offset.metadata.max.bytes", "int", 4096, "Largest commit metadata string.", 0),
        _key(
            "transaction.state.log.num.partitions",
            "int",
            50,
            "Partitions of __transaction_state.",
            1,
        ),
        _key(
            "transaction.state.log.replication.factor",
            "int",
            3,
            "Replicas of __transaction_state (capped by the live brokers).",
            1,
        ),
        _key("transaction.state.log.min.isr", "int", 2, "min.insync.replicas of it.", 1),
        _key(
            "transaction.state.log.segment.bytes",
            "int",
            104857600,
            "Segment size of __transaction_state.",
            1,
        ),
        _key("transaction.max.timeout.ms", "int", 900000, "Longest transaction timeout.", 1),
        _key(
            "transaction.partition.verification.enable",
            "boolean",
            True,
            "Ask the coordinator before a transactional batch opens a transaction (KIP-890).",
        ),
        _key(
            "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            "int",
            10000,
            "How often timed-out transactions are aborted.",
            1,
        ),
        _key(
            "transaction.remove.expired.transaction.cleanup.interval.ms",
            "int",
            3600000,
            "How often idle transactional ids are removed.",
            1,
        ),
        _key("group.initial.rebalance.delay.ms", "int", 3000, "Wait for a new group.", 0),
        _key("group.min.session.timeout.ms", "int", 6000, "Smallest session timeout.", 0),
        _key("group.max.session.timeout.ms", "int", 1800000, "Largest session timeout.", 0),
        _key("group.max.size", "int", 2147483647, "Members per group.", 1),
        _key("log.cleaner.enable", "boolean", True, "Run the log cleaner (compaction)."),
        # Kafka accepts 0; moldau's cleaner loop would then never sleep.
        _key("log.cleaner.backoff.ms", "long", 15000, "Cleaner sleep when idle.", 1),
        _key("log.cleaner.dedupe.buffer.size", "long", 134217728, "Cleaner key map memory.", 1),
        _key(
            "log.cleaner.min.cleanable.ratio",
            "double",
            0.5,
            "Dirty share that starts a clean.",
            0,
            1,
        ),
        _key("log.cleaner.min.compaction.lag.ms", "long", 0, "Keep newer records uncompacted.", 0),
        _key("log.cleaner.max.compaction.lag.ms", "long", LONG_MAX, "Compact records this old.", 1),
        _key("log.cleaner.delete.retention.ms", "long", 86400000, "Keep tombstones this long.", 0),
        _key(
            "log.message.timestamp.before.max.ms",
            "long",
            LONG_MAX,
            "Refuse timestamps this far in the past.",
            0,
        ),
        _key(
            "log.message.timestamp.after.max.ms",
            "long",
            LONG_MAX,
            "Refuse timestamps this far in the future.",
            0,
        ),
        _key(
            "log.message.timestamp.difference.max.ms",
            "long",
            None,
            "Deprecated: both timestamp limits at once.",
            0,
        ),
        _key(
            "producer.id.expiration.check.interval.ms",
            "int",
            600000,
            "How often idle producers are forgotten.",
            1,
        ),
        _key("zookeeper.connect", "string", None, "ZooKeeper of the cluster (cluster mode)."),
        _key("zookeeper.session.timeout.ms", "int", 18000, "ZooKeeper session timeout.", 1),
        _key("zookeeper.connection.timeout.ms", "int", None, "ZooKeeper connect timeout.", 1),
        _key(
            "broker.id.generation.enable",
            "boolean",
            True,
            "Generate broker.id from ZooKeeper when it is not set.",
        ),
        _key("reserved.broker.max.id", "int", 1000, "Highest broker.id not generated.", 0),
        _key("broker.rack", "string", None, "The rack of this broker (rack-aware placement)."),
        _key(
            "listener.security.protocol.map",
            "list",
            [f"{p}:{p}" for p in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")],
            "Security protocol of each listener name.",
        ),
        _key(
            "inter.broker.listener.name",
            "string",
            None,
            "Listener brokers use between themselves (default: the first listener).",
        ),
        _key("controlled.shutdown.enable", "boolean", True, "Move leaders away before stopping."),
        _key("controlled.shutdown.max.retries", "int", 3, "Controlled shutdown attempts.", 0),
        _key("controlled.shutdown.retry.backoff.ms", "long", 5000, "Wait between attempts.", 0),
        _key("controller.socket.timeout.ms", "int", 30000, "Controller request timeout.", 0),
        _key(
            "auto.leader.rebalance.enable",
            "boolean",
            True,
            "The controller moves leadership back to preferred replicas.",
        ),
        _key(
            "leader.imbalance.check.interval.seconds",
            "long",
            300,
            "How often the controller checks the leader balance.",
            1,
        ),
        _key(
            "leader.imbalance.per.broker.percentage",
            "int",
            10,
            "Share of a broker's preferred leaderships held elsewhere before a rebalance.",
            0,
        ),
        _key(
            "unclean.leader.election.enable",
            "boolean",
            False,
            "Let an out-of-sync replica lead when no in-sync one is alive.",
        ),
        _key("producer.id.expiration.ms", "int", 86400000, "Forget idle producers.", 1),
        _key("transactional.id.expiration.ms", "int", 604800000, "Forget idle txn ids.", 1),
        _key("replica.lag.time.max.ms", "long", 30000, "Lag before leaving the ISR.", 0),
        _key("replica.fetch.wait.max.ms", "int", 500, "Longest wait of a follower's fetch.", 0),
        _key("replica.fetch.min.bytes", "int", 1, "Bytes a follower's fetch waits for.", 1),
        _key("replica.fetch.max.bytes", "int", 1048576, "Follower fetch bytes per partition.", 0),
        _key("replica.fetch.response.max.bytes", "int", 10485760, "Follower fetch bytes.", 0),
        _key("replica.fetch.backoff.ms", "int", 1000, "Follower's wait after an error.", 0),
        _key(
            "max.incremental.fetch.session.cache.slots",
            "int",
            1000,
            "Followers' fetch sessions a leader keeps (KIP-227; 0: none).",
            0,
        ),
        _key("replica.socket.timeout.ms", "int", 30000, "Follower fetch timeout.", 1),
        _key(
            "replication.quota.window.num",
            "int",
            11,
            "Samples the replication throttles' rates are measured over.",
            1,
        ),
        _key(
            "replication.quota.window.size.seconds",
            "int",
            1,
            "Length of each sample of the replication throttles' rates.",
            1,
        ),
        _key(
            "max.broker.partitions",
            "int",
            DEFAULT_MAX_BROKER_PARTITIONS,
            "moldau: most partitions this broker hosts (Kafka has no such key).",
            1,
        ),
        _key("cluster.id", "string", None, "Cluster id (generated when unset)."),
        _key(
            "log.message.downconversion.enable",
            "boolean",
            True,
            "Down-convert records for Fetch v0-v3 (message formats v0/v1).",
        ),
        _key(
            "log.message.format.version",
            "string",
            "3.0-IV1",
            "Deprecated (Kafka 3.x): accepted, no effect, a warning in the log.",
        ),
    ]
}

#: The broker keys that are set at run time only (Kafka's DynamicConfig.Broker:
#: "This property can be only set dynamically"), per broker in
#: /config/brokers/<id> or for every broker in /config/brokers/<default>;
#: ``dynamic_config.py`` keeps them. The rest of Kafka's dynamic broker
#: configs (thread pools, listeners, log cleaner...) moldau does not change
#: at run time.
DYNAMIC_BROKER_KEYS: dict[str, ConfigKey] = {
    k.name: k
    for k in [
        _key(
            "leader.replication.throttled.rate",
            "long",
            LONG_MAX,
            "Bytes/s a leader sends to out-of-sync replicas of the partitions in its "
            "topics' leader.replication.throttled.replicas.",
            0,
        ),
        _key(
            "follower.replication.throttled.rate",
            "long",
            LONG_MAX,
            "Bytes/s a follower fetches for its out-of-sync replicas of the partitions in "
            "its topics' follower.replication.throttled.replicas.",
            0,
        ),
    ]
}

#: Keys of Kafka's sample server.properties that tune machinery moldau does not
#: have. They load without effect so an existing file keeps working.
IGNORED_KEYS = frozenset(
    {
        "num.network.threads",
        "num.io.threads",
        "num.recovery.threads.per.data.dir",
        "num.replica.fetchers",
        "socket.send.buffer.bytes",
        "socket.receive.buffer.bytes",
        "security.inter.broker.protocol",
    }
)


#: Keys Kafka 3.x accepts, ignores and warns about.
DEPRECATED_KEYS = frozenset({"log.message.format.version"})


class BrokerConfig:
    """Parsed, validated broker configuration with Kafka-style accessors."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)
        self.explicit = frozenset(values)
        _check_together(self)

    def get(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        return BROKER_KEYS[name].default

    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def items(self) -> Iterable[tuple[str, Any]]:
        """Every known key with its effective value, for DescribeConfigs."""
        for name in BROKER_KEYS:
            yield name, self.get(name)

    @property
    def broker_id(self) -> int:
        node_id = self.get("node.id")
        return int(node_id if node_id is not None else self.get("broker.id"))

    @property
    def cluster_mode(self) -> bool:
        """Whether the broker joins a cluster through ZooKeeper."""
        return self.get("zookeeper.connect") is not None

    @property
    def security_protocols(self) -> dict[str, str]:
        """listener.security.protocol.map as {listener name: protocol}."""
        out = {}
        for entry in self.get("listener.security.protocol.map"):
            name, colon, protocol = entry.partition(":")
            if not colon:
                raise ConfigError(f"listener.security.protocol.map: {entry!r} is not NAME:PROTOCOL")
            out[name.strip()] = protocol.strip()
        return out

    @property
    def inter_broker_listener(self) -> str:
        """The listener other brokers (and the controller) connect to."""
        name = self.get("inter.broker.listener.name")
        return str(name) if name is not None else self.listeners[0][0]

    @property
    def log_dirs(self) -> list[str]:
        dirs = self.get("log.dirs")
        return list(dirs) if dirs else [self.get("log.dir")]

    @property
    def listeners(self) -> list[tuple[str, str, int]]:
        return [parse_listener(text) for text in self.get("listeners")]

    @property
    def advertised_listeners(self) -> list[tuple[str, str, int]]:
        advertised = self.get("advertised.listeners")
        return [parse_listener(t) for t in advertised] if advertised else self.listeners

    @property
    def log_roll_ms(self) -> int:
        roll_ms = self.get("log.roll.ms")
        return int(roll_ms) if roll_ms is not None else int(self.get("log.roll.hours")) * 3_600_000

    @property
    def log_retention_ms(self) -> int:
        """The retention time; any negative setting means forever (-1), as in Kafka."""
        if self.get("log.retention.ms") is not None:
            millis = int(self.get("log.retention.ms"))
        elif self.get("log.retention.minutes") is not None:
            millis = int(self.get("log.retention.minutes")) * 60_000
        else:
            millis = int(self.get("log.retention.hours")) * 3_600_000
        return -1 if millis < 0 else millis

    def with_overrides(self, overrides: Mapping[str, str]) -> BrokerConfig:
        merged = dict(self._values)
        merged.update(parse_values(overrides))
        return BrokerConfig(merged)


def parse_listener(text: str) -> tuple[str, str, int]:
    """``PLAINTEXT://host:port`` as (listener name, host, port)."""
    name, sep, address = text.partition("://")
    if not sep:
        raise ConfigError(f"listener {text!r} is not of the form NAME://HOST:PORT")
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit():
        raise ConfigError(f"listener {text!r} has no port")
    if int(port) > 65535:
        raise ConfigError(f"listener {text!r} has a port above 65535")
    return name.upper(), host.strip("[]"), int(port)


def _check_value(key: ConfigKey, value: Any) -> None:
    """Kafka's range and enumeration validators; ConfigError names the key."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if key.minimum is not None and value < key.minimum:
            raise ConfigError(
                f"configuration {key.name}={value} is below its minimum {key.minimum}"
            )
        if key.maximum is not None and value > key.maximum:
            raise ConfigError(
                f"configuration {key.name}={value} is above its maximum {key.maximum}"
            )
    if key.choices is not None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item not in key.choices:
                allowed = ", ".join(sorted(key.choices))
                raise ConfigError(f"configuration {key.name}={item!r} is not one of {allowed}")
        if not items:
            raise ConfigError(f"configuration {key.name} is empty")


def _check_together(config: BrokerConfig) -> None:
    """The rules between keys, checked once every value is known."""
    _check_cluster_keys(config)
    node_id, broker_id = config.get("node.id"), config.get("broker.id")
    if node_id is not None and "broker.id" in config.explicit and node_id != broker_id:
        raise ConfigError(f"node.id={node_id} and broker.id={broker_id} must be equal")
    low, high = (
        config.get("group.min.session.timeout.ms"),
        config.get("group.max.session.timeout.ms"),
    )
    if low > high:
        raise ConfigError(
            f"group.min.session.timeout.ms={low} is above group.max.session.timeout.ms={high}"
        )
    connection_overrides(config.get("max.connections.per.ip.overrides"))
    limit = config.get("max.broker.partitions")
    for name in ("num.partitions", "offsets.topic.num.partitions"):
        if config.get(name) > limit:
            raise ConfigError(
                f"configuration {name}={config.get(name)} is above max.broker.partitions={limit}"
            )


def _check_cluster_keys(config: BrokerConfig) -> None:
    """What cluster mode needs to make sense: a valid connect string, a
    protocol for every listener name, an inter-broker listener that exists."""
    connect = config.get("zookeeper.connect")
    if connect is None:
        return
    hosts, _, chroot = connect.partition("/")
    if not hosts or any(not h.rpartition(":")[2].isdigit() for h in hosts.split(",")):
        raise ConfigError(f"zookeeper.connect={connect!r} is not host:port[,host:port...][/chroot]")
    if chroot.endswith("/"):
        raise ConfigError(f"zookeeper.connect={connect!r}: the chroot must not end with '/'")
    protocols = config.security_protocols
    names = [name for name, _, _ in config.listeners]
    for name in names:
        if name not in protocols:
            raise ConfigError(f"listener {name} has no entry in listener.security.protocol.map")
    inter = config.get("inter.broker.listener.name")
    if inter is not None and inter not in names:
        raise ConfigError(f"inter.broker.listener.name={inter} is not one of listeners")


def connection_overrides(text: str) -> dict[str, int]:
    """``max.connections.per.ip.overrides`` (``host:count,...``) as {host: count};
    checked at startup so a bad entry is a one-line error naming the key."""
    overrides: dict[str, int] = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        host, colon, count = entry.rpartition(":")
        if not colon or not host or not count.strip().isdigit():
            raise ConfigError(f"max.connections.per.ip.overrides: {entry!r} is not host:count")
        overrides[host.strip("[] ")] = int(count)
    return overrides


def parse_values(raw: Mapping[str, str]) -> dict[str, Any]:
    """Check and convert raw strings; raise ConfigError naming the bad key."""
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name in IGNORED_KEYS:
            continue
        if name in DEPRECATED_KEYS:
            log.warning("%s is deprecated and has no effect (as in Kafka 3.x)", name)
        key = BROKER_KEYS.get(name)
        if key is None:
            raise ConfigError(f"unknown configuration key {name!r}")
        try:
            value = _PARSERS[key.type](text)
        except ValueError:
            raise ConfigError(f"configuration {name}={text!r} is not a valid {key.type}") from None
        _check_value(key, value)
        values[name] = value
    for name in ("listeners", "advertised.listeners"):
        for listener in values.get(name) or []:
            parse_listener(listener)
    return values


def read_properties(path: str) -> dict[str, str]:
    """Read a Java properties file (the subset Kafka's configs use)."""
    raw: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith(("#", "!")):
                continue
            for separator in ("=", ":"):
                if separator in line:
                    name, _, value = line.partition(separator)
                    raw[name.strip()] = value.strip()
                    break
            else:
                raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
    return raw


def load_config(path: str | None, overrides: Iterable[str]) -> BrokerConfig:
    """The config of ``moldau broker``: a properties file, then ``--override``s."""
    raw = read_properties(path) if path else {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--override {item!r} is not KEY=VALUE")
        raw[name.strip()] = value.strip()
    return BrokerConfig(parse_values(raw))
