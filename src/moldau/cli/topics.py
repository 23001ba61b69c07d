"""``moldau topics``: create, list, describe, alter and delete topics.

Output follows Kafka's ``kafka-topics.sh`` so that people and scripts used to
it read ours the same way.
"""

from __future__ import annotations

import argparse
import base64
from typing import TYPE_CHECKING, Any

from .common import add_bootstrap, admin_command, key_value

if TYPE_CHECKING:
    from moldau.client.admin import Admin
    from moldau.client.metadata import TopicInfo


def register(commands: Any) -> None:
    parser = commands.add_parser("topics", help="create, list, describe, alter, delete topics")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    create = actions.add_parser("create", help="create a topic")
    create.add_argument("name")
    create.add_argument(
        "--partitions", type=int, help="number of partitions (default: the broker's num.partitions)"
    )
    create.add_argument(
        "--replication-factor",
        type=int,
        help="replicas per partition (default: the broker's default.replication.factor)",
    )
    create.add_argument(
        "--config",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a topic config, e.g. cleanup.policy=compact (repeatable)",
    )
    create.add_argument(
        "--if-not-exists", action="store_true", help="succeed if the topic already exists"
    )
    create.set_defaults(run=admin_command(_create))

    listing = actions.add_parser("list", help="list topic names")
    listing.add_argument(
        "--include-internal", action="store_true", help="also list internal topics"
    )
    listing.set_defaults(run=admin_command(_list))

    describe = actions.add_parser("describe", help="partitions, leaders, replicas and ISR")
    describe.add_argument("name", nargs="?", help="one topic (default: all)")
    describe.set_defaults(run=admin_command(_describe))

    delete = actions.add_parser("delete", help="delete a topic")
    delete.add_argument("name")
    delete.add_argument("--if-exists", action="store_true", help="succeed if there is no topic")
    delete.set_defaults(run=admin_command(_delete))

    alter = actions.add_parser("alter", help="add partitions to a topic")
    alter.add_argument("name")
    alter.add_argument(
        "--partitions", type=int, required=True, help="the new (larger) partition count"
    )
    alter.set_defaults(run=admin_command(_alter))

    for sub in (create, listing, describe, delete, alter):
        add_bootstrap(sub)


async def _create(admin: Admin, args: argparse.Namespace) -> int:
    from moldau.client.admin import NewTopic
    from moldau.protocol.errors import ErrorCode

    topic = NewTopic(
        args.name,
        args.partitions if args.partitions is not None else -1,
        args.replication_factor if args.replication_factor is not None else -1,
        dict(args.config),
    )
    error = (await admin.create_topics([topic]))[args.name]
    if error is not None:
        if args.if_not_exists and error.code == ErrorCode.TOPIC_ALREADY_EXISTS:
            print(f"Topic {args.name} already exists.")
            return 0
        raise error
    print(f"Created topic {args.name}.")
    return 0


async def _list(admin: Admin, args: argparse.Namespace) -> int:
    for name in await admin.list_topics(include_internal=args.include_internal):
        print(name)
    return 0


async def _describe(admin: Admin, args: argparse.Namespace) -> int:
    topics = await admin.describe_topics(None if args.name is None else [args.name])
    for info in topics:
        configs = await _dynamic_configs(admin, info.name)
        print(
            f"Topic: {info.name}\tTopicId: {_topic_id(info)}\t"
            f"PartitionCount: {len(info.partitions)}\t"
            f"ReplicationFactor: {info.replication_factor}\tConfigs: {configs}"
        )
        for index in sorted(info.partitions):
            p = info.partitions[index]
            line = (
                f"\tTopic: {info.name}\tPartition: {index}\tLeader: "
                f"{p.leader if p.leader >= 0 else 'none'}\t"
                f"Replicas: {_ids(p.replicas)}\tIsr: {_ids(p.isr)}"
            )
            if p.offline_replicas:
                line += f"\tOffline: {_ids(p.offline_replicas)}"
            print(line)
    return 0


async def _dynamic_configs(admin: Admin, topic: str) -> str:
    """The configs set on the topic itself, as ``kafka-topics --describe`` shows."""
    from moldau.client.admin import ConfigResourceType, ConfigSource
    from moldau.protocol.errors import ErrorCode, KafkaError

    try:
        entries = await admin.describe_configs(ConfigResourceType.TOPIC, topic)
    except KafkaError as exc:
        if exc.code == ErrorCode.UNSUPPORTED_VERSION:
            return ""
        raise
    return ",".join(
        f"{e.name}={e.value}" for e in entries if e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG
    )


def _topic_id(info: TopicInfo) -> str:
    """Kafka prints topic ids as unpadded URL-safe base64 of the 16 bytes."""
    raw = info.topic_id.bytes if info.topic_id is not None else bytes(16)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _ids(ids: tuple[int, ...]) -> str:
    return ",".join(map(str, ids))


async def _delete(admin: Admin, args: argparse.Namespace) -> int:
    from moldau.protocol.errors import ErrorCode

    error = (await admin.delete_topics([args.name]))[args.name]
    if error is not None:
        if args.if_exists and error.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            print(f"Topic {args.name} does not exist.")
            return 0
        raise error
    print(f"Deleted topic {args.name}.")
    return 0


async def _alter(admin: Admin, args: argparse.Namespace) -> int:
    error = (await admin.create_partitions({args.name: args.partitions}))[args.name]
    if error is not None:
        raise error
    print(f"Topic {args.name} now has {args.partitions} partitions.")
    return 0
