"""``moldau groups``: list, describe, delete consumer groups and reset their offsets.

In the spirit of Kafka's ``kafka-consumer-groups.sh``: ``describe`` shows a
group's members and, per partition, the committed offset, the log end offset
and the lag between them; ``reset-offsets`` is a dry run unless told
``--execute``, and works only on a group without members, as a running
consumer would overwrite the new positions with its own. ``describe
--history`` adds the group's recent rebalances as the brokers recorded them:
what started each one and how long the group could not consume.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .common import CliError, add_bootstrap, run_async

if TYPE_CHECKING:
    from moldau.client.groups_admin import GroupsAdmin
    from moldau.client.types import TopicPartition
    from moldau.group.history import RebalanceRecord

#: States in which no member can overwrite a reset (Kafka's rule).
_INACTIVE = ("Empty", "Dead")


def register(commands: Any) -> None:
    parser = commands.add_parser("groups", help="list, describe, delete, reset consumer groups")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    listing = actions.add_parser("list", help="list groups")
    listing.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="STATE",
        help="only groups in this state, e.g. Stable or Empty (repeatable); shows states",
    )
    listing.set_defaults(run=_runner(_list))

    describe = actions.add_parser(
        "describe", help="members, assignments, committed offsets and lag of a group"
    )
    describe.add_argument("group")
    describe.add_argument(
        "--history", action="store_true", help="also show the group's recent rebalances"
    )
    describe.set_defaults(run=_runner(_describe))

    delete = actions.add_parser("delete", help="delete a group without members, with its offsets")
    delete.add_argument("group")
    delete.set_defaults(run=_runner(_delete))

    reset = actions.add_parser(
        "reset-offsets", help="move a group's committed offsets (a dry run without --execute)"
    )
    reset.add_argument("group")
    reset.add_argument("--topic", required=True, help="the topic whose offsets to reset")
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true", help="the start of each partition")
    target.add_argument("--to-latest", action="store_true", help="the end of each partition")
    target.add_argument(
        "--to-offset",
        type=int,
        metavar="N",
        help="offset N in every partition (kept within each partition's start and end)",
    )
    reset.add_argument("--execute", action="store_true", help="commit the new offsets")
    reset.set_defaults(run=_runner(_reset))

    for sub in (listing, describe, delete, reset):
        add_bootstrap(sub)


def _runner(action: Any) -> Any:
    """Wrap ``action(admin, args)`` into a command that connects first."""

    def run(args: argparse.Namespace) -> int:
        async def go() -> int:
            from moldau.client.cluster import Cluster
            from moldau.client.groups_admin import GroupsAdmin

            async with Cluster(args.bootstrap_server, client_id="moldau-groups") as cluster:
                result: int = await action(GroupsAdmin(cluster), args)
                return result

        return run_async(go())

    return run


def _table(rows: Sequence[Sequence[object]]) -> None:
    """Columns padded to their widest cell, two spaces apart."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def _list(admin: GroupsAdmin, args: argparse.Namespace) -> int:
    groups = await admin.list_groups(args.state)
    if args.state:
        _table([("GROUP", "STATE"), *((g.group_id, g.state) for g in groups)])
        return 0
    for group in groups:
        print(group.group_id)
    return 0


