"""The message versions Kafka 4.0 dropped (KIP-896) that Kafka 3.9 still serves.

kio follows Kafka 4.0, so it has no schema for Produce v0-v2, Fetch v0-v3,
ListOffsets v0 and the other versions listed below, which deployed clients
still send (old sarama, kafka-python with an old ``api_version``, librdkafka
with ``broker.version.fallback``). The APIs moldau serves are served at these
versions; the others are answered UNSUPPORTED_VERSION at them, as at any
version, rather than with a closed connection. Their fields are written here as data,
transcribed from Kafka 3.9's message definitions
(``clients/src/main/resources/common/message/*.json``): names in Kafka's
snake_case as kio spells them, versions in Kafka's notation ("0+", "1",
"2-4"). ``schema`` turns them into the same ``StructSpec`` tree it builds
from kio, so ``codegen`` compiles them like every other version.

Each definition runs up to the oldest version kio has (``kio_floor``), one
version past what moldau needs from it: at that version it must describe
exactly what kio describes, which the wire tests check, so a name spelled
differently here than in kio (and so in the handlers) cannot go unnoticed.
None of these versions is flexible: no tagged fields, no compact encodings.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Field(NamedTuple):
    """One field as Kafka's JSON declares it."""

    name: str
    #: A wire type ("int32", "string", "records"...), "[]" + one for an array
    #: of it, or "[]" + a struct name with ``fields`` for an array of structs.
    type: str
    #: The versions that have the field: "0+", "1", "2-4".
    versions: str = "0+"
    fields: tuple[Field, ...] = ()
    #: The versions in which the field may be null ("" for none).
    nullable: str = ""
    #: The default; None means the type's zero (or null when nullable).
    default: Any = None
    #: The tag of a tagged field (flexible versions only; ``inter_broker_schema``).
    tag: int | None = None


class Legacy(NamedTuple):
    """The old versions of one API, request and response."""

    name: str
    oldest: int
    kio_floor: int
    request: tuple[Field, ...]
    response: tuple[Field, ...]


def in_versions(versions: str, version: int) -> bool:
    """Whether ``version`` is in a Kafka version string ("0+", "1", "2-4")."""
    if not versions:
        return False
    if versions.endswith("+"):
        return version >= int(versions[:-1])
    low, _, high = versions.partition("-")
    return int(low) <= version <= int(high or low)


F = Field

_PRODUCE = Legacy(
    "Produce",
    oldest=0,
    kio_floor=3,
    request=(
        F("transactional_id", "string", "3+", nullable="3+"),
        F("acks", "int16"),
        F("timeout_ms", "int32"),
        F("topic_data", "[]TopicProduceData", fields=(
            F("name", "string"),
            F("partition_data", "[]PartitionProduceData", fields=(
                F("index", "int32"),
                F("records", "records", nullable="0+"),
            )),
        )),
    ),
    response=(
        F("responses", "[]TopicProduceResponse", fields=(
            F("name", "string"),
            F("partition_responses", "[]PartitionProduceResponse", fields=(
                F("index", "int32"),
                F("error_code", "int16"),
                F("base_offset", "int64"),
                F("log_append_time_ms", "int64", "2+", default=-1),
            )),
        )),
        F("throttle_time_ms", "int32", "1+"),
    ),
)  # fmt: skip

