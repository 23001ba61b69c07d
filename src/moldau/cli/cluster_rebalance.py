"""``moldau cluster rebalance`` and ``moldau cluster reassign``: move
replicas between brokers without stopping the clients.

``rebalance`` reads the cluster (Metadata), plans where every replica
should be (``moldau.cluster.balance``: removed brokers emptied, racks
spread, replica and leader counts balanced, fewest moves) and prints the
plan; ``reassign --plan FILE`` takes the targets from a file in Kafka's
reassignment JSON (``{"version": 1, "partitions": [{"topic", "partition",
"replicas", "log_dirs"?}]}``, as kafka-reassign-partitions.sh reads and
writes it) and prints the same view. With ``--execute`` either one:

1. refuses if a reassignment of these partitions is already running;
2. sets the replication throttle if ``--throttle`` is given, Kafka's way:
   ``leader.replication.throttled.rate`` and
   ``follower.replication.throttled.rate`` on every broker involved, and on
   each topic ``leader.replication.throttled.replicas`` (the current
   replicas of its moving partitions) and
   ``follower.replication.throttled.replicas`` (the replicas being added);
3. submits the targets (AlterPartitionReassignments) and saves them in a
   file, the handle for ``reassign --plan FILE --cancel``;
4. shows a live progress line: partitions done (no longer listed by
   ListPartitionReassignments), bytes copied (each new replica's size from
   DescribeLogDirs, up to its leader's size when the move began), rate and
   ETA. Ctrl-C stops the watching only: the reassignment goes on;
5. once every partition is done, removes the throttles it set and asks
   for preferred leader elections of the moved partitions, so leadership
   follows the new first replicas.

``reassign --plan FILE --cancel`` cancels the reassignments of the file's
partitions (each goes back to its replicas before it began, KIP-455) and
removes the throttles on their topics and brokers. Errors are one line and
exit 1.

Where moldau departs from Kafka: ``log_dirs`` other than "any" are
refused (moldau has no AlterReplicaLogDirs); the throttled-replicas lists
are set, not merged with a topic's existing ones, and deleted at the end;
Kafka's tool leaves removing throttles to a later ``--verify``, this one
does it when it saw the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .common import CliError, run_async

if TYPE_CHECKING:
    from moldau.client.admin import Admin
    from moldau.cluster.balance import Plan
    from moldau.protocol.errors import KafkaError

T = TypeVar("T")
TopicPartition = tuple[str, int]
Targets = dict[TopicPartition, tuple[int, ...]]

#: Kafka's throttle keys: per broker, then per topic.
RATE_KEYS = ("leader.replication.throttled.rate", "follower.replication.throttled.rate")
LEADER_REPLICAS = "leader.replication.throttled.replicas"
FOLLOWER_REPLICAS = "follower.replication.throttled.replicas"

#: Seconds between two looks at the progress.
POLL_SECONDS = 1.0


# -- the two commands ------------------------------------------------------------


def rebalance(args: argparse.Namespace) -> int:
    from moldau.cluster.balance import BalanceError, plan_rebalance

    _check_throttle(args)

    async def plan(admin: Admin) -> Plan:
        racks, current = await _read_cluster(admin, args.topics)
        try:
            return plan_rebalance(racks, current, args.add_broker, args.remove_broker)
        except BalanceError as exc:
            raise CliError(str(exc)) from None

    return _show_and_run(args, plan)


def reassign(args: argparse.Namespace) -> int:
    from moldau.cluster.balance import Plan

    if args.cancel and args.execute:
        raise CliError("--cancel and --execute exclude each other")
    _check_throttle(args)
    try:
        wanted = read_reassignment(args.plan.read_text())
    except OSError as exc:
        raise CliError(f"cannot read {args.plan}: {exc.strerror}") from None
    if args.cancel:
        return run_async(_with_admin(args, lambda admin: _cancel(admin, wanted)))

    async def plan(admin: Admin) -> Plan:
        racks, current = await _read_cluster(admin, {t for t, _ in wanted})
        if missing := sorted(set(wanted) - set(current)):
            raise CliError(f"partition {missing[0][0]}-{missing[0][1]} does not exist")
        if unknown := sorted({b for r in wanted.values() for b in r} - set(racks)):
            raise CliError(f"broker {unknown[0]} is not registered")
        current = {tp: current[tp] for tp in wanted}
        involved = {b for r in (*current.values(), *wanted.values()) for b in r}
        return Plan(current, dict(wanted), tuple(sorted(involved)))

    return _show_and_run(args, plan)


def _check_throttle(args: argparse.Namespace) -> None:
    if args.throttle is not None and (args.throttle < 1 or not args.execute):
        raise CliError("--throttle needs --execute and a rate of at least 1 byte/s")


def _show_and_run(args: argparse.Namespace, make_plan: Callable[[Admin], Awaitable[Plan]]) -> int:
    """Plan, print, and with --execute submit and watch (Ctrl-C: stop watching)."""

    async def show(admin: Admin) -> tuple[Plan, dict[TopicPartition, int]]:
        plan = await make_plan(admin)
        sizes = await _leader_sizes(admin, plan.changes)
        print("\n".join(render_plan(plan, sizes)), flush=True)
        if args.execute and plan.changes:
            await _submit(admin, plan, args.throttle)
        return plan, sizes

    plan, sizes = run_async(_with_admin(args, show))
    if not args.execute or not plan.changes:
        if plan.changes:
            print("(a dry run: --execute runs it)")
        return 0
    saved = _save(plan)
    print(f"submitted; the plan is saved in {saved}", flush=True)
    try:
        return run_async(_with_admin(args, lambda admin: _finish(admin, plan, sizes, args)))
    except KeyboardInterrupt:
        if args.bootstrap_server:
            where = f" --bootstrap-server {args.bootstrap_server}"
        else:
            where = f" --dir {args.dir}" if args.dir else ""
        print(
            "\nstopped watching: the reassignment goes on (`moldau cluster status` shows it); "
            f"to cancel it: moldau cluster reassign{where} --plan {saved} --cancel",
            file=sys.stderr,
        )
        return 130


async def _with_admin(args: argparse.Namespace, work: Callable[[Admin], Awaitable[T]]) -> T:
    from moldau.client.admin import Admin
    from moldau.protocol.errors import KafkaError

    from .cluster import bootstrap_of

    bootstrap = args.bootstrap_server or bootstrap_of(args.dir)
    try:
        async with Admin(bootstrap, request_timeout_ms=args.timeout_ms) as admin:
            return await work(admin)
    except KafkaError as exc:
        raise CliError(str(exc)) from None


# -- reading the cluster -----------------------------------------------------------


async def _read_cluster(
    admin: Admin, topics: Iterable[str] | None
) -> tuple[dict[int, str | None], Targets]:
    """The live brokers' racks and the replicas of every partition (of
    ``topics``, internal ones included: a broker taken out must give up its
    ``__consumer_offsets`` replicas too)."""
    from moldau.protocol.errors import ErrorCode

    description = await admin.describe_cluster()
    racks = {b.node_id: b.rack for b in description.brokers}
    wanted = None if topics is None else sorted(set(topics))
    meta = await admin.cluster.refresh(wanted)
    current: Targets = {}
    for name, info in meta.topics.items():
        if info.error != ErrorCode.NONE:
            raise CliError(f"topic {name!r}: {info.error.name}")
        for index, partition in info.partitions.items():
            current[(name, index)] = partition.replicas
    return racks, current


async def _leader_sizes(
    admin: Admin, changes: Mapping[TopicPartition, Any]
) -> dict[TopicPartition, int]:
    """Each moving partition's size on its leader (what a new replica copies)."""
    if not changes:
        return {}
    meta = await admin.cluster.refresh(sorted({t for t, _ in changes}))
    leaders = {
        tp: meta.topics[tp[0]].partitions[tp[1]].leader
        for tp in changes
        if tp[0] in meta.topics and tp[1] in meta.topics[tp[0]].partitions
    }
    answers = await admin.describe_log_dirs({b for b in leaders.values() if b >= 0}, changes)
    sizes: dict[TopicPartition, int] = {}
    for tp, leader in leaders.items():
        sizes[tp] = _size_on(answers.get(leader), tp)
    return sizes


