"""The checks every topic admin request passes, in either mode.

CreateTopics, CreatePartitions and the configs APIs are answered with the
same errors and messages whether a single node writes its own metadata
(``topics.py``) or a cluster broker writes ZooKeeper (``cluster_topics.py``):
topic name rules, internal topics (clients may not create, delete or grow
them), replica placement over the live brokers, the broker's partition
capacity and topic config validation. Nothing here writes anything.
"""

from __future__ import annotations

import re
import uuid

from ..cluster.metadata import MetadataStore, TopicInfo
from ..log.config import LogConfig
from ..log.manager import LogManager
from ..protocol.errors import ErrorCode, KafkaError
from .assignment import ReplicaAssigner, check_replica_list
from .capacity import check_request_size, check_room
from .config import BrokerConfig
from .internal_topics import OFFSETS_TOPIC, is_internal_topic
from .replica_manager import ReplicaManager
from .topic_config import InvalidTopicConfig, log_config, validate_topic_configs

_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME = 249


def check_topic_name(name: str) -> None:
    """Kafka's topic name rules; raises INVALID_TOPIC_EXCEPTION."""
    if not name or name in (".", ".."):
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"Topic name {name!r} is illegal")
    if len(name) > MAX_TOPIC_NAME:
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name is longer than {MAX_TOPIC_NAME} characters",
        )
    if not _LEGAL_TOPIC.match(name):
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name {name!r} contains characters other than ASCII alphanumerics, '.', "
            "'_' and '-'",
        )


class TopicRules:
    """Decides what a topic admin request would write, or why it may not."""

    def __init__(
        self,
        config: BrokerConfig,
        metadata: MetadataStore,
        logs: LogManager,
        replicas: ReplicaManager,
    ) -> None:
        self.config = config
        self.metadata = metadata
        self.logs = logs
        self.replicas = replicas
        self.assigner = ReplicaAssigner(config, metadata)
        #: Topics whose creation is under way (not in the metadata yet).
        self.creating: set[str] = set()

    def new_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: dict[str, str | None],
        assignments: list[tuple[int, list[int]]] | None,
        internal: bool,
    ) -> TopicInfo:
        """The topic a creation asks for, checked; nothing is written yet.

        ``assignments`` are (partition index, replica list) pairs as the
        request gives them.
        """
        check_topic_name(name)
        if self.metadata.topic(name) is not None or name in self.creating:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        if is_internal_topic(name) and not internal:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                f"Creation of internal topic {name} is prohibited: the broker creates it "
                "with its own settings when it is first needed.",
            )
        if assignments:
            if num_partitions != -1 or replication_factor != -1:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST,
                    "A manual partition assignment was specified, but numPartitions and "
                    "replication factor were not set to -1.",
                )
            replicas = self.assigner.manual(assignments)
        else:
            replicas = self.assigner.automatic(
                num_partitions, replication_factor, self.replicas.hosted_count()
            )
        checked = self.checked_configs(configs)
        self.check_room(name, 0, len(replicas))
        return TopicInfo(name, uuid.uuid4(), replicas, checked, internal=internal)

    def checked_configs(self, configs: dict[str, str | None]) -> dict[str, str]:
        """A topic's config overrides, validated (INVALID_CONFIG)."""
        try:
            return validate_topic_configs(configs)
        except InvalidTopicConfig as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from None

    def log_config_of(self, configs: dict[str, str | None]) -> tuple[dict[str, str], LogConfig]:
        """Validated overrides and the log config they make (INVALID_CONFIG)."""
        try:
            checked = validate_topic_configs(configs)
            return checked, log_config(checked, self.config)
        except InvalidTopicConfig as exc:
            raise KafkaError(ErrorCode.INVALID_CONFIG, str(exc)) from None

    def check_room(self, name: str, first: int, added: int) -> None:
        """Refuse partitions the broker cannot host (see capacity.py) or
        whose directory name the file system cannot hold."""
        # Room for the offsets topic stays free until the first group makes
        # the broker create it: user topics must not make groups impossible.
        reserved = 0
        if name != OFFSETS_TOPIC and self.metadata.topic(OFFSETS_TOPIC) is None:
            reserved = int(self.config.get("offsets.topic.num.partitions"))
        limit = int(self.config.get("max.broker.partitions"))
        check_room(self.replicas.hosted_count(), added, limit, reserved)
        last = first + added - 1
        if not self.logs.dir_name_fits(name, last):
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                f"The directory of partition {last} of topic {name} would have a name longer "
                "than the file system allows.",
            )

    def existing(self, name: str) -> TopicInfo:
        """The topic an alteration names, or UNKNOWN_TOPIC_OR_PARTITION."""
        info = self.metadata.topic(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' not found")
        return info

    def deletable(self, name: str) -> TopicInfo:
        """The topic a deletion names, if it may be deleted.

        Internal topics cannot be deleted: Kafka leaves that to ACLs, and
        moldau has none, so it refuses as a denying ACL would
        (TOPIC_AUTHORIZATION_FAILED).
        """
        info = self.metadata.topic(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if not self.config.get("delete.topic.enable"):
            raise KafkaError(ErrorCode.TOPIC_DELETION_DISABLED)
        if is_internal_topic(name):
            raise KafkaError(
                ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                f"Internal topic {name} cannot be deleted.",
            )
        return info

    def new_partitions(
        self, name: str, count: int, assignments: list[list[int]] | None
    ) -> list[list[int]]:
        """The replica lists of the partitions that take ``name`` to ``count``
        (``assignments`` None: placed by the broker), checked as Kafka does."""
        info = self.existing(name)
        if is_internal_topic(name):
            # Groups are placed by offsets.topic.num.partitions: more
            # partitions would only break that. Refused as deletion is.
            raise KafkaError(
                ErrorCode.TOPIC_AUTHORIZATION_FAILED,
                f"Partitions cannot be added to internal topic {name}.",
            )
        current = info.partition_count
        if count == current:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partition(s)."
            )
        if count < current:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                f"The topic {name} currently has {current} partition(s); {count} would not "
                "be an increase.",
            )
        additional = count - current
        check_request_size(additional)
        replication = len(info.replicas[0]) if info.replicas else 1
        if assignments is None:
            added = self.assigner.assign(additional, replication, self.replicas.hosted_count())
        else:
            if len(assignments) != additional:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Attempted to add {additional} additional partition(s), but only "
                    f"{len(assignments)} assignment(s) were specified.",
                )
            brokers = self.assigner.broker_ids()
            for replicas in assignments:
                check_replica_list(replicas, brokers, replication)
            added = [list(a) for a in assignments]
        self.check_room(name, current, additional)
        return added
