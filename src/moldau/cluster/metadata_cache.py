"""What a cluster-mode broker knows of the cluster: the controller's word.

Kafka's ZkMetadataCache. Every broker answers Metadata, FindCoordinator and
the admin APIs from this cache, which holds what the controller last said in
UpdateMetadata (API key 6): the live brokers with their endpoints and racks,
the controller id, and every partition's replicas, leader, leader epoch and
ISR. Topic configs are not in UpdateMetadata; the broker's shell reads them
from /config/topics and sets them here.

Pure: no I/O, no asyncio. The shell calls ``apply`` after it has checked
the request's controller epoch, and ``listeners`` run after every change, so
admin requests waiting for a change to become visible can look again.

A partition whose leader is -2 (Kafka's LeaderDuringDelete) is being
deleted: the cache forgets it, as Kafka's does, and a topic goes when its
last partition does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from moldau.cluster.controller.commands import PartitionLeadership, UpdateMetadata
from moldau.cluster.controller.context import LiveBroker
from moldau.cluster.metadata import BrokerInfo, PartitionView, TopicInfo
from moldau.cluster.zk.paths import LEADER_DURING_DELETE

_ZERO_UUID = uuid.UUID(int=0)


@dataclass
class _Topic:
    topic_id: uuid.UUID
    partitions: dict[int, PartitionView] = field(default_factory=dict)


class MetadataCache:
    """The cluster as the controller last described it to this broker."""

    def __init__(
        self,
        cluster_id: str,
        me: Mapping[str, BrokerInfo],
        is_internal: Callable[[str], bool],
    ) -> None:
        self.cluster_id = cluster_id
        #: This broker on each of its listeners (the first is the default,
        #: given when no listener is named), listed until the first
        #: UpdateMetadata names the live brokers.
        self._me = dict(me)
        self._default_listener = next(iter(self._me))
        self._is_internal = is_internal
        self._live: dict[int, LiveBroker] = {}
        #: The live brokers' addresses per listener, built when first asked.
        self._addresses: dict[str, dict[int, BrokerInfo]] = {}
        self._controller_id = -1
        self._topics: dict[str, _Topic] = {}
        self._configs: dict[str, dict[str, str]] = {}
        self._infos: dict[str, TopicInfo] = {}
        self._by_id: dict[uuid.UUID, str] = {}
        #: Called after every change (admin requests wait on them).
        self.listeners: list[Callable[[], None]] = []
        #: Called with the name of a topic that is gone.
        self.deletion_listeners: list[Callable[[str], None]] = []

    # -- changes -------------------------------------------------------------

    def apply(self, update: UpdateMetadata) -> list[str]:
        """Take in an UpdateMetadata; returns the topics it introduced (the
        shell reads their configs)."""
        self._controller_id = update.controller_id
        self._live = {b.broker_id: b for b in update.brokers}
        self._addresses.clear()
        added: list[str] = []
        deleted: list[str] = []
        for state in update.partitions:
            self._apply_partition(state, added, deleted)
        for name in deleted:
            if not self._topics[name].partitions:
                self._forget(name)
        self._changed()
        for name in deleted:
            if name not in self._topics:
                for listener in self.deletion_listeners:
                    listener(name)
        return added

    def _apply_partition(
        self, state: PartitionLeadership, added: list[str], deleted: list[str]
    ) -> None:
        name = state.topic
        topic = self._topics.get(name)
        if state.leader == LEADER_DURING_DELETE:
            if topic is not None:
                topic.partitions.pop(state.partition, None)
                self._infos.pop(name, None)
                if name not in deleted:
                    deleted.append(name)
            return
        if topic is None:
            topic = _Topic(state.topic_id or _ZERO_UUID)
            self._topics[name] = topic
            if topic.topic_id != _ZERO_UUID:
                self._by_id[topic.topic_id] = name
            added.append(name)
        topic.partitions[state.partition] = PartitionView(
            state.leader,
            state.leader_epoch,
            tuple(state.isr),
            tuple(state.replicas),
            tuple(state.offline_replicas),
        )
        self._infos.pop(name, None)

    def _forget(self, name: str) -> None:
        topic = self._topics.pop(name)
        self._by_id.pop(topic.topic_id, None)
        self._configs.pop(name, None)
        self._infos.pop(name, None)

    def set_configs(self, name: str, configs: dict[str, str]) -> None:
        """A topic's config overrides as /config/topics/T holds them."""
        self._configs[name] = dict(configs)
        self._infos.pop(name, None)
        self._changed()

    def configs_of(self, name: str) -> dict[str, str] | None:
        """A topic's overrides, None until they have been read from ZooKeeper."""
        found = self._configs.get(name)
        return None if found is None else dict(found)

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener()

    def _on(self, listener: str | None) -> dict[int, BrokerInfo]:
        """The live brokers that have ``listener``, with their address on it;
        before the first UpdateMetadata, only this broker."""
        name = self._default_listener if listener is None else listener
        if not self._live:
            me = self._me.get(name)
            return {} if me is None else {me.node_id: me}
        found = self._addresses.get(name)
        if found is None:
            found = self._addresses[name] = {
                b.broker_id: BrokerInfo(b.broker_id, e.host, e.port, b.rack)
                for b in self._live.values()
                for e in b.endpoints
                if e.listener == name
            }
        return found

    # -- reads (the MetadataStore protocol) ------------------------------------

    def brokers(self, listener: str | None = None) -> list[BrokerInfo]:
        on = self._on(listener)
        return [on[i] for i in sorted(on)]

    def broker(self, node_id: int, listener: str | None = None) -> BrokerInfo | None:
        return self._on(listener).get(node_id)

    def controller_id(self) -> int:
        return self._controller_id

    def topics(self) -> dict[str, TopicInfo]:
        return {name: info for name in self._topics if (info := self.topic(name)) is not None}

    def topic(self, name: str) -> TopicInfo | None:
        info = self._infos.get(name)
        if info is not None:
            return info
        topic = self._topics.get(name)
        if topic is None or not topic.partitions:
            return None
        count = max(topic.partitions) + 1
        replicas = [
            list(topic.partitions[i].replicas) if i in topic.partitions else []
            for i in range(count)
        ]
        info = TopicInfo(
            name,
            topic.topic_id,
            replicas,
            dict(self._configs.get(name, {})),
            internal=self._is_internal(name),
        )
        self._infos[name] = info
        return info

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        name = self._by_id.get(topic_id)
        return None if name is None else self.topic(name)

    def partition(self, topic: str, index: int) -> PartitionView | None:
        found = self._topics.get(topic)
        return None if found is None else found.partitions.get(index)

    def partition_leader(self, topic: str, index: int) -> tuple[int, int] | None:
        view = self.partition(topic, index)
        return None if view is None else (view.leader, view.leader_epoch)
