"""Failover time of a local moldau cluster: leader kill -9 to the next acknowledged produce.

Used by bench/cluster.py. A paced producer (acks=all, idempotent) sends to a
one-partition topic with three replicas from a thread of the harness, so the
kill and the acknowledgements are timed on one clock. For each kill the
harness reads the partition's leader from ZooKeeper (the controller's own
record, never a broker's possibly stale metadata cache), notes the time,
SIGKILLs that broker and waits for the first acknowledgement of a record
*queued after the kill*: the dead leader cannot have acknowledged such a
record, so its acknowledgement came through the new leader. Then the killed
broker is started again, and the next kill waits until it is back in the ISR
and the producer has been acknowledged since.

What the figure contains: the ZooKeeper session timeout of the dead broker
(the only way a kill -9 is noticed) and ZooKeeper's expiry tick, the
controller's election (after a controller election of its own when the
leader was the controller too) and its LeaderAndIsr/UpdateMetadata
requests, and librdkafka's own delay in moving to the new leader. With its
defaults (2.16) that delay is one to two seconds: it asks again for the
metadata of a topic whose leader is down once a second (its topic scan),
and when the answer naming the new leader also no longer lists the dead
broker (brokers list only live brokers, in Kafka too), the dead broker's
thread, being decommissioned, takes the partition back from the new leader
("Reverting from preferred replica ... to leader -1") and the move waits
for the next scan. The producer here refreshes metadata every
``METADATA_REFRESH_MS`` (a client setting, not a broker one), which bounds
both waits by that period. A kazoo watch on the partition-state znode
splits the figure in two: kill to new leader written (the brokers' part),
and from there to the acknowledgement (the client's part).
"""

from __future__ import annotations

import logging
import signal
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kazoo.client import KazooClient

from load import PRODUCER_CONFIG
from moldau.cluster.local import LocalCluster, LocalClusterError, wait_until
from moldau.cluster.zk import paths as zp

#: Records per second the failover producer sends.
RATE = 1000
RECORD_SIZE = 100
_STAMP = struct.Struct(">d")  # time.monotonic() when the record was queued
#: librdkafka's periodic metadata refresh (default 5 minutes), which its
#: docs give for discovering partition leader changes proactively; a user who
#: wants a failover noticed within a second sets it low. Without it
#: librdkafka asks about a partition whose leader is down only on its 1 s
#: topic scan, and loses the move to the new leader once more when the
#: answer that names it also drops the dead broker (see the module doc).
METADATA_REFRESH_MS = 500


def producer_config(metadata_refresh_ms: int = METADATA_REFRESH_MS) -> dict[str, Any]:
    """The failover producer's settings: librdkafka defaults and these."""
    return {
        **PRODUCER_CONFIG,
        "acks": "all",
        "enable.idempotence": True,
        "topic.metadata.refresh.interval.ms": metadata_refresh_ms,
    }


class AckClock:
    """A paced acks=all idempotent producer on partition 0, in a thread.

    ``arm(t)`` starts watching for the first acknowledgement of a record
    queued after ``t``; ``wait_armed`` returns when it came. Delivery reports
    run in the producer's thread (its ``poll``), which wakes the waiter
    through a condition: nothing here polls on a timer.
    """

    def __init__(
        self, bootstrap: str, topic: str, config: dict[str, Any], rate: int = RATE
    ) -> None:
        self.topic = topic
        self.rate = rate
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                **config,
                # librdkafka's connection-refused lines go to the harness log.
                "logger": logging.getLogger("failover.librdkafka"),
            }
        )
        self.errors: list[str] = []
        self._since: float | None = None
        self._first: float | None = None
        self._condition = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ack-clock", daemon=True)
        self._padding = b"\x00" * (RECORD_SIZE - _STAMP.size)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)
        self.producer.flush(timeout)

    def _on_delivery(self, err: KafkaError | None, message: Message) -> None:
        now = time.monotonic()
        with self._condition:
            if err is not None:
                self.errors.append(str(err))
                return
            (queued,) = _STAMP.unpack_from(message.value() or b"")
            if self._first is None and self._since is not None and queued > self._since:
                self._first = now
                self._condition.notify_all()

    def _run(self) -> None:
        start = time.monotonic()
        sent = 0
        while not self._stopping.is_set():
            due = start + sent / self.rate
            now = time.monotonic()
            if now < due:
                self.producer.poll(due - now)
                continue
            try:
                self.producer.produce(
                    self.topic,
                    _STAMP.pack(time.monotonic()) + self._padding,
                    partition=0,
                    on_delivery=self._on_delivery,
                )
            except BufferError:  # librdkafka's queue is full: let deliveries drain it
                self.producer.poll(0.01)
                continue
            sent += 1
            self.producer.poll(0)

    def arm(self, since: float) -> None:
        with self._condition:
            self._since, self._first = since, None

    def wait_armed(self, timeout: float) -> float | None:
        """When the first record queued after the armed time was acknowledged;
        None if none was within ``timeout``."""
        with self._condition:
            self._condition.wait_for(lambda: self._first is not None, timeout)
            return self._first