async def _describe(admin: GroupsAdmin, args: argparse.Namespace) -> int:
    group = await admin.describe_group(args.group)
    offsets = await admin.committed_offsets(args.group)
    if group.state == "Dead" and not offsets:
        raise CliError(f"group '{args.group}' does not exist")
    protocol = f"{group.protocol_type}/{group.protocol}" if group.protocol else "-"
    print(
        f"Group: {group.group_id}  State: {group.state}  Protocol: {protocol}  "
        f"Members: {len(group.members)}  Coordinator: {group.coordinator}"
    )
    if group.members:
        print()
        _table(
            [
                ("MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "HOST", "PARTITIONS"),
                *(
                    (
                        m.member_id,
                        m.group_instance_id or "-",
                        m.client_id,
                        m.client_host,
                        _partitions(m.assignment) or "-",
                    )
                    for m in group.members
                ),
            ]
        )
    owners = {tp: m for m in group.members for tp in m.assignment}
    partitions = sorted(set(offsets) | set(owners))
    if partitions:
        ends = await admin.log_end_offsets(partitions)
        rows: list[tuple[object, ...]] = [
            ("TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID")
        ]
        for tp in partitions:
            committed = offsets.get(tp)
            end = ends.get(tp)
            lag = "-" if committed is None or end is None else max(end - committed, 0)
            owner = owners.get(tp)
            rows.append(
                (
                    tp.topic,
                    tp.partition,
                    "-" if committed is None else committed,
                    "-" if end is None else end,
                    lag,
                    owner.member_id if owner else "-",
                )
            )
        print()
        _table(rows)
    if args.history:
        print()
        _history(await admin.rebalance_history(args.group))
    return 0


def _partitions(tps: Sequence[TopicPartition]) -> str:
    """``topic:0,1 other:3``: a member's partitions, grouped by topic."""
    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return " ".join(f"{t}:{','.join(map(str, sorted(p)))}" for t, p in sorted(by_topic.items()))


def _history(records: Sequence[RebalanceRecord]) -> None:
    if not records:
        print("No rebalances recorded.")
        return
    print("Rebalances, oldest first:")
    for record in records:
        after = "?" if record.generation is None else record.generation
        paused = "in progress" if record.paused_ms is None else f"paused {record.paused_ms} ms"
        outcome = f", {record.outcome.value}" if record.outcome is not None else ""
        generations = f"generation {record.generation_before} -> {after}"
        print(f"  {generations}: {record.cause()}; {paused}{outcome}")
        print(f"    members before: {', '.join(record.members_before) or '-'}")
        print(f"    members after:  {', '.join(record.members_after) or '-'}")
        if record.dropped:
            print(f"    dropped for not rejoining: {', '.join(record.dropped)}")


async def _delete(admin: GroupsAdmin, args: argparse.Namespace) -> int:
    await admin.delete_group(args.group)
    print(f"Deleted group '{args.group}'.")
    return 0


async def _reset(admin: GroupsAdmin, args: argparse.Namespace) -> int:
    from moldau.client.errors import ErrorCode, topic_error
    from moldau.client.types import TopicPartition

    group = await admin.describe_group(args.group)
    if group.state not in _INACTIVE:
        raise CliError(
            f"offsets can only be reset while group '{args.group}' has no members; "
            f"it is {group.state}"
        )
    meta = await admin.cluster.refresh([args.topic])
    info = meta.topics.get(args.topic)
    if info is None or info.error != ErrorCode.NONE:
        raise topic_error(
            args.topic, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if info is None else info.error
        )
    tps = [TopicPartition(args.topic, p) for p in sorted(info.partitions)]
    starts, ends = await _bounds(admin, tps)
    if args.to_earliest:
        targets = starts
    elif args.to_latest:
        targets = ends
    else:
        targets = {tp: min(max(args.to_offset, starts[tp]), ends[tp]) for tp in tps}
    _table(
        [
            ("GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"),
            *((args.group, tp.topic, tp.partition, targets[tp]) for tp in tps),
        ]
    )
    if args.execute:
        await admin.commit_offsets(args.group, targets)
        print(f"Committed the new offsets of group '{args.group}' for topic {args.topic}.")
    else:
        print("Dry run: nothing changed; add --execute to commit these offsets.", file=sys.stderr)
    return 0


async def _bounds(
    admin: GroupsAdmin, tps: Sequence[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    from moldau.client.offsets import list_offsets

    found = await list_offsets(
        admin.cluster, dict.fromkeys(tps, "earliest"), timeout_ms=admin.timeout_ms
    )
    starts = {tp: answer.offset for tp, answer in found.items()}
    return starts, await admin.log_end_offsets(tps)
