"""``moldau configs``: show and change topic (and show broker) configs.

``describe`` lists the configs set on the topic itself, as Kafka's
``kafka-configs.sh --describe`` does; ``--all`` adds every effective value
with where it comes from. ``alter`` changes single keys and leaves the rest
(IncrementalAlterConfigs); the broker applies them at once, no restart.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .common import CliError, add_bootstrap, admin_command, key_value

if TYPE_CHECKING:
    from moldau.client.admin import Admin


def register(commands: Any) -> None:
    parser = commands.add_parser("configs", help="describe and alter topic configs")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    describe = actions.add_parser("describe", help="the configs of a topic or broker")
    target = describe.add_mutually_exclusive_group(required=True)
    target.add_argument("--topic", help="a topic name")
    target.add_argument("--broker", help="a broker id")
    describe.add_argument(
        "--all", action="store_true", help="every config with its source, not only overrides"
    )
    describe.set_defaults(run=admin_command(_describe))

    alter = actions.add_parser("alter", help="set or delete topic configs")
    alter.add_argument("--topic", required=True, help="a topic name")
    alter.add_argument(
        "--set",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a config, e.g. retention.ms=60000 (repeatable)",
    )
    alter.add_argument(
        "--delete",
        action="append",
        default=[],
        metavar="KEY",
        help="return a config to the broker default (repeatable)",
    )
    alter.add_argument("--dry-run", action="store_true", help="only validate the change")
    alter.set_defaults(run=admin_command(_alter))

    for sub in (describe, alter):
        add_bootstrap(sub)


async def _describe(admin: Admin, args: argparse.Namespace) -> int:
    from moldau.client.admin import ConfigResourceType, ConfigSource

    if args.topic is not None:
        kind, name, own = ConfigResourceType.TOPIC, args.topic, ConfigSource.DYNAMIC_TOPIC_CONFIG
    else:
        kind, name, own = ConfigResourceType.BROKER, args.broker, ConfigSource.STATIC_BROKER_CONFIG
    entries = await admin.describe_configs(kind, name)
    shown = [e for e in entries if args.all or e.source == own]
    print(f"Configs for {'topic' if args.topic is not None else 'broker'} {name} are:")
    for entry in shown:
        # Kafka's kafka-configs.sh shows a sensitive or unset value as null.
        value = "null" if entry.is_sensitive or entry.value is None else entry.value
        sensitive = str(entry.is_sensitive).lower()
        print(f"  {entry.name}={value} sensitive={sensitive} source={entry.source.name}")
    return 0


async def _alter(admin: Admin, args: argparse.Namespace) -> int:
    if not args.set and not args.delete:
        raise CliError("nothing to change: give --set KEY=VALUE and/or --delete KEY")
    await admin.alter_topic_configs(
        args.topic, dict(args.set), args.delete, validate_only=args.dry_run
    )
    changes = [f"set {k}={v}" for k, v in args.set] + [f"deleted {k}" for k in args.delete]
    verb = "Validated" if args.dry_run else "Completed"
    print(f"{verb} updating config for topic {args.topic}: {', '.join(changes)}.")
    return 0