def _size_on(answer: Any, tp: TopicPartition) -> int:
    """``tp``'s size in one broker's DescribeLogDirs answer (0 if absent)."""
    if not isinstance(answer, list):  # the broker could not be asked
        return 0
    return max((d.replicas[tp].size for d in answer if tp in d.replicas), default=0)


# -- showing a plan ----------------------------------------------------------------


def render_plan(plan: Plan, sizes: Mapping[TopicPartition, int]) -> list[str]:
    """The moves per partition, then replicas and leaders per broker before
    and after, then the totals."""
    from moldau.cluster.balance import leader_counts, moved_replicas, replica_counts

    from .cluster import table

    changes = plan.changes
    if not changes:
        return ["nothing to move: the replicas are where the plan wants them"]
    rows = [["PARTITION", "REPLICAS", "", "TARGET", "MOVES"]]
    copied = 0
    for (topic, index), (before, after) in changes.items():
        added = [b for b in after if b not in before]
        removed = [b for b in before if b not in after]
        copied += sizes.get((topic, index), 0) * len(added)
        shift = " ".join([*(f"+{b}" for b in added), *(f"-{b}" for b in removed)])
        rows.append([f"{topic}-{index}", _ids(before), "->", _ids(after), shift or "order"])
    lines = table(rows)
    counts = [
        replica_counts(plan.current, plan.brokers),
        replica_counts(plan.target, plan.brokers),
        leader_counts(plan.current, plan.brokers),
        leader_counts(plan.target, plan.brokers),
    ]
    rows = [["BROKER", "REPLICAS", "", "AFTER", "LEADERS", "", "AFTER"]]
    for broker in plan.brokers:
        held, holds, led, leads = (str(c.get(broker, 0)) for c in counts)
        rows.append([str(broker), held, "->", holds, led, "->", leads])
    moves = sum(moved_replicas(*change) for change in changes.values())
    lines += ["", *table(rows), ""]
    lines.append(
        f"{len(changes)} partition{'' if len(changes) == 1 else 's'} change, "
        f"{moves} replica{'' if moves == 1 else 's'} move ({_bytes(copied)} to copy)"
    )
    return lines


