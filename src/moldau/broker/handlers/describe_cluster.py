"""DescribeCluster (key 60): the cluster id, controller and brokers.

v1: endpoint type (brokers only; controllers are not separate here).
v2: include_fenced_brokers, is_fenced.
"""

from __future__ import annotations

from ...protocol.api_keys import ApiKey
from ...protocol.messages import Message
from ..dispatch import RequestContext, handles


@handles(ApiKey.DESCRIBE_CLUSTER, range(0, 3))
def describe_cluster(context: RequestContext, request: Message) -> Message:
    metadata = context.core.metadata
    return {
        "throttle_time_ms": 0,
        "error_code": 0,
        "endpoint_type": 1,
        "cluster_id": metadata.cluster_id,
        "controller_id": metadata.controller_id(),
        "brokers": [
            {"broker_id": b.node_id, "host": b.host, "port": b.port, "rack": b.rack}
            for b in metadata.brokers(context.listener)
        ],
        "cluster_authorized_operations": -2147483648,
    }
