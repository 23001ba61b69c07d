"""The broker process stalls or dies under load; clients live through it.

SIGSTOP freezes the broker the way a long GC pause or a swapped-out host
would; kill -9 and a restart on the same port and data directory is a crash
and a supervisor bringing it back. Clients keep running throughout. What
must hold: every record acknowledged is stored at the offset its
acknowledgement named, a consumer that kept reading saw each partition's
offsets in order without gaps or repeats, and requests sent to a frozen
broker are answered, in order, once it runs again.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer
from confluent_kafka import TopicPartition as TP

from conftest import BrokerProcess, RawConnection, confluent_read_all, create_topic, wait_for

#: Reconnect fast: the broker comes back on the same port within a second.
FAST_RECONNECT = {"reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 200}


class ProducerThread:
    """Produces numbered records until stopped; records every acknowledgement."""

    def __init__(self, bootstrap: str, topic: str, **config: Any) -> None:
        self.topic = topic
        self.acked: dict[bytes, tuple[int, int]] = {}
        self.errors: list[KafkaError] = []
        #: What librdkafka reports about the connection (timeouts, disconnects).
        self.client_errors: list[KafkaError] = []
        self._stop = threading.Event()
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": False,
                "linger.ms": 2,
                "error_cb": self.client_errors.append,
                **FAST_RECONNECT,
                **config,
            }
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _report(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.acked[message.value()] = (message.partition(), message.offset())
        else:
            self.errors.append(error)

    def _run(self) -> None:
        sequence = 0
        while not self._stop.is_set():
            if len(self._producer) >= 500:  # a bounded number in flight
                self._producer.poll(0.01)
                continue
            value = b"record-%d" % sequence
            self._producer.produce(
                self.topic, value, b"k%d" % (sequence % 13), on_delivery=self._report
            )
            sequence += 1
            self._producer.poll(0)
        self._producer.flush(30)

    @contextmanager
    def running(self) -> Iterator[ProducerThread]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(40)
            assert not self._thread.is_alive(), "producer did not finish"


class ConsumerThread:
    """Reads every partition from the beginning until stopped."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
        self.errors: list[KafkaError] = []
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{topic}-follower",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 100,
                **FAST_RECONNECT,
            }
        )
        self._consumer.assign([TP(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for message in self._consumer.consume(500, timeout=0.1):
                    if message.error() is not None:
                        self.errors.append(message.error())
                        continue
                    self.got[message.partition()].append((message.offset(), message.value()))
        finally:
            self._consumer.close()

    def count(self) -> int:
        return sum(len(records) for records in self.got.values())

    @contextmanager
    def running(self) -> Iterator[ConsumerThread]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(20)
            assert not self._thread.is_alive(), "consumer did not finish"


def assert_acknowledged_where_acknowledged(
    acked: dict[bytes, tuple[int, int]], stored: dict[tuple[int, int], bytes]
) -> None:
    misplaced = {v: at for v, at in acked.items() if stored.get(at) != v}
    assert not misplaced, f"{len(misplaced)} acknowledged records lost or moved"


def test_produce_and_consume_through_kill_9_and_restart(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "crashing", 3)
    producer = ProducerThread(broker.bootstrap, "crashing", **{"message.timeout.ms": 30000})
    consumer = ConsumerThread(broker.bootstrap, "crashing", 3)
    with producer.running(), consumer.running():
        wait_for(lambda: len(producer.acked) >= 2000, 30, what="acks before the crash")
        wait_for(lambda: consumer.count() >= 1000, 30, what="records read before the crash")
        broker.kill()
        before = len(producer.acked)
        broker.start()
        wait_for(lambda: len(producer.acked) >= before + 2000, 30, what="acks after restart")
    assert producer.errors == [], "librdkafka retries must deliver across a restart"

    stored = confluent_read_all(broker.bootstrap, "crashing")
    at = {(r.partition, r.offset): r.value for r in stored}
    assert_acknowledged_where_acknowledged(producer.acked, at)
    for partition, records in consumer.got.items():
        offsets = [offset for offset, _ in records]
        assert offsets == list(range(len(offsets))), f"consumer skipped or repeated in {partition}"
        assert all(at[(partition, offset)] == value for offset, value in records)


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_produce_through_a_frozen_broker(broker: BrokerProcess, idempotent: bool) -> None:
    """Requests time out while the broker is stopped and are retried after it resumes.

    Plain retries may store a record twice, never misplace an acknowledged
    one; an idempotent producer's retries are stored once.
    """
    create_topic(broker.bootstrap, "frozen", 2)
    producer = ProducerThread(
        broker.bootstrap,
        "frozen",
        **{
            "enable.idempotence": idempotent,
            "request.timeout.ms": 500,
            "socket.timeout.ms": 500,
            "message.timeout.ms": 30000,
        },
    )
    with producer.running():
        wait_for(lambda: len(producer.acked) >= 1000, 30, what="acks before the freeze")
        broker.pause()
        try:
            wait_for(lambda: producer.client_errors, 10, what="requests to time out")
            frozen_at = len(producer.acked)
        finally:
            broker.resume()
        wait_for(lambda: len(producer.acked) >= frozen_at + 1000, 30, what="acks after the thaw")
    assert producer.errors == []
    stored = confluent_read_all(broker.bootstrap, "frozen")
    assert_acknowledged_where_acknowledged(
        producer.acked, {(r.partition, r.offset): r.value for r in stored}
    )
    if idempotent:
        values = [r.value for r in stored]
        assert len(values) == len(set(values)), "a retried record was stored twice"


def test_requests_sent_to_a_frozen_broker_are_answered_in_order(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "thawed", 1)
    versions = {"client_software_name": "t", "client_software_version": "1"}
    broker.pause()
    try:
        with RawConnection(broker.port, timeout=15) as conn:  # the kernel accepts meanwhile
            sent = [
                (18, 3, conn.send(18, 3, versions)),
                (3, 1, conn.send(3, 1, {"topics": [{"name": "thawed"}]})),
                (18, 0, conn.send(18, 0, {})),
            ]
            readable, _, _ = select.select([conn.sock], [], [], 0.3)
            assert not readable, "a stopped broker answered"
            broker.resume()
            started = time.monotonic()
            answers = [conn.receive(key, version, cid) for key, version, cid in sent]
            assert time.monotonic() - started < 2.0
    finally:
        broker.resume()
    assert answers[0]["error_code"] == 0
    assert [t["name"] for t in answers[1]["topics"]] == ["thawed"]
    assert answers[2]["error_code"] == 0
