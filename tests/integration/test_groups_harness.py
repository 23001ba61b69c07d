"""Group members in their own processes, for the real-client group tests.

No tests live here. Run as a script, this module is one consumer-group member
using confluent-kafka, kafka-python or aiokafka: it subscribes, processes each
record by reporting it and then committing the offset after it (synchronously,
so that a record is reported at most once by a member that stays alive; the
rest of a batch is dropped once its partition is revoked or a commit fails), and
reports every assignment and revocation as one JSON line on stdout. It obeys
``stall MS`` (stop polling for a while, heartbeats continue in the
background) and ``quit`` (close cleanly, leaving the group) on stdin.

Imported by tests, :class:`Member` starts such a process, collects its
reports in a thread, and can kill -9 it: a member in its own process can die
without a goodbye, which is what session timeouts are for.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIENTS = ("confluent", "kafka-python", "aiokafka")
SCRIPT = str(Path(__file__).resolve())
#: How long a kafka-python member's poll waits. kafka-python 3.0.12 drops a
#: join that finishes after its poll ran out (see KAFKA_PYTHON_RERUNS in
#: conftest), and a rejoin waits for the other members' next heartbeat: a
#: poll longer than that rejoin (heartbeats here are 300-500 ms) rarely runs
#: out in the middle of one, where 50 ms always did. Records still arrive at
#: once; only a quit waits up to this long.
KAFKA_PYTHON_POLL_MS = 1000


# --- the member process --------------------------------------------------------


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "time": time.time(), **fields}), flush=True)


def _commands() -> queue.Queue[str]:
    """Lines from stdin, read in a thread so that the poll loop never blocks on them."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            lines.put(line.strip())
        lines.put("quit")

    threading.Thread(target=read, daemon=True).start()
    return lines


def _next_command(lines: queue.Queue[str]) -> tuple[str, int]:
    try:
        words = lines.get_nowait().split()
    except queue.Empty:
        return "", 0
    return words[0], int(words[1]) if len(words) > 1 else 0


def _run_confluent(args: argparse.Namespace, lines: queue.Queue[str]) -> None:
    from confluent_kafka import Consumer, TopicPartition

    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "client.id": args.name,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": args.session_ms,
        "heartbeat.interval.ms": args.heartbeat_ms,
        "max.poll.interval.ms": args.max_poll_ms,
        "partition.assignment.strategy": args.strategy,
        "topic.metadata.refresh.interval.ms": 1000,
    }
    if args.instance_id:
        config["group.instance.id"] = args.instance_id
    consumer = Consumer(config)

    def assigned(c: Any, partitions: list[Any]) -> None:
        _emit("assigned", partitions=sorted(p.partition for p in partitions), generation=None)

    def revoked(c: Any, partitions: list[Any]) -> None:
        _emit("revoked", partitions=sorted(p.partition for p in partitions), generation=None)

    consumer.subscribe([args.topic], on_assign=assigned, on_revoke=revoked)
    _emit("started")
    try:
        while True:
            command, value = _next_command(lines)
            if command == "quit":
                _emit("closing")
                break
            if command == "stall":
                _emit("stalled")
                time.sleep(value / 1000)
            message = consumer.poll(0.05)
            if message is None:
                continue
            if message.error() is not None:
                _emit("error", error=str(message.error()))
                continue
            _emit("record", partition=message.partition(), offset=message.offset())
            tp = TopicPartition(args.topic, message.partition(), message.offset() + 1)
            try:
                consumer.commit(offsets=[tp], asynchronous=False)
            except Exception as exc:
                _emit("commit_failed", partition=message.partition(), error=str(exc))
    finally:
        consumer.close()