def _ids(ids: Iterable[int]) -> str:
    return ",".join(map(str, ids))


def _bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


# -- the reassignment JSON file ----------------------------------------------------


def read_reassignment(text: str) -> Targets:
    """The targets of Kafka's reassignment JSON; CliError saying what is wrong."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise CliError(f"the plan is not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("partitions"), list):
        raise CliError('the plan needs {"version": 1, "partitions": [...]}')
    if document.get("version", 1) != 1:
        raise CliError(f"unsupported plan version {document.get('version')!r} (only 1)")
    targets: Targets = {}
    for entry in document["partitions"]:
        try:
            topic, index, replicas = entry["topic"], entry["partition"], entry["replicas"]
        except (KeyError, TypeError):
            raise CliError(f"each partition needs topic, partition and replicas: {entry}") from None
        if not (
            isinstance(topic, str)
            and type(index) is int
            and isinstance(replicas, list)
            and replicas
            and all(type(b) is int for b in replicas)
        ):
            raise CliError(f"a topic name, a partition number and broker ids: {entry}")
        name = f"{topic}-{index}"
        if len(set(replicas)) != len(replicas):
            raise CliError(f"{name} lists a broker twice: {replicas}")
        if (topic, index) in targets:
            raise CliError(f"{name} is listed twice")
        log_dirs = entry.get("log_dirs")
        if log_dirs is not None and (
            not isinstance(log_dirs, list)
            or len(log_dirs) != len(replicas)
            or any(d != "any" for d in log_dirs)
        ):
            raise CliError(f'{name}: log_dirs other than "any" are not supported')
        targets[(topic, index)] = tuple(replicas)
    if not targets:
        raise CliError("the plan lists no partitions")
    return targets


def reassignment_json(targets: Mapping[TopicPartition, Sequence[int]]) -> dict[str, Any]:
    return {
        "version": 1,
        "partitions": [
            {"topic": t, "partition": p, "replicas": list(r), "log_dirs": ["any"] * len(r)}
            for (t, p), r in sorted(targets.items())
        ],
    }


def _save(plan: Plan) -> Path:
    targets = {tp: after for tp, (_, after) in plan.changes.items()}
    handle, name = tempfile.mkstemp(prefix="moldau-reassignment-", suffix=".json")
    with open(handle, "w") as out:
        json.dump(reassignment_json(targets), out, indent=1)
    return Path(name)


# -- running it --------------------------------------------------------------------


async def _submit(admin: Admin, plan: Plan, throttle: int | None) -> None:
    """Refuse if these partitions are being reassigned; set the throttle;
    submit. Partitions the controller refuses are named and make it fail."""
    changes = plan.changes
    running = await admin.list_partition_reassignments(changes)
    if running:
        (topic, index), *_ = sorted(running)
        raise CliError(
            f"{len(running)} of these partitions are being reassigned already "
            f"(such as {topic}-{index}); wait, or cancel with `moldau cluster reassign --cancel`"
        )
    if throttle is not None:
        await _set_throttle(admin, changes, throttle)
    results = await admin.alter_partition_reassignments(
        {tp: after for tp, (_, after) in changes.items()}
    )
    refused = {tp: e for tp, e in sorted(results.items()) if e is not None}
    for (topic, index), error in refused.items():
        print(f"{topic}-{index}: refused: {error}", file=sys.stderr)
    if refused:
        if throttle is not None:
            await _remove_throttle(admin, changes)
        raise CliError(f"{len(refused)} of {len(changes)} reassignments were refused")


def throttled_replicas(
    changes: Mapping[TopicPartition, tuple[Sequence[int], Sequence[int]]],
) -> dict[str, dict[str, str]]:
    """Per topic, Kafka's ``partition:broker`` lists: the leader side (the
    replicas a moving partition has now) and the follower side (those
    being added)."""
    leader: dict[str, list[str]] = {}
    follower: dict[str, list[str]] = {}
    for (topic, index), (before, after) in sorted(changes.items()):
        leader.setdefault(topic, []).extend(f"{index}:{b}" for b in before)
        follower.setdefault(topic, []).extend(f"{index}:{b}" for b in after if b not in before)
    return {
        topic: {
            LEADER_REPLICAS: ",".join(leader[topic]),
            FOLLOWER_REPLICAS: ",".join(follower[topic]),
        }
        for topic in leader
    }


def _involved(changes: Mapping[TopicPartition, tuple[Sequence[int], Sequence[int]]]) -> set[int]:
    return {b for before, after in changes.values() for b in (*before, *after)}


async def _set_throttle(
    admin: Admin, changes: Mapping[TopicPartition, tuple[Sequence[int], Sequence[int]]], rate: int
) -> None:
    for broker in sorted(_involved(changes)):
        await admin.incremental_alter_broker_configs(broker, dict.fromkeys(RATE_KEYS, str(rate)))
    for topic, configs in throttled_replicas(changes).items():
        await admin.alter_topic_configs(topic, {k: v for k, v in configs.items() if v})
    print(f"throttled to {_bytes(rate)}/s on brokers {_ids(sorted(_involved(changes)))}")


async def _remove_throttle(
    admin: Admin, changes: Mapping[TopicPartition, tuple[Sequence[int], Sequence[int]]]
) -> bool:
    """Delete the throttle configs set on the brokers and topics of
    ``changes`` (only those set: a cancel does not know whether a throttle
    was asked for). False, with a line on stderr for each, when a broker or
    topic could not be cleared."""
    from moldau.client.admin import ConfigResourceType, ConfigSource
    from moldau.protocol.errors import KafkaError

    dynamic = {ConfigSource.DYNAMIC_BROKER_CONFIG, ConfigSource.DYNAMIC_TOPIC_CONFIG}
    brokers = [(ConfigResourceType.BROKER, str(b), RATE_KEYS) for b in sorted(_involved(changes))]
    topics = [
        (ConfigResourceType.TOPIC, t, (LEADER_REPLICAS, FOLLOWER_REPLICAS))
        for t in sorted({t for t, _ in changes})
    ]
    cleared = True
    for kind, name, keys in brokers + topics:
        try:
            entries = await admin.describe_configs(kind, name, keys)
            found = [e.name for e in entries if e.name in keys and e.source in dynamic]
            if found and kind == ConfigResourceType.BROKER:
                await admin.incremental_alter_broker_configs(int(name), {}, found)
            elif found:
                await admin.alter_topic_configs(name, {}, found)
        except KafkaError as exc:
            cleared = False
            where = f"{kind.name.lower()} {name}"
            print(f"cannot remove the throttle of {where}: {exc}", file=sys.stderr)
    return cleared


@dataclass
class Progress:
    """What the progress line shows."""

    done: int
    total: int
    copied: int
    to_copy: int
    elapsed: float

    def line(self) -> str:
        rate = self.copied / self.elapsed if self.elapsed > 0 else 0.0
        left = self.to_copy - self.copied
        eta = "-" if self.done == self.total else ("?" if rate <= 0 else f"{left / rate:.0f}s")
        return (
            f"{self.done}/{self.total} partitions done, {_bytes(self.copied)} of "
            f"{_bytes(self.to_copy)} copied, {_bytes(rate)}/s, ETA {eta}"
        )


async def _progress(
    admin: Admin, plan: Plan, sizes: Mapping[TopicPartition, int], started: float
) -> Progress:
    changes = plan.changes
    running = await admin.list_partition_reassignments(changes)
    new = {tp: [b for b in after if b not in before] for tp, (before, after) in changes.items()}
    answers = await admin.describe_log_dirs({b for bs in new.values() for b in bs}, changes)
    copied = 0
    for tp, brokers in new.items():
        full = sizes.get(tp, 0)
        for broker in brokers:
            copied += min(_size_on(answers.get(broker), tp), full) if tp in running else full
    return Progress(
        done=len(changes) - len(running),
        total=len(changes),
        copied=copied,
        to_copy=sum(sizes.get(tp, 0) * len(bs) for tp, bs in new.items()),
        elapsed=time.monotonic() - started,
    )


async def _finish(
    admin: Admin, plan: Plan, sizes: Mapping[TopicPartition, int], args: argparse.Namespace
) -> int:
    """Watch until every partition is done; then drop the throttle and
    elect the preferred leaders."""
    started = time.monotonic()
    tty = sys.stdout.isatty()
    shown = ""
    while True:
        progress = await _progress(admin, plan, sizes, started)
        line = progress.line()
        if tty:
            print(f"\r{line}\033[K", end="", flush=True)
        elif line.split(",")[0] != shown.split(",")[0]:  # a line per partition done
            print(line, flush=True)
        shown = line
        if progress.done == progress.total:
            break
        await asyncio.sleep(POLL_SECONDS)
    if tty:
        print()
    cleared = True
    if args.throttle is not None:
        cleared = await _remove_throttle(admin, plan.changes)
        print("throttle removed" if cleared else "the throttle is still set (see above)")
    elected = _report_elections(await admin.elect_leaders(0, plan.changes))
    return 1 if elected or not cleared else 0


def _report_elections(outcomes: Mapping[TopicPartition, KafkaError | None]) -> int:
    from moldau.protocol.errors import ErrorCode

    elected = sum(1 for e in outcomes.values() if e is None)
    leading = sum(1 for e in outcomes.values() if e and e.code == ErrorCode.ELECTION_NOT_NEEDED)
    failed = {
        tp: e for tp, e in sorted(outcomes.items()) if e and e.code != ErrorCode.ELECTION_NOT_NEEDED
    }
    print(f"preferred leaders: {elected} elected, {leading} already leading, {len(failed)} failed")
    for (topic, index), error in failed.items():
        print(f"{topic}-{index}: election failed: {error}", file=sys.stderr)
    return 1 if failed else 0


async def _cancel(admin: Admin, wanted: Targets) -> int:
    """Cancel the file's reassignments and remove their throttles."""
    from moldau.protocol.errors import ErrorCode

    results = await admin.alter_partition_reassignments(dict.fromkeys(wanted))
    cancelled = failed = 0
    for (topic, index), error in sorted(results.items()):
        if error is None:
            cancelled += 1
        elif error.code == ErrorCode.NO_REASSIGNMENT_IN_PROGRESS:
            print(f"{topic}-{index}: no reassignment in progress")
        else:
            failed += 1
            print(f"{topic}-{index}: cancel failed: {error}", file=sys.stderr)
    meta = await admin.cluster.refresh(sorted({t for t, _ in wanted}))
    current = {
        tp: meta.topics[tp[0]].partitions[tp[1]].replicas
        for tp in wanted
        if tp[0] in meta.topics and tp[1] in meta.topics[tp[0]].partitions
    }
    cleared = await _remove_throttle(
        admin, {tp: (current.get(tp, ()), after) for tp, after in wanted.items()}
    )
    throttles = "throttles removed" if cleared else "throttles NOT all removed (see above)"
    print(f"{cancelled} reassignment{'' if cancelled == 1 else 's'} cancelled; {throttles}")
    return 1 if failed or not cleared else 0