@dataclass(frozen=True)
class Kill:
    """One leader kill: whom, whether it was the controller too, and how long
    until the controller's new leader was in ZooKeeper and until the next
    acknowledgement (None: not within the wait)."""

    broker: int
    was_controller: bool
    new_leader: int | None
    elected_seconds: float | None
    seconds: float | None

    def describe(self) -> str:
        role = " (also the controller)" if self.was_controller else ""
        elected = "" if self.elected_seconds is None else f" in {self.elected_seconds:.2f} s"
        acked = "none" if self.seconds is None else f"{self.seconds:.2f} s"
        return f"leader {self.broker}{role} -> {self.new_leader}{elected}; next ack: {acked}"


class PartitionWatch:
    """The partition's state as the controller writes it in ZooKeeper, and when
    each change was seen (a kazoo data watch, on this process's clock)."""

    def __init__(self, cluster: LocalCluster, topic: str) -> None:
        self.zk = KazooClient(hosts=cluster.zookeeper_connect, timeout=10.0)
        self.zk.start(timeout=30)
        self._lock = threading.Lock()
        self._changes: list[tuple[float, zp.PartitionState]] = []
        self.zk.DataWatch(zp.partition_state_path(topic, 0), self._changed)

    def _changed(self, data: bytes | None, _stat: object) -> None:
        if data is not None:
            state = zp.decode_partition_state(data)
            with self._lock:
                self._changes.append((time.monotonic(), state))

    def state(self) -> zp.PartitionState | None:
        with self._lock:
            return self._changes[-1][1] if self._changes else None

    def with_isr(self, brokers: set[int]) -> zp.PartitionState | None:
        """The state if its ISR is exactly ``brokers``, else None."""
        state = self.state()
        return state if state is not None and set(state.isr) == brokers else None

    def elected(self, since: float, old_leader: int) -> tuple[float, int] | None:
        """When a leader other than ``old_leader`` was first seen after ``since``, and whom."""
        with self._lock:
            for seen, state in self._changes:
                if seen > since and state.leader not in (old_leader, zp.NO_LEADER):
                    return seen, state.leader
        return None

    def close(self) -> None:
        self.zk.stop()
        self.zk.close()


def create_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})
    admin.create_topics([new], operation_timeout=timeout)[topic].result(timeout)


class _Failovers:
    """The cluster, the watched partition and the producer of one failover measurement."""

    def __init__(
        self, cluster: LocalCluster, settle_timeout: float, producer: dict[str, Any]
    ) -> None:
        self.cluster = cluster
        self.settle_timeout = settle_timeout
        self.everyone = set(cluster.broker_ids)
        topic = f"bench-failover-{uuid.uuid4().hex[:8]}"
        create_topic(cluster.bootstrap_servers, topic)
        self.watch = PartitionWatch(cluster, topic)
        self.clock = AckClock(cluster.bootstrap_servers, topic, producer)

    def settle(self) -> zp.PartitionState:
        """Until every replica is in the ISR and a produce was acknowledged since."""
        full = wait_until(
            lambda: self.watch.with_isr(self.everyone), self.settle_timeout, "a full ISR"
        )
        self.clock.arm(time.monotonic())
        if self.clock.wait_armed(self.settle_timeout) is None:
            raise TimeoutError("no acknowledgement with the full ISR")
        return self.watch.state() or full

    def kill_leader(self) -> Kill:
        """SIGKILL the leader, time the failover, start the broker again."""
        leader = self.settle().leader
        was_controller = self.cluster.controller_id() == leader
        killed_at = time.monotonic()
        self.clock.arm(killed_at)
        self.cluster.kill(leader, signal.SIGKILL)
        acked_at = self.clock.wait_armed(self.cluster.session_timeout + self.settle_timeout)
        elected = self.watch.elected(killed_at, leader)
        self.cluster.start_broker(leader, timeout=self.settle_timeout)
        return Kill(
            broker=leader,
            was_controller=was_controller,
            new_leader=None if elected is None else elected[1],
            elected_seconds=None if elected is None else elected[0] - killed_at,
            seconds=None if acked_at is None else acked_at - killed_at,
        )

    def close(self) -> None:
        try:
            self.clock.stop()
        finally:
            self.watch.close()


def measure(
    cluster: LocalCluster,
    kills: int,
    say: Callable[[str], None],
    settle_timeout: float = 90.0,
    metadata_refresh_ms: int = METADATA_REFRESH_MS,
) -> tuple[list[Kill], list[str]]:
    """Kill the leader ``kills`` times; the kills and any problems (one line each)."""
    failovers = _Failovers(cluster, settle_timeout, producer_config(metadata_refresh_ms))
    results: list[Kill] = []
    problems: list[str] = []
    try:
        failovers.clock.start()
        for n in range(kills):
            kill = failovers.kill_leader()
            results.append(kill)
            say(f"  kill {n + 1}/{kills}: {kill.describe()}")
            if kill.seconds is None:
                problems.append(f"kill {n + 1}: no acknowledgement after killing {kill.broker}")
        failovers.settle()
    except (TimeoutError, LocalClusterError) as exc:
        problems.append(f"failover stopped after {len(results)} kills: {exc}")
    finally:
        failovers.close()
    errors = failovers.clock.errors
    if errors:
        problems.append(f"failover producer: {len(errors)} failed deliveries (first: {errors[0]})")
    return results, problems
