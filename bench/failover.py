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
(the only way a kill -9 is noticed), the controller's election and its
LeaderAndIsr/UpdateMetadata requests, and librdkafka's own metadata refresh
backoff (`retry.backoff.ms` 100 ms doubling up to `retry.backoff.max.ms`
1 s, its defaults) before it sends to the new leader.
"""

from __future__ import annotations

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
from kazoo.exceptions import NoNodeError

from load import PRODUCER_CONFIG
from moldau.cluster.local import LocalCluster, wait_until
from moldau.cluster.zk import paths as zp

#: Records per second the failover producer sends.
RATE = 1000
RECORD_SIZE = 100
_STAMP = struct.Struct(">d")  # time.monotonic() when the record was queued
FAILOVER_PRODUCER_CONFIG: dict[str, Any] = {
    **PRODUCER_CONFIG,
    "acks": "all",
    "enable.idempotence": True,
}


class AckClock:
    """A paced acks=all idempotent producer on partition 0, in a thread.

    ``arm(t)`` starts watching for the first acknowledgement of a record
    queued after ``t``; ``wait_armed`` returns when it came. Delivery reports
    run in the producer's thread (its ``poll``), which wakes the waiter
    through a condition: nothing here polls on a timer.
    """

    def __init__(self, bootstrap: str, topic: str, rate: int = RATE) -> None:
        self.topic = topic
        self.rate = rate
        self.producer = Producer({"bootstrap.servers": bootstrap, **FAILOVER_PRODUCER_CONFIG})
        self.acked = 0
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
            self.acked += 1
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
    """One leader kill: whom, whether it was the controller too, and the failover time."""

    broker: int
    was_controller: bool
    seconds: float | None  # None: no acknowledgement within the wait
    new_leader: int | None


class PartitionWatch:
    """The partition's state as the controller wrote it in ZooKeeper."""

    def __init__(self, cluster: LocalCluster, topic: str) -> None:
        self.path = zp.partition_state_path(topic, 0)
        self.zk = KazooClient(hosts=cluster.zookeeper_connect, timeout=10.0)
        self.zk.start(timeout=30)

    def state(self) -> zp.PartitionState | None:
        try:
            data, _ = self.zk.get(self.path)
        except NoNodeError:
            return None
        return zp.decode_partition_state(data)

    def with_isr(self, brokers: set[int]) -> zp.PartitionState | None:
        """The state if its ISR is exactly ``brokers``, else None."""
        state = self.state()
        return state if state is not None and set(state.isr) == brokers else None

    def close(self) -> None:
        self.zk.stop()
        self.zk.close()


def create_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})
    admin.create_topics([new], operation_timeout=timeout)[topic].result(timeout)


def measure(
    cluster: LocalCluster,
    kills: int,
    say: Callable[[str], None],
    settle_timeout: float = 90.0,
) -> tuple[list[Kill], list[str]]:
    """Kill the leader ``kills`` times; the kills and any problems (one line each)."""
    topic = f"bench-failover-{uuid.uuid4().hex[:8]}"
    create_topic(cluster.bootstrap_servers, topic)
    watch = PartitionWatch(cluster, topic)
    clock = AckClock(cluster.bootstrap_servers, topic)
    everyone = set(cluster.broker_ids)
    results: list[Kill] = []
    problems: list[str] = []
    try:
        clock.start()
        for n in range(kills):
            # Steady state first: every replica in the ISR and acks flowing.
            full = wait_until(lambda: watch.with_isr(everyone), settle_timeout, "a full ISR")
            clock.arm(time.monotonic())
            if clock.wait_armed(settle_timeout) is None:
                problems.append(f"kill {n + 1}: no acknowledgement before the kill")
                break
            leader = (watch.state() or full).leader
            was_controller = cluster.controller_id() == leader
            killed_at = time.monotonic()
            clock.arm(killed_at)
            cluster.kill(leader, signal.SIGKILL)
            acked_at = clock.wait_armed(cluster.session_timeout + settle_timeout)
            seconds = None if acked_at is None else acked_at - killed_at
            after = watch.state()
            new_leader = after.leader if after is not None else None
            results.append(Kill(leader, was_controller, seconds, new_leader))
            role = " (also the controller)" if was_controller else ""
            shown = "no acknowledgement" if seconds is None else f"{seconds:.2f} s"
            say(f"  kill {n + 1}/{kills}: leader {leader}{role} -> {new_leader}: {shown}")
            if seconds is None:
                problems.append(f"kill {n + 1}: no acknowledgement after killing {leader}")
            cluster.start_broker(leader, timeout=settle_timeout)
        wait_until(lambda: watch.with_isr(everyone), settle_timeout, "a full ISR")
    finally:
        clock.stop()
        watch.close()
    if clock.errors:
        problems.append(
            f"failover producer: {len(clock.errors)} failed deliveries (first: {clock.errors[0]})"
        )
    return results, problems
