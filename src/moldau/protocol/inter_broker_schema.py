"""The controller-to-broker APIs kio does not have: LeaderAndIsr (4),
StopReplica (5), UpdateMetadata (6) and ControlledShutdown (7).

kio follows Kafka 4.0, which dropped ZooKeeper mode and with it these four
APIs; Kafka 3.9's ZooKeeper-mode controller still sends the first three and
answers the fourth, and so does moldau's (issue 8). Their fields are written
here as data, in ``legacy_schema``'s ``Field`` style, transcribed from Kafka
3.9's message definitions (``clients/src/main/resources/common/message/
LeaderAndIsrRequest.json`` and its siblings): names in kio's snake_case,
versions in Kafka's notation. Unlike the legacy versions these reach into
flexible versions (compact encodings and a tagged-field buffer after every
struct; ``flexible`` says from which version), and one field is tagged
(UpdateMetadata v8's ``type``). ``schema`` turns them into ``StructSpec``
trees like every other message.

Where moldau departs from Kafka: ControlledShutdown starts at v1. Its v0 has
a request header without a client id (Kafka 0.8's), which
``messages.decode_request_header`` does not read; no Kafka since 0.9 sends it.
"""

from __future__ import annotations

from typing import NamedTuple

from .legacy_schema import Field as F


class InterBrokerApi(NamedTuple):
    """One API's versions, the first flexible one, request and response."""

    #: Kafka's name, without "Request"/"Response".
    name: str
    #: kio's spelling of the name, for ``schema.api_name``.
    snake_name: str
    versions: range
    flexible_from: int
    request: tuple[F, ...]
    response: tuple[F, ...]


# --------------------------------------------------------------------------- LeaderAndIsr

_LEADER_AND_ISR_PARTITION_STATE = (
    F("topic_name", "string", "0-1"),
    F("partition_index", "int32"),
    F("controller_epoch", "int32"),
    F("leader", "int32"),
    F("leader_epoch", "int32"),
    F("isr", "[]int32"),
    F("partition_epoch", "int32"),
    F("replicas", "[]int32"),
    F("adding_replicas", "[]int32", "3+"),
    F("removing_replicas", "[]int32", "3+"),
    F("is_new", "bool", "1+"),
    F("leader_recovery_state", "int8", "6+"),
)

_LEADER_AND_ISR_PARTITION_ERROR = (
    F("topic_name", "string", "0-4"),
    F("partition_index", "int32"),
    F("error_code", "int16"),
)

_LEADER_AND_ISR = InterBrokerApi(
    "LeaderAndIsr",
    "leader_and_isr",
    versions=range(0, 8),
    flexible_from=4,
    request=(
        F("controller_id", "int32"),
        F("is_kraft_controller", "bool", "7+"),
        F("controller_epoch", "int32"),
        F("broker_epoch", "int64", "2+", default=-1),
        F("type", "int8", "5+"),
        F("ungrouped_partition_states", "[]LeaderAndIsrPartitionState", "0-1",
          fields=_LEADER_AND_ISR_PARTITION_STATE),
        F("topic_states", "[]LeaderAndIsrTopicState", "2+", fields=(
            F("topic_name", "string", "2+"),
            F("topic_id", "uuid", "5+"),
            F("partition_states", "[]LeaderAndIsrPartitionState", "2+",
              fields=_LEADER_AND_ISR_PARTITION_STATE),
        )),
        F("live_leaders", "[]LeaderAndIsrLiveLeader", fields=(
            F("broker_id", "int32"),
            F("host_name", "string"),
            F("port", "int32"),
        )),
    ),
    response=(
        F("error_code", "int16"),
        F("partition_errors", "[]LeaderAndIsrPartitionError", "0-4",
          fields=_LEADER_AND_ISR_PARTITION_ERROR),
        F("topics", "[]LeaderAndIsrTopicError", "5+", fields=(
            F("topic_id", "uuid", "5+"),
            F("partition_errors", "[]LeaderAndIsrPartitionError", "5+",
              fields=_LEADER_AND_ISR_PARTITION_ERROR),
        )),
    ),
)  # fmt: skip

# --------------------------------------------------------------------------- StopReplica

