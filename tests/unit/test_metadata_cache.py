"""The cluster-mode metadata cache: what the controller's UpdateMetadata says."""

from __future__ import annotations

import uuid
from dataclasses import replace

from moldau.cluster.controller.commands import PartitionLeadership, UpdateMetadata
from moldau.cluster.controller.context import LiveBroker
from moldau.cluster.metadata import BrokerInfo
from moldau.cluster.metadata_cache import MetadataCache
from moldau.cluster.zk.paths import LEADER_DURING_DELETE, Endpoint

ME = BrokerInfo(1, "127.0.0.1", 9091)
ME_INTERNAL = BrokerInfo(1, "10.0.0.1", 9001)
TOPIC_ID = uuid.uuid4()


def _broker(broker_id: int, rack: str | None = None) -> LiveBroker:
    endpoints = (
        Endpoint("INTERNAL", "10.0.0.1", 9000 + broker_id),
        Endpoint("PLAINTEXT", "127.0.0.1", 9090 + broker_id),
    )
    return LiveBroker(broker_id, 100 + broker_id, endpoints, rack)


def _state(partition: int, leader: int, epoch: int = 0, topic: str = "t") -> PartitionLeadership:
    return PartitionLeadership(
        topic,
        partition,
        controller_epoch=1,
        leader=leader,
        leader_epoch=epoch,
        isr=(leader, 3) if leader >= 0 else (2,),
        partition_epoch=0,
        replicas=(leader if leader >= 0 else 2, 3),
        offline_replicas=(2,) if leader < 0 else (),
        topic_id=TOPIC_ID,
    )


def _update(*states: PartitionLeadership, brokers: tuple[int, ...] = (1, 2, 3)) -> UpdateMetadata:
    return UpdateMetadata(
        broker_id=1,
        controller_id=2,
        controller_epoch=1,
        broker_epoch=101,
        partitions=states,
        brokers=tuple(_broker(b, rack=f"r{b}") for b in brokers),
    )


def _cache() -> MetadataCache:
    return MetadataCache(
        "cid", {"PLAINTEXT": ME, "INTERNAL": ME_INTERNAL}, lambda name: name.startswith("__")
    )


def test_before_the_first_update_the_broker_knows_only_itself() -> None:
    cache = _cache()
    assert cache.brokers() == [ME]
    assert cache.brokers("INTERNAL") == [ME_INTERNAL]
    assert cache.broker(1, "INTERNAL") == ME_INTERNAL
    assert cache.brokers("EXTERNAL") == []
    assert cache.controller_id() == -1
    assert cache.topics() == {}


def test_an_update_gives_brokers_of_the_client_listener_topics_and_partitions() -> None:
    cache = _cache()
    added = cache.apply(_update(_state(0, 1), _state(1, 3, epoch=4)))
    assert added == ["t"]
    assert cache.controller_id() == 2
    assert cache.brokers() == [BrokerInfo(b, "127.0.0.1", 9090 + b, f"r{b}") for b in (1, 2, 3)]
    info = cache.topic("t")
    assert info is not None and info.topic_id == TOPIC_ID
    assert info.replicas == [[1, 3], [3, 3]]
    assert cache.topic_by_id(TOPIC_ID) is info
    assert cache.partition_leader("t", 1) == (3, 4)
    view = cache.partition("t", 1)
    assert view is not None and view.isr == (3, 3)


def test_each_listener_gets_its_own_addresses_and_brokers_without_it_are_left_out() -> None:
    cache = _cache()
    lonely = LiveBroker(4, 104, (Endpoint("INTERNAL", "10.0.0.1", 9004),), None)
    update = _update(_state(0, 1))
    cache.apply(replace(update, brokers=(*update.brokers, lonely)))
    assert [b.node_id for b in cache.brokers()] == [1, 2, 3]
    assert cache.brokers("INTERNAL") == [
        *(BrokerInfo(b, "10.0.0.1", 9000 + b, f"r{b}") for b in (1, 2, 3)),
        BrokerInfo(4, "10.0.0.1", 9004, None),
    ]
    assert cache.broker(4) is None
    assert cache.broker(4, "INTERNAL") == BrokerInfo(4, "10.0.0.1", 9004, None)
    assert cache.broker(2, "PLAINTEXT") == BrokerInfo(2, "127.0.0.1", 9092, "r2")
    cache.apply(_update(_state(0, 1), brokers=(1,)))  # a later update replaces them all
    assert cache.brokers("INTERNAL") == [BrokerInfo(1, "10.0.0.1", 9001, "r1")]


def test_later_updates_replace_a_partition_and_keep_the_others() -> None:
    cache = _cache()
    cache.apply(_update(_state(0, 1), _state(1, 3)))
    assert cache.apply(_update(_state(0, -1, epoch=1))) == []
    view = cache.partition("t", 0)
    assert view is not None and view.leader == -1 and view.offline_replicas == (2,)
    assert cache.partition_leader("t", 1) == (3, 0)


def test_configs_are_set_apart_and_seen_in_the_topic() -> None:
    cache = _cache()
    cache.apply(_update(_state(0, 1)))
    assert cache.configs_of("t") is None
    cache.set_configs("t", {"retention.ms": "1000"})
    assert cache.configs_of("t") == {"retention.ms": "1000"}
    info = cache.topic("t")
    assert info is not None and info.configs == {"retention.ms": "1000"}


def test_a_deleted_topic_goes_with_its_last_partition_and_listeners_hear_it() -> None:
    cache = _cache()
    heard: list[str] = []
    changes: list[int] = []
    cache.deletion_listeners.append(heard.append)
    cache.listeners.append(lambda: changes.append(1))
    cache.apply(_update(_state(0, 1), _state(1, 3)))
    cache.apply(_update(_state(0, LEADER_DURING_DELETE)))
    assert heard == [] and cache.topic("t") is not None
    cache.apply(_update(_state(1, LEADER_DURING_DELETE)))
    assert heard == ["t"]
    assert cache.topic("t") is None and cache.topic_by_id(TOPIC_ID) is None
    assert len(changes) == 3


def test_internal_topics_are_marked() -> None:
    cache = _cache()
    cache.apply(_update(_state(0, 1, topic="__consumer_offsets")))
    info = cache.topic("__consumer_offsets")
    assert info is not None and info.internal
