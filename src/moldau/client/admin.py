"""The admin client: topics, partitions, configs, offsets, the cluster.

Topic changes go to the controller; a NOT_CONTROLLER answer (the controller
moved) or a lost connection is retried with a fresh look at the metadata.
Batch calls return one result per topic (None or the ``KafkaError``) so that
one bad name does not hide what happened to the others; the single-topic
helpers raise instead.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode, KafkaError

from .cluster import Cluster
from .errors import check, make_error, topic_error
from .lifecycle import ClusterClient
from .metadata import BrokerInfo, TopicInfo
from .offsets import list_offsets
from .types import OffsetAndTimestamp, TopicPartition

__all__ = [
    "Admin",
    "ClusterDescription",
    "ConfigEntry",
    "ConfigResourceType",
    "ConfigSource",
    "LogDirDescription",
    "NewTopic",
    "Reassignment",
    "ReplicaLogInfo",
]


class ConfigResourceType(enum.IntEnum):
    TOPIC = 2
    BROKER = 4


class ConfigSource(enum.IntEnum):
    """Where a config value comes from (DescribeConfigs ``config_source``)."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6
    CLIENT_METRICS_CONFIG = 7
    GROUP_CONFIG = 8


@dataclass(frozen=True)
class NewTopic:
    """A topic to create. -1 partitions or replication factor means the
    broker's default (``num.partitions``, ``default.replication.factor``)."""

    name: str
    num_partitions: int = -1
    replication_factor: int = -1
    configs: Mapping[str, str] = field(default_factory=dict)
    #: partition -> broker ids, instead of partitions/replication factor
    assignments: Mapping[int, Sequence[int]] | None = None


@dataclass(frozen=True)
class ConfigEntry:
    name: str
    value: str | None
    source: ConfigSource
    read_only: bool = False
    is_sensitive: bool = False


@dataclass(frozen=True)
class ClusterDescription:
    cluster_id: str | None
    controller_id: int
    brokers: list[BrokerInfo]


@dataclass(frozen=True)
class Reassignment:
    """A partition being reassigned (ListPartitionReassignments): all its
    replicas now, and those being added and removed."""

    replicas: tuple[int, ...]
    adding: tuple[int, ...]
    removing: tuple[int, ...]


Results = dict[str, KafkaError | None]

#: Before CreateTopics v4 a topic needed explicit counts.
_BROKER_DEFAULTS_SINCE = 4


