"""Metadata (key 3): brokers, topics, partitions and their leaders.

v0: an empty topic list means every topic (v0 has no null list); topics
are auto-created as auto.create.topics.enable says, as in v1-v3 (the
request's own flag arrives in v4).
v1: rack, controller id, is_internal; a null topic list means all topics.
v2: cluster id. v3: throttle time. v4: allow_auto_topic_creation.
v5: offline replicas. v7: leader epoch. v8: authorized operations.
v9: flexible. v10: topic ids. v11: no cluster authorized operations.
v12: topics may be named by id alone. v13: top-level error code.
"""

from __future__ import annotations

import uuid
from typing import Any

from ...cluster.metadata import TopicInfo
from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ..core import BrokerCore
from ..dispatch import RequestContext, handles

_NO_ID = uuid.UUID(int=0)


@handles(ApiKey.METADATA, range(0, 14))
def metadata(context: RequestContext, request: Message) -> Message:
    core = context.core
    requested = request["topics"]
    if context.version == 0 and requested == []:
        requested = None  # v0 has no null: an empty list means every topic
    topics: list[dict[str, Any]] = []
    if requested is None:
        topics = [_describe(core, info) for info in core.metadata.topics().values()]
    else:
        allow_create = request.get("allow_auto_topic_creation", True)
        for wanted in requested:
            topics.append(_lookup(core, wanted, allow_create))
    return {
        "throttle_time_ms": 0,
        "brokers": [
            {"node_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
            for b in core.metadata.brokers(context.listener)
        ],
        "cluster_id": core.metadata.cluster_id,
        "controller_id": core.metadata.controller_id(),
        "topics": topics,
    }


def _lookup(core: BrokerCore, wanted: Message, allow_create: bool) -> dict[str, Any]:
    name = wanted.get("name")
    topic_id = wanted.get("topic_id") or _NO_ID
    if not name:
        info = core.metadata.topic_by_id(topic_id) if topic_id != _NO_ID else None
        if info is None:
            return {"error_code": ErrorCode.UNKNOWN_TOPIC_ID, "name": None, "topic_id": topic_id}
        return _describe(core, info)
    info = core.metadata.topic(name)
    if info is None and allow_create:
        try:
            info = core.topics.auto_create(name)
        except KafkaError as exc:
            return {"error_code": exc.code, "name": name, "topic_id": _NO_ID}
        if info is not None:
            # A single node leads a topic it just created at once; in cluster
            # mode auto_create raised LEADER_NOT_AVAILABLE while the
            # controller elects leaders, as Kafka answers.
            return _describe(core, info)
    if info is None:
        return {"error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, "name": name}
    return _describe(core, info)


def _describe(core: BrokerCore, info: TopicInfo) -> dict[str, Any]:
    partitions = []
    for index, replicas in enumerate(info.replicas):
        view = core.metadata.partition(info.name, index)
        if view is not None:  # cluster mode: the controller's word
            leader, epoch = view.leader, view.leader_epoch
            isr, offline = list(view.isr), list(view.offline_replicas)
        else:  # a single node leads what it hosts
            hosted = core.replicas.get(info.name, index)
            leader = hosted.leader_id if hosted is not None else replicas[0]
            epoch = hosted.leader_epoch if hosted is not None else 0
            isr, offline = (hosted.isr if hosted is not None else replicas), []
        partitions.append(
            {
                "error_code": ErrorCode.LEADER_NOT_AVAILABLE if leader < 0 else 0,
                "partition_index": index,
                "leader_id": leader,
                "leader_epoch": epoch,
                "replica_nodes": replicas,
                "isr_nodes": isr,
                "offline_replicas": offline,
            }
        )
    return {
        "error_code": 0,
        "name": info.name,
        "topic_id": info.topic_id,
        "is_internal": info.internal,
        "partitions": partitions,
    }