_FETCH = Legacy(
    "Fetch",
    oldest=0,
    kio_floor=4,
    request=(
        F("replica_id", "int32", default=-1),
        F("max_wait_ms", "int32"),
        F("min_bytes", "int32"),
        F("max_bytes", "int32", "3+", default=0x7FFFFFFF),
        F("isolation_level", "int8", "4+"),
        F("topics", "[]FetchTopic", fields=(
            F("topic", "string"),
            F("partitions", "[]FetchPartition", fields=(
                F("partition", "int32"),
                F("fetch_offset", "int64"),
                F("partition_max_bytes", "int32"),
            )),
        )),
    ),
    response=(
        F("throttle_time_ms", "int32", "1+"),
        F("responses", "[]FetchableTopicResponse", fields=(
            F("topic", "string"),
            F("partitions", "[]PartitionData", fields=(
                F("partition_index", "int32"),
                F("error_code", "int16"),
                F("high_watermark", "int64"),
                F("last_stable_offset", "int64", "4+", default=-1),
                F("aborted_transactions", "[]AbortedTransaction", "4+", nullable="4+", fields=(
                    F("producer_id", "int64", "4+"),
                    F("first_offset", "int64", "4+"),
                )),
                F("records", "records", nullable="0+"),
            )),
        )),
    ),
)  # fmt: skip

_LIST_OFFSETS = Legacy(
    "ListOffsets",
    oldest=0,
    kio_floor=1,
    request=(
        F("replica_id", "int32"),
        F("topics", "[]ListOffsetsTopic", fields=(
            F("name", "string"),
            F("partitions", "[]ListOffsetsPartition", fields=(
                F("partition_index", "int32"),
                F("timestamp", "int64"),
                F("max_num_offsets", "int32", "0", default=1),
            )),
        )),
    ),
    response=(
        F("topics", "[]ListOffsetsTopicResponse", fields=(
            F("name", "string"),
            F("partitions", "[]ListOffsetsPartitionResponse", fields=(
                F("partition_index", "int32"),
                F("error_code", "int16"),
                F("old_style_offsets", "[]int64", "0"),
                F("timestamp", "int64", "1+", default=-1),
                F("offset", "int64", "1+", default=-1),
            )),
        )),
    ),
)  # fmt: skip

_OFFSET_COMMIT = Legacy(
    "OffsetCommit",
    oldest=0,
    kio_floor=2,
    request=(
        F("group_id", "string"),
        F("generation_id_or_member_epoch", "int32", "1+", default=-1),
        F("member_id", "string", "1+"),
        F("retention_time_ms", "int64", "2-4", default=-1),
        F("topics", "[]OffsetCommitRequestTopic", fields=(
            F("name", "string"),
            F("partitions", "[]OffsetCommitRequestPartition", fields=(
                F("partition_index", "int32"),
                F("committed_offset", "int64"),
                F("commit_timestamp", "int64", "1", default=-1),
                F("committed_metadata", "string", nullable="0+"),
            )),
        )),
    ),
    response=(
        F("topics", "[]OffsetCommitResponseTopic", fields=(
            F("name", "string"),
            F("partitions", "[]OffsetCommitResponsePartition", fields=(
                F("partition_index", "int32"),
                F("error_code", "int16"),
            )),
        )),
    ),
)  # fmt: skip

_OFFSET_FETCH = Legacy(
    "OffsetFetch",
    oldest=0,
    kio_floor=1,
    request=(
        F("group_id", "string"),
        F("topics", "[]OffsetFetchRequestTopic", fields=(
            F("name", "string"),
            F("partition_indexes", "[]int32"),
        )),
    ),
    response=(
        F("topics", "[]OffsetFetchResponseTopic", fields=(
            F("name", "string"),
            F("partitions", "[]OffsetFetchResponsePartition", fields=(
                F("partition_index", "int32"),
                F("committed_offset", "int64"),
                F("metadata", "string", nullable="0+"),
                F("error_code", "int16"),
            )),
        )),
    ),
)  # fmt: skip