class Admin(ClusterClient):
    """An asyncio admin client.

    >>> async with Admin("127.0.0.1:9092") as admin:
    ...     await admin.create_topic("events", num_partitions=3)
    """

    def __init__(
        self,
        bootstrap_servers: str = "127.0.0.1:9092",
        *,
        cluster: Cluster | None = None,
        client_id: str = "moldau-admin",
        request_timeout_ms: int = 30_000,
    ) -> None:
        super().__init__(
            bootstrap_servers, cluster, client_id=client_id, request_timeout_ms=request_timeout_ms
        )
        self.timeout_ms = request_timeout_ms

    # --- topics ----------------------------------------------------------------

    async def create_topics(
        self, topics: Sequence[NewTopic], *, validate_only: bool = False
    ) -> Results:
        """Create ``topics``; with ``validate_only`` only check they could be."""
        by_name = {t.name: t for t in topics}

        def body(names: list[str], version: int) -> dict[str, Any]:
            return {
                "topics": [_create_topic_entry(by_name[n], version) for n in names],
                "timeout_ms": self.timeout_ms,
                "validate_only": validate_only,
            }

        return await self._per_topic(ApiKey.CREATE_TOPICS, list(by_name), body, "topics")

    async def create_topic(
        self,
        name: str,
        num_partitions: int = -1,
        replication_factor: int = -1,
        configs: Mapping[str, str] | None = None,
        *,
        validate_only: bool = False,
    ) -> None:
        topic = NewTopic(name, num_partitions, replication_factor, dict(configs or {}))
        _raise_first(await self.create_topics([topic], validate_only=validate_only))

    async def delete_topics(self, names: Iterable[str]) -> Results:
        def body(names: list[str], version: int) -> dict[str, Any]:
            return {
                "topic_names": names,
                "topics": [{"name": n} for n in names],
                "timeout_ms": self.timeout_ms,
            }

        return await self._per_topic(ApiKey.DELETE_TOPICS, list(names), body, "responses")

    async def delete_topic(self, name: str) -> None:
        _raise_first(await self.delete_topics([name]))

    async def create_partitions(
        self, new_totals: Mapping[str, int], *, validate_only: bool = False
    ) -> Results:
        """Grow each topic to ``new_totals[topic]`` partitions."""

        def body(names: list[str], version: int) -> dict[str, Any]:
            return {
                "topics": [{"name": n, "count": new_totals[n], "assignments": None} for n in names],
                "timeout_ms": self.timeout_ms,
                "validate_only": validate_only,
            }

        return await self._per_topic(ApiKey.CREATE_PARTITIONS, list(new_totals), body, "results")

    async def list_topics(self, *, include_internal: bool = False) -> list[str]:
        meta = await self.cluster.refresh(None)
        return sorted(
            name for name, t in meta.topics.items() if include_internal or not t.is_internal
        )

    async def describe_topics(self, names: Iterable[str] | None = None) -> list[TopicInfo]:
        """Partitions, leaders, replicas and ISR; all topics when ``names`` is
        None. A named topic that does not exist raises."""
        wanted = None if names is None else list(names)
        meta = await self.cluster.refresh(wanted)
        if wanted is None:
            return [t for _, t in sorted(meta.topics.items()) if not t.is_internal]
        found = []
        for name in wanted:
            info = meta.topics.get(name)
            if info is None or info.error != ErrorCode.NONE:
                code = info.error if info is not None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                raise topic_error(name, code)
            found.append(info)
        return found

    # --- configs ------------------------------------------------------------------

    async def describe_configs(
        self,
        resource_type: ConfigResourceType,
        name: str,
        keys: Iterable[str] | None = None,
    ) -> list[ConfigEntry]:
        """The configs of one topic or broker (``name`` = its node id)."""
        if resource_type == ConfigResourceType.BROKER:
            conn = await self.cluster.node(int(name))
        else:
            conn = await self.cluster.any_node()
        body = {
            "resources": [
                {
                    "resource_type": int(resource_type),
                    "resource_name": name,
                    "configuration_keys": None if keys is None else list(keys),
                }
            ],
            "include_synonyms": False,
            "include_documentation": False,
        }
        response = await conn.request(ApiKey.DESCRIBE_CONFIGS, body)
        (result,) = response["results"]
        if resource_type == ConfigResourceType.TOPIC and result["error_code"]:
            raise topic_error(name, result["error_code"], result.get("error_message"))
        check(result["error_code"], result.get("error_message"), context=f"configs of {name}")
        return [
            ConfigEntry(
                c["name"],
                c["value"],
                _config_source(c.get("config_source", 0)),
                c.get("read_only", False),
                c.get("is_sensitive", False),
            )
            for c in result["configs"]
        ]

    async def alter_topic_configs(
        self,
        topic: str,
        set_configs: Mapping[str, str],
        delete_configs: Iterable[str] = (),
        *,
        validate_only: bool = False,
    ) -> None:
        """Set and delete single topic configs (IncrementalAlterConfigs); the
        topic's other configs stay as they are."""
        body = {
            "resources": [
                {
                    "resource_type": int(ConfigResourceType.TOPIC),
                    "resource_name": topic,
                    "configs": _config_operations(set_configs, delete_configs),
                }
            ],
            "validate_only": validate_only,
        }
        conn = await self.cluster.any_node()
        response = await conn.request(ApiKey.INCREMENTAL_ALTER_CONFIGS, body)
        (result,) = response["responses"]
        if result["error_code"]:
            raise topic_error(topic, result["error_code"], result.get("error_message"))

    # --- offsets and cluster ----------------------------------------------------------

    async def list_offsets(
        self, specs: Mapping[TopicPartition, int | str], *, isolation_level: int = 0
    ) -> dict[TopicPartition, OffsetAndTimestamp]:
        """``earliest``/``latest``/``max`` or a timestamp (ms) per partition."""
        return await list_offsets(
            self.cluster, specs, isolation_level=isolation_level, timeout_ms=self.timeout_ms
        )

    async def describe_cluster(self) -> ClusterDescription:
        """Cluster id, controller and brokers (DescribeCluster, or Metadata
        for brokers that do not serve it)."""
        conn = await self.cluster.any_node()
        if ApiKey.DESCRIBE_CLUSTER in conn.versions:
            response = await conn.request(ApiKey.DESCRIBE_CLUSTER, {})
            check(response["error_code"], response.get("error_message"))
            brokers = [
                BrokerInfo(b["broker_id"], b["host"], b["port"], b.get("rack"))
                for b in response["brokers"]
            ]
            return ClusterDescription(
                response["cluster_id"],
                response["controller_id"],
                sorted(brokers, key=lambda b: b.node_id),
            )
        meta = await self.cluster.refresh([])
        return ClusterDescription(meta.cluster_id, meta.controller_id, self.cluster.brokers())

    # --- reassignments -------------------------------------------------------------

    async def alter_partition_reassignments(
        self, targets: Mapping[tuple[str, int], Sequence[int] | None]
    ) -> dict[tuple[str, int], KafkaError | None]:
        """Move partitions to new replicas (AlterPartitionReassignments, at the
        controller); a None target cancels the partition's reassignment.
        Per partition None when it started (it completes in the background;
        ``list_partition_reassignments`` shows it until then), else why not."""
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for (topic, partition), replicas in sorted(targets.items()):
            by_topic.setdefault(topic, []).append(
                {
                    "partition_index": partition,
                    "replicas": None if replicas is None else list(replicas),
                }
            )
        body = {
            "timeout_ms": self.timeout_ms,
            "allow_replication_factor_change": True,
            "topics": [{"name": t, "partitions": parts} for t, parts in by_topic.items()],
        }

        async def attempt() -> dict[tuple[str, int], KafkaError | None]:
            response = await self.cluster.request_controller(
                ApiKey.ALTER_PARTITION_REASSIGNMENTS, body
            )
            check(response["error_code"], response.get("error_message"))
            return {
                (t["name"], p["partition_index"]): (
                    make_error(
                        p["error_code"],
                        p.get("error_message"),
                        context=f"{t['name']}-{p['partition_index']}",
                    )
                    if p["error_code"]
                    else None
                )
                for t in response["responses"]
                for p in t["partitions"]
            }

        results = await self.cluster.retry(attempt, timeout_ms=self.timeout_ms)
        for topic, partition in targets:
            results.setdefault(
                (topic, partition),
                KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"no answer for {topic}-{partition}"),
            )
        return results

    async def list_partition_reassignments(
        self, partitions: Iterable[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], Reassignment]:
        """The reassignments in progress (ListPartitionReassignments, at the
        controller), of ``partitions`` or all; a partition not being
        reassigned is left out."""
        topics: list[dict[str, Any]] | None = None
        if partitions is not None:
            by_topic: dict[str, list[int]] = {}
            for topic, partition in sorted(set(partitions)):
                by_topic.setdefault(topic, []).append(partition)
            topics = [{"name": t, "partition_indexes": ps} for t, ps in by_topic.items()]
        body = {"timeout_ms": self.timeout_ms, "topics": topics}

        async def attempt() -> dict[tuple[str, int], Reassignment]:
            response = await self.cluster.request_controller(
                ApiKey.LIST_PARTITION_REASSIGNMENTS, body
            )
            check(response["error_code"], response.get("error_message"))
            return {
                (t["name"], p["partition_index"]): Reassignment(
                    tuple(p["replicas"]),
                    tuple(p["adding_replicas"]),
                    tuple(p["removing_replicas"]),
                )
                for t in response["topics"]
                for p in t["partitions"]
            }

        return await self.cluster.retry(attempt, timeout_ms=self.timeout_ms)

    # --- internals ----------------------------------------------------------------

    async def _per_topic(
        self,
        api_key: ApiKey,
        names: list[str],
        body: Callable[[list[str], int], dict[str, Any]],
        results_field: str,
    ) -> Results:
        """One controller request over ``names``, retried for the topics whose
        answer says to ask again (the controller moved, a connection broke)."""
        results: Results = {}
        remaining = list(names)

        async def attempt() -> None:
            nonlocal remaining
            conn = await self.cluster.controller()
            response = await conn.request(api_key, body(remaining, conn.version(api_key)))
            again: list[str] = []
            last: KafkaError | None = None
            for entry in response[results_field]:
                name = entry["name"]
                code = entry["error_code"]
                if code == ErrorCode.NOT_CONTROLLER:
                    again.append(name)
                    last = make_error(code, entry.get("error_message"))
                else:
                    results[name] = (
                        topic_error(name, code, entry.get("error_message")) if code else None
                    )
            remaining = again
            if last is not None:
                raise last

        await self.cluster.retry(attempt, timeout_ms=self.timeout_ms)
        for name in names:
            results.setdefault(
                name, KafkaError(ErrorCode.UNKNOWN_SERVER_ERROR, f"no answer for topic '{name}'")
            )
        return results

    # --- log dirs and broker configs (the operator's tools) ------------------------

    async def describe_log_dirs(
        self,
        brokers: Iterable[int] | None = None,
        partitions: Iterable[tuple[str, int]] | None = None,
    ) -> dict[int, list[LogDirDescription] | KafkaError]:
        """Each broker's log dirs and the replicas in them (DescribeLogDirs),
        asked of every broker at once: ``brokers`` (default: all known),
        about ``partitions`` (default: all). A broker that cannot be asked
        maps to its error rather than failing the others."""
        if brokers is None:
            await self.cluster.refresh([])
            brokers = [b.node_id for b in self.cluster.brokers()]
        topics: list[dict[str, Any]] | None = None
        if partitions is not None:
            by_topic: dict[str, list[int]] = {}
            for topic, index in partitions:
                by_topic.setdefault(topic, []).append(index)
            topics = [{"topic": t, "partitions": sorted(ps)} for t, ps in sorted(by_topic.items())]

        async def ask(broker_id: int) -> list[LogDirDescription] | KafkaError:
            try:
                conn = await self.cluster.node(broker_id)
                response = await conn.request(ApiKey.DESCRIBE_LOG_DIRS, {"topics": topics})
            except KafkaError as exc:
                return exc
            if response.get("error_code"):
                return make_error(response["error_code"], context=f"log dirs of {broker_id}")
            return [_log_dir(result) for result in response["results"]]

        ids = sorted(set(brokers))
        answers = await asyncio.gather(*(ask(b) for b in ids))
        return dict(zip(ids, answers, strict=True))

    async def incremental_alter_broker_configs(
        self,
        broker_id: int,
        set_configs: Mapping[str, str],
        delete_configs: Iterable[str] = (),
    ) -> None:
        """Set and delete dynamic configs of one broker (IncrementalAlterConfigs
        on its BROKER resource, sent to that broker as Kafka's admin does)."""
        body = {
            "resources": [
                {
                    "resource_type": int(ConfigResourceType.BROKER),
                    "resource_name": str(broker_id),
                    "configs": _config_operations(set_configs, delete_configs),
                }
            ],
            "validate_only": False,
        }
        conn = await self.cluster.node(broker_id)
        response = await conn.request(ApiKey.INCREMENTAL_ALTER_CONFIGS, body)
        (result,) = response["responses"]
        check(result["error_code"], result.get("error_message"), context=f"configs of {broker_id}")

    async def elect_leaders(
        self,
        election_type: int = 0,
        partitions: Iterable[tuple[str, int]] | None = None,
        *,
        timeout_ms: int | None = None,
    ) -> dict[tuple[str, int], KafkaError | None]:
        """Leader elections by the controller (ElectLeaders; type 0 preferred,
        1 unclean) for ``partitions`` (default: all), asked again wherever
        the controller moves. Per partition None or its error
        (ELECTION_NOT_NEEDED when the wanted leader already leads)."""
        timeout_ms = self.timeout_ms if timeout_ms is None else timeout_ms
        wanted: list[dict[str, Any]] | None = None
        if partitions is not None:
            by_topic: dict[str, list[int]] = {}
            for topic, index in partitions:
                by_topic.setdefault(topic, []).append(index)
            wanted = [{"topic": t, "partitions": sorted(ps)} for t, ps in sorted(by_topic.items())]
        body = {
            "election_type": election_type,
            "topic_partitions": wanted,
            "timeout_ms": timeout_ms,
        }

        async def attempt() -> dict[tuple[str, int], KafkaError | None]:
            conn = await self.cluster.controller()
            response = await conn.request(ApiKey.ELECT_LEADERS, body)
            check(response.get("error_code", 0))
            answers = {
                (t["topic"], p["partition_id"]): (
                    make_error(p["error_code"], p["error_message"]) if p["error_code"] else None
                )
                for t in response["replica_election_results"]
                for p in t["partition_result"]
            }
            if any(e is not None and e.code == ErrorCode.NOT_CONTROLLER for e in answers.values()):
                raise make_error(ErrorCode.NOT_CONTROLLER)  # retried after a refresh
            return answers

        return await self.cluster.retry(attempt, timeout_ms=timeout_ms)