def _run_kafka_python(args: argparse.Namespace, lines: queue.Queue[str]) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.structs import OffsetAndMetadata

    assignors = {"range": RangePartitionAssignor, "cooperative-sticky": CooperativeStickyAssignor}

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=args.name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=args.session_ms,
        heartbeat_interval_ms=args.heartbeat_ms,
        max_poll_interval_ms=args.max_poll_ms,
        group_instance_id=args.instance_id or None,
        metadata_max_age_ms=1000,
        partition_assignment_strategy=[assignors[args.strategy]],
        **_api_version(args),
    )

    def generation() -> int:
        return int(consumer._coordinator.group_metadata().generation_id)

    mine: set[int] = set()

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
            parts = sorted(p.partition for p in revoked)
            mine.difference_update(parts)
            _emit("revoked", partitions=parts, generation=None)

        def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
            parts = sorted(p.partition for p in assigned)
            mine.update(parts)
            _emit("assigned", partitions=parts, generation=generation())

    consumer.subscribe(topics=[args.topic], listener=Listener())
    _emit("started")
    try:
        while True:
            command, value = _next_command(lines)
            if command == "quit":
                _emit("closing")
                break
            if command == "stall":
                _emit("stalled")
                time.sleep(value / 1000)
            for tp, records in consumer.poll(timeout_ms=KAFKA_PYTHON_POLL_MS).items():
                for record in records:
                    if tp.partition not in mine:
                        break  # revoked while this batch was being processed
                    _emit("record", partition=tp.partition, offset=record.offset)
                    try:
                        consumer.commit(
                            {
                                TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(
                                    record.offset + 1, "", -1
                                )
                            }
                        )
                    except Exception as exc:
                        _emit("commit_failed", partition=tp.partition, error=str(exc))
                        break
    finally:
        consumer.close()


def _api_version(args: argparse.Namespace) -> dict[str, Any]:
    """kafka-python's ``api_version``: an old one makes it speak old request versions."""
    if not args.api_version:
        return {}
    return {"api_version": tuple(int(x) for x in args.api_version.split("."))}


def _run_aiokafka(args: argparse.Namespace, lines: queue.Queue[str]) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

    async def run() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=args.bootstrap,
            group_id=args.group,
            client_id=args.name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=args.session_ms,
            heartbeat_interval_ms=args.heartbeat_ms,
            max_poll_interval_ms=args.max_poll_ms,
            rebalance_timeout_ms=args.max_poll_ms,
            group_instance_id=args.instance_id or None,
            metadata_max_age_ms=1000,
        )

        def generation() -> int:
            return int(consumer._coordinator.generation)

        mine: set[int] = set()

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
                parts = sorted(p.partition for p in revoked)
                mine.difference_update(parts)
                _emit("revoked", partitions=parts, generation=None)

            async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
                parts = sorted(p.partition for p in assigned)
                mine.update(parts)
                _emit("assigned", partitions=parts, generation=generation())

        await consumer.start()
        consumer.subscribe([args.topic], listener=Listener())
        _emit("started")
        try:
            while True:
                command, value = _next_command(lines)
                if command == "quit":
                    _emit("closing")
                    break
                if command == "stall":
                    _emit("stalled")
                    await asyncio.sleep(value / 1000)
                batches = await consumer.getmany(timeout_ms=50)
                for tp, records in batches.items():
                    for record in records:
                        # The group works while a commit is awaited: the
                        # rest of a batch may no longer be ours.
                        if tp.partition not in mine:
                            break
                        _emit("record", partition=tp.partition, offset=record.offset)
                        try:
                            await consumer.commit(
                                {TopicPartition(tp.topic, tp.partition): record.offset + 1}
                            )
                        except Exception as exc:
                            _emit("commit_failed", partition=tp.partition, error=str(exc))
                            break
        finally:
            await consumer.stop()

    asyncio.run(run())


def member_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--instance-id", default="")
    parser.add_argument("--session-ms", type=int, default=6000)
    parser.add_argument("--heartbeat-ms", type=int, default=500)
    parser.add_argument("--max-poll-ms", type=int, default=30000)
    parser.add_argument("--strategy", default="range")
    parser.add_argument("--api-version", default="", help="kafka-python only, e.g. 0.10.1")
    args = parser.parse_args(argv)
    if os.environ.get("GROUP_MEMBER_LOG"):  # the client's own log, when debugging a test
        import logging

        path = f"{os.environ['GROUP_MEMBER_LOG']}.{args.name}"
        logging.basicConfig(
            filename=path,
            level=logging.DEBUG,
            format="%(asctime)s %(threadName)s %(levelname)s %(name)s: %(message)s",
        )
    runners = {
        "confluent": _run_confluent,
        "kafka-python": _run_kafka_python,
        "aiokafka": _run_aiokafka,
    }
    runners[args.client](args, _commands())
    _emit("closed")


# --- the test side -------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    member: str
    event: str
    time: float
    partitions: tuple[int, ...] = ()
    partition: int = -1
    offset: int = -1
    generation: int | None = None
    error: str = ""