_CREATE_TOPICS = Legacy(
    "CreateTopics",
    oldest=0,
    kio_floor=2,
    request=(
        F("topics", "[]CreatableTopic", fields=(
            F("name", "string"),
            F("num_partitions", "int32"),
            F("replication_factor", "int16"),
            F("assignments", "[]CreatableReplicaAssignment", fields=(
                F("partition_index", "int32"),
                F("broker_ids", "[]int32"),
            )),
            F("configs", "[]CreatableTopicConfig", fields=(
                F("name", "string"),
                F("value", "string", nullable="0+"),
            )),
        )),
        F("timeout_ms", "int32", default=60000),
        F("validate_only", "bool", "1+"),
    ),
    response=(
        F("throttle_time_ms", "int32", "2+"),
        F("topics", "[]CreatableTopicResult", fields=(
            F("name", "string"),
            F("error_code", "int16"),
            F("error_message", "string", "1+", nullable="0+"),
        )),
    ),
)  # fmt: skip

_DELETE_TOPICS = Legacy(
    "DeleteTopics",
    oldest=0,
    kio_floor=1,
    request=(
        F("topic_names", "[]string"),
        F("timeout_ms", "int32"),
    ),
    response=(
        F("throttle_time_ms", "int32", "1+"),
        F("responses", "[]DeletableTopicResult", fields=(
            F("name", "string"),
            F("error_code", "int16"),
        )),
    ),
)  # fmt: skip

_DESCRIBE_CONFIGS = Legacy(
    "DescribeConfigs",
    oldest=0,
    kio_floor=1,
    request=(
        F("resources", "[]DescribeConfigsResource", fields=(
            F("resource_type", "int8"),
            F("resource_name", "string"),
            F("configuration_keys", "[]string", nullable="0+", default=[]),
        )),
        F("include_synonyms", "bool", "1+"),
    ),
    response=(
        F("throttle_time_ms", "int32"),
        F("results", "[]DescribeConfigsResult", fields=(
            F("error_code", "int16"),
            F("error_message", "string", nullable="0+"),
            F("resource_type", "int8"),
            F("resource_name", "string"),
            F("configs", "[]DescribeConfigsResourceResult", fields=(
                F("name", "string"),
                F("value", "string", nullable="0+"),
                F("read_only", "bool"),
                F("is_default", "bool", "0"),
                F("config_source", "int8", "1+", default=-1),
                F("is_sensitive", "bool"),
                F("synonyms", "[]DescribeConfigsSynonym", "1+", fields=(
                    F("name", "string", "1+"),
                    F("value", "string", "1+", nullable="0+"),
                    F("source", "int8", "1+"),
                )),
            )),
        )),
    ),
)  # fmt: skip

# The APIs below moldau does not serve; their old versions are here so that a
# client asking for one gets UNSUPPORTED_VERSION in the answer's error field,
# as for every other version we do not serve, instead of a closed connection.

_DESCRIBE_ACLS = Legacy(
    "DescribeAcls",
    oldest=0,
    kio_floor=1,
    request=(
        F("resource_type_filter", "int8"),
        F("resource_name_filter", "string", nullable="0+"),
        F("pattern_type_filter", "int8", "1+", default=3),
        F("principal_filter", "string", nullable="0+"),
        F("host_filter", "string", nullable="0+"),
        F("operation", "int8"),
        F("permission_type", "int8"),
    ),
    response=(
        F("throttle_time_ms", "int32"),
        F("error_code", "int16"),
        F("error_message", "string", nullable="0+"),
        F("resources", "[]DescribeAclsResource", fields=(
            F("resource_type", "int8"),
            F("resource_name", "string"),
            F("pattern_type", "int8", "1+", default=3),
            F("acls", "[]AclDescription", fields=(
                F("principal", "string"),
                F("host", "string"),
                F("operation", "int8"),
                F("permission_type", "int8"),
            )),
        )),
    ),
)  # fmt: skip

_CREATE_ACLS = Legacy(
    "CreateAcls",
    oldest=0,
    kio_floor=1,
    request=(
        F("creations", "[]AclCreation", fields=(
            F("resource_type", "int8"),
            F("resource_name", "string"),
            F("resource_pattern_type", "int8", "1+", default=3),
            F("principal", "string"),
            F("host", "string"),
            F("operation", "int8"),
            F("permission_type", "int8"),
        )),
    ),
    response=(
        F("throttle_time_ms", "int32"),
        F("results", "[]AclCreationResult", fields=(
            F("error_code", "int16"),
            F("error_message", "string", nullable="0+"),
        )),
    ),
)  # fmt: skip