@dataclass(frozen=True)
class ReplicaLogInfo:
    """One replica's log in a log dir (DescribeLogDirs)."""

    size: int
    offset_lag: int
    is_future: bool = False


@dataclass(frozen=True)
class LogDirDescription:
    """One log dir of a broker: ``error`` is set (KAFKA_STORAGE_ERROR) when
    the dir is offline; total and usable bytes are -1 when not reported
    (DescribeLogDirs before v4)."""

    path: str
    error: KafkaError | None
    replicas: dict[tuple[str, int], ReplicaLogInfo]
    total_bytes: int = -1
    usable_bytes: int = -1


def _log_dir(result: dict[str, Any]) -> LogDirDescription:
    code = result["error_code"]
    return LogDirDescription(
        path=result["log_dir"],
        error=make_error(code, context=f"log dir {result['log_dir']}") if code else None,
        replicas={
            (t["name"], p["partition_index"]): ReplicaLogInfo(
                p["partition_size"], p["offset_lag"], p["is_future_key"]
            )
            for t in result["topics"]
            for p in t["partitions"]
        },
        total_bytes=result.get("total_bytes", -1),
        usable_bytes=result.get("usable_bytes", -1),
    )


def _config_operations(
    set_configs: Mapping[str, str], delete_configs: Iterable[str]
) -> list[dict[str, Any]]:
    """IncrementalAlterConfigs operations: SET (0) then DELETE (1)."""
    return [
        {"name": name, "config_operation": 0, "value": value} for name, value in set_configs.items()
    ] + [{"name": name, "config_operation": 1, "value": None} for name in delete_configs]


def _create_topic_entry(topic: NewTopic, version: int) -> dict[str, Any]:
    partitions, replication = topic.num_partitions, topic.replication_factor
    assignments = []
    if topic.assignments is not None:
        partitions, replication = -1, -1
        assignments = [
            {"partition_index": p, "broker_ids": list(brokers)}
            for p, brokers in sorted(topic.assignments.items())
        ]
    elif version < _BROKER_DEFAULTS_SINCE:
        partitions = 1 if partitions < 0 else partitions
        replication = 1 if replication < 0 else replication
    return {
        "name": topic.name,
        "num_partitions": partitions,
        "replication_factor": replication,
        "assignments": assignments,
        "configs": [{"name": k, "value": v} for k, v in topic.configs.items()],
    }


def _config_source(value: int) -> ConfigSource:
    try:
        return ConfigSource(value)
    except ValueError:
        return ConfigSource.UNKNOWN


def _raise_first(results: Results) -> None:
    for error in results.values():
        if error is not None:
            raise error