class Member:
    """One member process and what it has reported so far."""

    def __init__(
        self, client: str, bootstrap: str, group: str, topic: str, name: str, **options: Any
    ) -> None:
        self.name = name
        self.client = client
        self._lock = threading.Lock()
        self.events: list[Event] = []
        self.dead_at: float | None = None
        command = [
            sys.executable,
            SCRIPT,
            client,
            "--bootstrap",
            bootstrap,
            "--group",
            group,
            "--topic",
            topic,
            "--name",
            name,
        ]
        for key, value in options.items():
            command += [f"--{key.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            event = Event(
                member=self.name,
                event=raw["event"],
                time=raw["time"],
                partitions=tuple(raw.get("partitions", ())),
                partition=raw.get("partition", -1),
                offset=raw.get("offset", -1),
                generation=raw.get("generation"),
                error=raw.get("error", ""),
            )
            with self._lock:
                self.events.append(event)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def owned(self) -> set[int]:
        """The partitions this member holds now, by its own reports."""
        owned: set[int] = set()
        for event in self.snapshot():
            if event.event == "assigned":
                owned |= set(event.partitions)
            elif event.event == "revoked":
                owned -= set(event.partitions)
            elif event.event == "closing":
                return set()
        return owned if self.dead_at is None else set()

    def story(self) -> list[tuple[str, tuple[int, ...], str]]:
        """What it reported besides records: for failure messages."""
        return [(e.event, e.partitions, e.error) for e in self.snapshot() if e.event != "record"]

    def count(self, kind: str) -> int:
        return sum(1 for e in self.snapshot() if e.event == kind)

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        """kill -9: no LeaveGroup, no last commit."""
        self.process.kill()
        self.process.wait(10)
        self.dead_at = time.time()

    def quit(self, timeout: float = 15.0) -> None:
        """Close cleanly (the consumer leaves the group) and wait for the exit."""
        if self.process.poll() is None:
            self.send("quit")
            self.process.wait(timeout)
        self._reader.join(timeout)
        self.dead_at = self.dead_at or time.time()

    def stop(self) -> None:
        """For finally blocks: kill the process if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.dead_at = self.dead_at or time.time()


def stop_all(members: Iterable[Member]) -> None:
    for member in members:
        member.stop()


def ownership(members: Iterable[Member]) -> dict[int, list[str]]:
    """partition -> the live members that say they own it."""
    owners: dict[int, list[str]] = {}
    for member in members:
        for partition in member.owned():
            owners.setdefault(partition, []).append(member.name)
    return owners


def balanced(members: list[Member], partitions: int) -> Callable[[], bool]:
    """A condition: every partition has exactly one live owner, and the live
    members' shares differ by at most one."""

    def check() -> bool:
        live = [m for m in members if m.dead_at is None]
        owners = ownership(live)
        if sorted(owners) != list(range(partitions)):
            return False
        if any(len(names) != 1 for names in owners.values()):
            return False
        shares = [len(m.owned()) for m in live]
        return max(shares) - min(shares) <= 1

    return check


def assert_one_owner_at_a_time(members: Sequence[Member]) -> None:
    """From the members' reports: no partition was ever held by two members at once.

    A member holds a partition from its assignment until its revocation, its
    decision to close (it processes nothing after), its death (kill -9) or
    now. Reports of different processes are compared by wall-clock time on
    the same machine.
    """
    held: dict[int, list[tuple[float, float, str]]] = {}
    now = time.time()
    for member in members:
        since: dict[int, float] = {}
        for event in member.snapshot():
            if event.event == "assigned":
                for p in event.partitions:
                    since.setdefault(p, event.time)
            elif event.event == "revoked":
                for p in event.partitions:
                    if p in since:
                        held.setdefault(p, []).append((since.pop(p), event.time, member.name))
            elif event.event == "closing":
                # What a closing consumer is told after this (aiokafka may
                # finish a join while it stops) it no longer acts on.
                for p, start in since.items():
                    held.setdefault(p, []).append((start, event.time, member.name))
                since.clear()
                break
        for p, start in since.items():
            held.setdefault(p, []).append((start, member.dead_at or now, member.name))
    for partition, spans in held.items():
        spans.sort()
        for (_, end, first), (start, _, second) in itertools.pairwise(spans):
            if start < end:
                story = [
                    (m.name, e.event, e.partitions, round(e.time % 100, 3))
                    for m in members
                    if m.name in (first, second)
                    for e in m.snapshot()
                    if e.event not in ("record", "commit_failed")
                ]
                raise AssertionError(
                    f"partition {partition} held by {first} and {second} at once: {story}"
                )


def processed(members: Iterable[Member]) -> list[Event]:
    return [e for m in members for e in m.snapshot() if e.event == "record"]


if __name__ == "__main__":
    member_main()