_DELETE_ACLS = Legacy(
    "DeleteAcls",
    oldest=0,
    kio_floor=1,
    request=(
        F("filters", "[]DeleteAclsFilter", fields=(
            F("resource_type_filter", "int8"),
            F("resource_name_filter", "string", nullable="0+"),
            F("pattern_type_filter", "int8", "1+", default=3),
            F("principal_filter", "string", nullable="0+"),
            F("host_filter", "string", nullable="0+"),
            F("operation", "int8"),
            F("permission_type", "int8"),
        )),
    ),
    response=(
        F("throttle_time_ms", "int32"),
        F("filter_results", "[]DeleteAclsFilterResult", fields=(
            F("error_code", "int16"),
            F("error_message", "string", nullable="0+"),
            F("matching_acls", "[]DeleteAclsMatchingAcl", fields=(
                F("error_code", "int16"),
                F("error_message", "string", nullable="0+"),
                F("resource_type", "int8"),
                F("resource_name", "string"),
                F("pattern_type", "int8", "1+", default=3),
                F("principal", "string"),
                F("host", "string"),
                F("operation", "int8"),
                F("permission_type", "int8"),
            )),
        )),
    ),
)  # fmt: skip

_OFFSET_FOR_LEADER_EPOCH = Legacy(
    "OffsetForLeaderEpoch",
    oldest=0,
    kio_floor=2,
    request=(
        F("topics", "[]OffsetForLeaderTopic", fields=(
            F("topic", "string"),
            F("partitions", "[]OffsetForLeaderPartition", fields=(
                F("partition", "int32"),
                F("current_leader_epoch", "int32", "2+", default=-1),
                F("leader_epoch", "int32"),
            )),
        )),
    ),
    response=(
        F("throttle_time_ms", "int32", "2+"),
        F("topics", "[]OffsetForLeaderTopicResult", fields=(
            F("topic", "string"),
            F("partitions", "[]EpochEndOffset", fields=(
                F("error_code", "int16"),
                F("partition", "int32"),
                F("leader_epoch", "int32", "1+", default=-1),
                F("end_offset", "int64", default=-1),
            )),
        )),
    ),
)  # fmt: skip

_ALTER_REPLICA_LOG_DIRS = Legacy(
    "AlterReplicaLogDirs",
    oldest=0,
    kio_floor=1,
    request=(
        F("dirs", "[]AlterReplicaLogDir", fields=(
            F("path", "string"),
            F("topics", "[]AlterReplicaLogDirTopic", fields=(
                F("name", "string"),
                F("partitions", "[]int32"),
            )),
        )),
    ),
    response=(
        F("throttle_time_ms", "int32"),
        F("results", "[]AlterReplicaLogDirTopicResult", fields=(
            F("topic_name", "string"),
            F("partitions", "[]AlterReplicaLogDirPartitionResult", fields=(
                F("partition_index", "int32"),
                F("error_code", "int16"),
            )),
        )),
    ),
)  # fmt: skip

_DESCRIBE_LOG_DIRS = Legacy(
    "DescribeLogDirs",
    oldest=0,
    kio_floor=1,
    request=(
        F("topics", "[]DescribableLogDirTopic", nullable="0+", fields=(
            F("topic", "string"),
            F("partitions", "[]int32"),
        )),
    ),
    response=(
        F("throttle_time_ms", "int32"),
        F("results", "[]DescribeLogDirsResult", fields=(
            F("error_code", "int16"),
            F("log_dir", "string"),
            F("topics", "[]DescribeLogDirsTopic", fields=(
                F("name", "string"),
                F("partitions", "[]DescribeLogDirsPartition", fields=(
                    F("partition_index", "int32"),
                    F("partition_size", "int64"),
                    F("offset_lag", "int64"),
                    F("is_future_key", "bool"),
                )),
            )),
        )),
    ),
)  # fmt: skip

