"""Cluster metadata: which topics exist, their partitions and replicas.

The broker asks a ``MetadataStore`` and never cares where the answer lives.
``LocalMetadataStore`` keeps it in a JSON file in the first log directory:
the embedded single-node default, no coordination service. In cluster mode
``MetadataCache`` answers the same reads from what the controller sent.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol


@dataclass(frozen=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass
class TopicInfo:
    """A topic as the cluster knows it: one replica list per partition."""

    name: str
    topic_id: uuid.UUID
    replicas: list[list[int]]
    configs: dict[str, str] = field(default_factory=dict)
    internal: bool = False

    @property
    def partition_count(self) -> int:
        return len(self.replicas)


@dataclass(frozen=True)
class PartitionView:
    """One partition as the cluster's metadata describes it to clients."""

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    replicas: tuple[int, ...]
    offline_replicas: tuple[int, ...] = ()


class MetadataStore(Protocol):
    """What the broker needs to know about the cluster, wherever it is kept.

    Only reads: the writes differ by mode. A single node writes its own file
    (``LocalMetadataStore``); in cluster mode brokers write ZooKeeper
    (``cluster/zk/store.py``) and read what the controller tells them
    (``cluster/metadata_cache.py``).
    """

    cluster_id: str

    def brokers(self, listener: str | None = None) -> list[BrokerInfo]:
        """The live brokers with their addresses on ``listener`` (None: the
        first listener); a broker without that listener is left out, as
        Kafka leaves it out of a Metadata answer."""
        ...

    def controller_id(self) -> int: ...

    def topics(self) -> dict[str, TopicInfo]: ...

    def topic(self, name: str) -> TopicInfo | None: ...

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        """The topic with this id (Produce v13+ and Fetch v13+ name topics by id)."""
        ...

    def partition(self, topic: str, index: int) -> PartitionView | None:
        """Leader, epoch and ISR as the cluster knows them; None where only the
        hosted partition knows (a single node leads all it hosts)."""
        ...

    def partition_leader(self, topic: str, index: int) -> tuple[int, int] | None:
        """(leader id, leader epoch) of a partition as the cluster last said,
        or None when unknown (no such partition, no leader yet); what
        NOT_LEADER_OR_FOLLOWER answers name (KIP-951)."""
        ...

    def broker(self, node_id: int, listener: str | None = None) -> BrokerInfo | None:
        """The live broker ``node_id`` with its address on ``listener`` (None:
        the first listener), or None."""
        ...


class LocalMetadataStore:
    """Metadata of a single-node broker, persisted next to its data.

    Every change is written to a temporary file, fsynced and renamed over the
    old one, so a crash leaves either the old or the new state, never half;
    and only then applied in memory, so a write that fails (a full or
    read-only disk) changes nothing, in the file or in the running broker.
    """

    FILE_NAME = "moldau-metadata.json"

    def __init__(self, directory: str, listeners: Mapping[str, BrokerInfo]) -> None:
        os.makedirs(directory, exist_ok=True)
        self._path = os.path.join(directory, self.FILE_NAME)
        #: This broker on each of its listeners; the first is the default.
        self._listeners = dict(listeners)
        self._broker = next(iter(self._listeners.values()))
        self._topics: dict[str, TopicInfo] = {}
        #: The same topics by id: fetches from v13 on look a topic up by id
        #: on every request.
        self._by_id: dict[uuid.UUID, TopicInfo] = {}
        self.cluster_id = ""
        self._next_producer_id = 0
        #: False when this store was just created: nothing to compare logs to.
        self.restored = os.path.exists(self._path)
        self._load()

    def _load(self) -> None:
        if not self.restored:
            self.cluster_id = _new_cluster_id()
            self._save()
            return
        with open(self._path, encoding="utf-8") as handle:
            data = json.load(handle)
        self.cluster_id = data["cluster_id"]
        self._next_producer_id = data.get("next_producer_id", 0)
        for raw in data["topics"]:
            info = TopicInfo(
                name=raw["name"],
                topic_id=uuid.UUID(raw["topic_id"]),
                replicas=raw["replicas"],
                configs=raw.get("configs", {}),
                internal=raw.get("internal", False),
            )
            self._topics[info.name] = info
            self._by_id[info.topic_id] = info

    def _save(
        self, topics: dict[str, TopicInfo] | None = None, next_producer_id: int | None = None
    ) -> None:
        """Write the state durably: by default the current one, else the one a
        change is about to make current (applied in memory only after this
        returns, so a failed write leaves the broker believing what the file
        still says)."""
        data = {
            "cluster_id": self.cluster_id,
            "next_producer_id": (
                self._next_producer_id if next_producer_id is None else next_producer_id
            ),
            "topics": [
                {
                    "name": t.name,
                    "topic_id": str(t.topic_id),
                    "replicas": t.replicas,
                    "configs": t.configs,
                    "internal": t.internal,
                }
                for t in (self._topics if topics is None else topics).values()
            ],
        }
        temporary = self._path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._path)

    def brokers(self, listener: str | None = None) -> list[BrokerInfo]:
        found = self.broker(self._broker.node_id, listener)
        return [] if found is None else [found]

    def controller_id(self) -> int:
        return self._broker.node_id

    def topics(self) -> dict[str, TopicInfo]:
        return dict(self._topics)

    def topic(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return self._by_id.get(topic_id)

    def partition(self, topic: str, index: int) -> PartitionView | None:
        return None

    def partition_leader(self, topic: str, index: int) -> tuple[int, int] | None:
        """This broker, at epoch 0: a single node leads every partition it
        has, at the epoch ``ReplicaManager.host`` gives them. (The file keeps
        no epochs; the hosted partition knows its own, and is asked first,
        see ``broker/routing.py``.)"""
        info = self._topics.get(topic)
        if info is None or not 0 <= index < info.partition_count:
            return None
        return self._broker.node_id, 0

    def broker(self, node_id: int, listener: str | None = None) -> BrokerInfo | None:
        if node_id != self._broker.node_id:
            return None
        return self._broker if listener is None else self._listeners.get(listener)

    # Every change below writes the changed state first and applies it in
    # memory only once the write succeeded.

    def create_topic(self, info: TopicInfo) -> None:
        self._replace(info)

    def delete_topic(self, name: str) -> None:
        remaining = dict(self._topics)
        info = remaining.pop(name, None)
        self._save(remaining)
        self._topics = remaining
        if info is not None:
            self._by_id.pop(info.topic_id, None)

    def add_partitions(self, name: str, replicas: list[list[int]]) -> None:
        old = self._topics[name]
        self._replace(replace(old, replicas=old.replicas + [list(r) for r in replicas]))

    def set_topic_configs(self, name: str, configs: dict[str, str]) -> None:
        self._replace(replace(self._topics[name], configs=dict(configs)))

    def _replace(self, info: TopicInfo) -> None:
        """Make ``info`` the topic of its name (a new object: callers holding
        the old one keep what they saw)."""
        self._save({**self._topics, info.name: info})
        self._topics[info.name] = info
        self._by_id[info.topic_id] = info

    def allocate_producer_ids(self, count: int) -> int:
        first = self._next_producer_id
        self._save(next_producer_id=first + count)
        self._next_producer_id = first + count
        return first


def _new_cluster_id() -> str:
    """Kafka's cluster ids are a uuid in url-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