_STOP_REPLICA = InterBrokerApi(
    "StopReplica",
    "stop_replica",
    versions=range(0, 5),
    flexible_from=2,
    request=(
        F("controller_id", "int32"),
        F("is_kraft_controller", "bool", "4+"),
        F("controller_epoch", "int32"),
        F("broker_epoch", "int64", "1+", default=-1),
        F("delete_partitions", "bool", "0-2"),
        F("ungrouped_partitions", "[]StopReplicaPartitionV0", "0", fields=(
            F("topic_name", "string", "0"),
            F("partition_index", "int32", "0"),
        )),
        F("topics", "[]StopReplicaTopicV1", "1-2", fields=(
            F("name", "string", "1-2"),
            F("partition_indexes", "[]int32", "1-2"),
        )),
        F("topic_states", "[]StopReplicaTopicState", "3+", fields=(
            F("topic_name", "string", "3+"),
            F("partition_states", "[]StopReplicaPartitionState", "3+", fields=(
                F("partition_index", "int32", "3+"),
                F("leader_epoch", "int32", "3+", default=-1),
                F("delete_partition", "bool", "3+"),
            )),
        )),
    ),
    response=(
        F("error_code", "int16"),
        F("partition_errors", "[]StopReplicaPartitionError", fields=(
            F("topic_name", "string"),
            F("partition_index", "int32"),
            F("error_code", "int16"),
        )),
    ),
)  # fmt: skip

# --------------------------------------------------------------------------- UpdateMetadata

_UPDATE_METADATA_PARTITION_STATE = (
    F("topic_name", "string", "0-4"),
    F("partition_index", "int32"),
    F("controller_epoch", "int32"),
    F("leader", "int32"),
    F("leader_epoch", "int32"),
    F("isr", "[]int32"),
    F("zk_version", "int32"),
    F("replicas", "[]int32"),
    F("offline_replicas", "[]int32", "4+"),
)

_UPDATE_METADATA = InterBrokerApi(
    "UpdateMetadata",
    "update_metadata",
    versions=range(0, 9),
    flexible_from=6,
    request=(
        F("controller_id", "int32"),
        F("is_kraft_controller", "bool", "8+"),
        # 0 unknown, 1 incremental, 2 full (KIP-866); Kafka's ZooKeeper
        # controller leaves it at 0.
        F("type", "int8", "8+", tag=0),
        F("controller_epoch", "int32"),
        F("broker_epoch", "int64", "5+", default=-1),
        F("ungrouped_partition_states", "[]UpdateMetadataPartitionState", "0-4",
          fields=_UPDATE_METADATA_PARTITION_STATE),
        F("topic_states", "[]UpdateMetadataTopicState", "5+", fields=(
            F("topic_name", "string", "5+"),
            F("topic_id", "uuid", "7+"),
            F("partition_states", "[]UpdateMetadataPartitionState", "5+",
              fields=_UPDATE_METADATA_PARTITION_STATE),
        )),
        F("live_brokers", "[]UpdateMetadataBroker", fields=(
            F("id", "int32"),
            F("v0_host", "string", "0"),
            F("v0_port", "int32", "0"),
            F("endpoints", "[]UpdateMetadataEndpoint", "1+", fields=(
                F("port", "int32", "1+"),
                F("host", "string", "1+"),
                F("listener", "string", "3+"),
                F("security_protocol", "int16", "1+"),
            )),
            F("rack", "string", "2+", nullable="0+"),
        )),
    ),
    response=(F("error_code", "int16"),),
)  # fmt: skip

# --------------------------------------------------------------------------- ControlledShutdown

_CONTROLLED_SHUTDOWN = InterBrokerApi(
    "ControlledShutdown",
    "controlled_shutdown",
    versions=range(1, 4),
    flexible_from=3,
    request=(
        F("broker_id", "int32"),
        F("broker_epoch", "int64", "2+", default=-1),
    ),
    response=(
        F("error_code", "int16"),
        F("remaining_partitions", "[]RemainingPartition", fields=(
            F("topic_name", "string"),
            F("partition_index", "int32"),
        )),
    ),
)  # fmt: skip

#: By API key.
INTER_BROKER: dict[int, InterBrokerApi] = {
    4: _LEADER_AND_ISR,
    5: _STOP_REPLICA,
    6: _UPDATE_METADATA,
    7: _CONTROLLED_SHUTDOWN,
}