_RENEWERS = (F("principal_type", "string"), F("principal_name", "string"))

_CREATE_DELEGATION_TOKEN = Legacy(
    "CreateDelegationToken",
    oldest=0,
    kio_floor=1,
    request=(
        F("renewers", "[]CreatableRenewers", fields=_RENEWERS),
        F("max_lifetime_ms", "int64"),
    ),
    response=(
        F("error_code", "int16"),
        F("principal_type", "string"),
        F("principal_name", "string"),
        F("issue_timestamp_ms", "int64"),
        F("expiry_timestamp_ms", "int64"),
        F("max_timestamp_ms", "int64"),
        F("token_id", "string"),
        F("hmac", "bytes"),
        F("throttle_time_ms", "int32"),
    ),
)

_DESCRIBE_DELEGATION_TOKEN = Legacy(
    "DescribeDelegationToken",
    oldest=0,
    kio_floor=1,
    request=(F("owners", "[]DescribeDelegationTokenOwner", nullable="0+", fields=_RENEWERS),),
    response=(
        F("error_code", "int16"),
        F("tokens", "[]DescribedDelegationToken", fields=(
            F("principal_type", "string"),
            F("principal_name", "string"),
            F("issue_timestamp", "int64"),
            F("expiry_timestamp", "int64"),
            F("max_timestamp", "int64"),
            F("token_id", "string"),
            F("hmac", "bytes"),
            F("renewers", "[]DescribedDelegationTokenRenewer", fields=_RENEWERS),
        )),
        F("throttle_time_ms", "int32"),
    ),
)  # fmt: skip

_TOKEN_TIME = (
    F("error_code", "int16"),
    F("expiry_timestamp_ms", "int64"),
    F("throttle_time_ms", "int32"),
)

_RENEW_DELEGATION_TOKEN = Legacy(
    "RenewDelegationToken",
    oldest=0,
    kio_floor=1,
    request=(F("hmac", "bytes"), F("renew_period_ms", "int64")),
    response=_TOKEN_TIME,
)

_EXPIRE_DELEGATION_TOKEN = Legacy(
    "ExpireDelegationToken",
    oldest=0,
    kio_floor=1,
    request=(F("hmac", "bytes"), F("expiry_time_period_ms", "int64")),
    response=_TOKEN_TIME,
)

#: By API key: every API a client may send whose range in Kafka 3.9 starts
#: below kio's. Left out: the inter-broker and controller APIs (LeaderAndIsr,
#: StopReplica, UpdateMetadata, ControlledShutdown, AlterPartition v0-v1,
#: WriteTxnMarkers v0), which no client sends, and the share-group APIs,
#: whose v0 was an unreleased early access in Kafka 3.9.
LEGACY: dict[int, Legacy] = {
    0: _PRODUCE,
    1: _FETCH,
    2: _LIST_OFFSETS,
    8: _OFFSET_COMMIT,
    9: _OFFSET_FETCH,
    19: _CREATE_TOPICS,
    20: _DELETE_TOPICS,
    32: _DESCRIBE_CONFIGS,
    23: _OFFSET_FOR_LEADER_EPOCH,
    29: _DESCRIBE_ACLS,
    30: _CREATE_ACLS,
    31: _DELETE_ACLS,
    34: _ALTER_REPLICA_LOG_DIRS,
    35: _DESCRIBE_LOG_DIRS,
    38: _CREATE_DELEGATION_TOKEN,
    39: _RENEW_DELEGATION_TOKEN,
    40: _EXPIRE_DELEGATION_TOKEN,
    41: _DESCRIBE_DELEGATION_TOKEN,
}
