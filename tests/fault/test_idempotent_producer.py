"""Idempotent producers through broker crashes and freezes: exactly once per record.

A producer thread sends a numbered stream round-robin over three partitions
with confluent-kafka (``enable.idempotence``) or kafka-python
(``enable_idempotence``). Meanwhile the broker is killed with SIGKILL and
restarted on the same port and data directory, or frozen with SIGSTOP until
the client's requests time out and then let go. Either way the client
resends batches the broker may already have written; the broker must
recognise them by producer id, epoch and sequence (after a crash, from the
producer state it rebuilt), answer with the original offsets and not write
them again.

Afterwards, read from the beginning: every acknowledged record is there
exactly once, nothing is stored twice, and each partition holds its records
in the order they were sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from kafka import KafkaProducer

from conftest import BrokerProcess, RawConnection, confluent_read_all, create_topic, wait_for
from moldau.protocol.records import Record, build_batch

PRODUCE, INIT_PRODUCER_ID = 0, 22
OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH = 45, 47
PARTITIONS = 3
IN_FLIGHT = 400
#: Short client timers: the broker is back on the same port within a second,
#: and a frozen broker must make requests time out quickly.
REQUEST_TIMEOUT_MS = 1000


class NumberedStream:
    """Sends 0, 1, 2... (record n to partition n % 3) until stopped; keeps what was acked.

    ``timeouts`` counts what the client reported about requests that timed
    out or connections that broke, so a test can wait until it happened.
    """

    def __init__(self) -> None:
        self.acked: set[int] = set()
        self.failed: list[Any] = []
        self.timeouts: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        #: Set while the stream holds off sending (confluent-kafka's only).
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    @contextmanager
    def running(self) -> Iterator[NumberedStream]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(90)
            assert not self._thread.is_alive(), "the producer did not finish"

    def acked_at_least(self, count: int) -> Callable[[], bool]:
        return lambda: len(self.acked) >= count

    def settled(self) -> bool:
        """Every record sent so far is acknowledged or failed."""
        return self.sent == len(self.acked) + len(self.failed)

    def pause(self) -> None:
        self._idle.set()

    def carry_on(self) -> None:
        self._idle.clear()


def value_of(number: int) -> bytes:
    return b"%09d" % number


class ConfluentStream(NumberedStream):
    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__()
        self.topic = topic
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "linger.ms": 2,
                "request.timeout.ms": REQUEST_TIMEOUT_MS,
                "socket.timeout.ms": REQUEST_TIMEOUT_MS,
                "message.timeout.ms": 60000,
                "reconnect.backoff.ms": 20,
                "reconnect.backoff.max.ms": 200,
                "error_cb": self._client_error,
            }
        )

    def _client_error(self, error: KafkaError) -> None:
        if error.fatal():
            self.failed.append(error)
        self.timeouts.append(str(error))

    def _report(self, error: KafkaError | None, message: Any) -> None:
        if error is None:
            self.acked.add(int(message.value()))
        else:
            self.failed.append(error)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._idle.is_set() or len(self._producer) >= IN_FLIGHT:
                self._producer.poll(0.01)
                continue
            self._producer.produce(
                self.topic,
                value_of(self.sent),
                partition=self.sent % PARTITIONS,
                on_delivery=self._report,
            )
            self.sent += 1
            self._producer.poll(0)
        assert self._producer.flush(60) == 0


class TimeoutLog(logging.Handler):
    """Collects kafka-python's and aiokafka's warnings about requests that timed out."""

    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "timed out" in message.lower() or "RequestTimedOutError" in message:
            self.into.append(message)


class KafkaPythonStream(NumberedStream):
    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__()
        self.topic = topic
        self._slots = threading.Semaphore(IN_FLIGHT)
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            delivery_timeout_ms=60000,
            retry_backoff_ms=20,
            reconnect_backoff_ms=20,
            reconnect_backoff_max_ms=200,
            max_block_ms=30000,
        )

    def _sent(self, number: int) -> Callable[[Any], None]:
        def done(_metadata: Any) -> None:
            self.acked.add(number)
            self._slots.release()

        return done

    def _refused(self, error: Exception) -> None:
        self.failed.append(error)
        self._slots.release()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._slots.acquire(timeout=0.05):
                    continue
                future = self._producer.send(
                    self.topic, value_of(self.sent), partition=self.sent % PARTITIONS
                )
                future.add_callback(self._sent(self.sent))
                future.add_errback(self._refused)
                self.sent += 1
            self._producer.flush(60)
        finally:
            self._producer.close(10)


class AiokafkaStream(NumberedStream):
    """aiokafka on an event loop of its own in the stream's thread.

    aiokafka fails a batch that waited longer than request_timeout_ms, so its
    timeout is long enough to outlast a restart.
    """

    REQUEST_TIMEOUT_MS = 4000

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__()
        self.bootstrap = bootstrap
        self.topic = topic

    def _run(self) -> None:
        asyncio.run(self._produce())

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            request_timeout_ms=self.REQUEST_TIMEOUT_MS,
            retry_backoff_ms=20,
        )
        await producer.start()
        slots = asyncio.Semaphore(IN_FLIGHT)
        try:
            while not self._stop.is_set():
                await slots.acquire()
                number = self.sent
                delivery = await producer.send(
                    self.topic, value_of(number), partition=number % PARTITIONS
                )
                delivery.add_done_callback(functools.partial(self._done, number, slots))
                self.sent += 1
            await producer.flush()
        finally:
            await producer.stop()

    def _done(self, number: int, slots: asyncio.Semaphore, delivery: asyncio.Future[Any]) -> None:
        slots.release()
        if delivery.cancelled() or delivery.exception() is not None:
            self.failed.append(delivery)
        else:
            self.acked.add(number)


@contextmanager
def client_timeouts(into: list[str]) -> Iterator[None]:
    """Collect the pure-Python clients' timeout warnings into ``into``."""
    handler = TimeoutLog(into)
    loggers = [logging.getLogger("kafka"), logging.getLogger("aiokafka")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


STREAMS: dict[str, Callable[[str, str], NumberedStream]] = {
    "confluent": ConfluentStream,
    "kafka-python": KafkaPythonStream,
    "aiokafka": AiokafkaStream,
}


def assert_exactly_once_in_order(broker: BrokerProcess, topic: str, stream: NumberedStream) -> None:
    stored = confluent_read_all(broker.bootstrap, topic)
    numbers = [int(record.value) for record in stored]
    doubled = len(numbers) - len(set(numbers))
    assert doubled == 0, f"{doubled} records stored twice"
    lost = stream.acked - set(numbers)
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:5]}"
    for partition in range(PARTITIONS):
        in_log = [
            int(r.value) for r in sorted(stored, key=lambda r: r.offset) if r.partition == partition
        ]
        assert all(n % PARTITIONS == partition for n in in_log), "a record in the wrong partition"
        assert in_log == sorted(in_log), f"partition {partition} out of send order"


def stored_bytes(broker: BrokerProcess, topic: str) -> int:
    """Bytes in the topic's segment files: grows as soon as the broker appends."""
    return sum(path.stat().st_size for path in broker.data_dir.glob(f"{topic}-*/*.log"))


def kill_just_after_a_thaw(broker: BrokerProcess, topic: str, stream: NumberedStream) -> None:
    """Freeze the broker until the client gives its requests up and resends
    them on a new connection, let it run just long enough to append the
    originals, and kill it: the resends then reach a broker that knows the
    batches only from the producer state it rebuilt on recovery."""
    timeouts = len(stream.timeouts)
    broker.pause()
    try:
        wait_for(lambda: len(stream.timeouts) > timeouts, 15, what="requests to time out")
        before = stored_bytes(broker, topic)
    finally:
        broker.resume()
    try:
        wait_for(lambda: stored_bytes(broker, topic) > before, 10, 0.0005, "the originals")
    finally:
        broker.kill()


@pytest.mark.parametrize("client", list(STREAMS))
def test_idempotent_stream_through_kill_9_and_restarts(broker: BrokerProcess, client: str) -> None:
    topic = f"idempotent-killed-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    stream = STREAMS[client](broker.bootstrap, topic)
    with client_timeouts(stream.timeouts), stream.running():
        for crash in range(4):
            wait_for(stream.acked_at_least(1500 * (crash + 1)), 30, what=f"acks before {crash}")
            if crash % 2:
                kill_just_after_a_thaw(broker, topic, stream)
            else:
                broker.kill()  # in the middle of the stream
            broker.start()
        wait_for(stream.acked_at_least(1500 * 5), 30, what="acks after the last restart")
    assert stream.failed == [], "an idempotent producer must deliver across restarts"
    assert_exactly_once_in_order(broker, topic, stream)


@pytest.mark.parametrize("client", list(STREAMS))
def test_idempotent_stream_through_a_frozen_broker(broker: BrokerProcess, client: str) -> None:
    """Requests time out against a stopped broker; once it runs again it reads
    the originals and then the client's resends of the same batches."""
    topic = f"idempotent-frozen-{client}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    stream = STREAMS[client](broker.bootstrap, topic)
    with client_timeouts(stream.timeouts), stream.running():
        wait_for(stream.acked_at_least(1500), 30, what="acks before the freeze")
        broker.pause()
        try:
            wait_for(lambda: stream.timeouts, 15, what="requests to time out")
        finally:
            broker.resume()
        frozen_at = len(stream.acked)
        wait_for(stream.acked_at_least(frozen_at + 1500), 30, what="acks after the thaw")
    assert stream.failed == [], "an idempotent producer must deliver across a freeze"
    assert_exactly_once_in_order(broker, topic, stream)


def idempotent_answer(
    conn: RawConnection, topic: str, producer: tuple[int, int], seq: int
) -> tuple[int, int]:
    """One batch of one record from ``producer`` (id, epoch) at sequence ``seq``
    to partition 0; the broker's error code and base offset."""
    batch = build_batch(
        [Record(0, 0, b"k", b"%d" % seq, [])],
        base_timestamp=int(time.time() * 1000),
        producer_id=producer[0],
        producer_epoch=producer[1],
        base_sequence=seq,
    )
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    }
    [answer] = conn.request(PRODUCE, 8, body)["responses"][0]["partition_responses"]
    return int(answer["error_code"]), int(answer["base_offset"])


def idempotent_produce(conn: RawConnection, topic: str, producer: tuple[int, int], seq: int) -> int:
    """As ``idempotent_answer``, for a batch that must be taken; its base offset."""
    error, offset = idempotent_answer(conn, topic, producer, seq)
    assert error == 0, error
    return offset


def init_producer_id(conn: RawConnection, bump: tuple[int, int] | None = None) -> tuple[int, int]:
    """A new producer id (v1), or ``bump``'s epoch raised by one (v3, KIP-360)."""
    if bump is None:
        body: dict[str, Any] = {"transactional_id": None, "transaction_timeout_ms": 60000}
        answer = conn.request(INIT_PRODUCER_ID, 1, body)
    else:
        body = {
            "transactional_id": None,
            "transaction_timeout_ms": 60000,
            "producer_id": bump[0],
            "producer_epoch": bump[1],
        }
        answer = conn.request(INIT_PRODUCER_ID, 3, body)
    assert answer["error_code"] == 0, answer["error_code"]
    return int(answer["producer_id"]), int(answer["producer_epoch"])


def test_sequence_gaps_and_old_epochs_are_refused(broker: BrokerProcess) -> None:
    topic = "idempotent-wire"
    create_topic(broker.bootstrap, topic, 1)
    with RawConnection(broker.port) as conn:
        old = init_producer_id(conn)
        assert [idempotent_produce(conn, topic, old, seq) for seq in range(3)] == [0, 1, 2]
        # A retry of any of the last five batches is answered with its offset.
        assert idempotent_answer(conn, topic, old, 1) == (0, 1)
        assert idempotent_answer(conn, topic, old, 5)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        new = init_producer_id(conn, bump=old)
        assert new == (old[0], old[1] + 1)
        assert idempotent_produce(conn, topic, new, 0) == 3
        assert idempotent_answer(conn, topic, old, 3)[0] == INVALID_PRODUCER_EPOCH
        assert idempotent_produce(conn, topic, new, 1) == 4
    broker.kill()
    broker.start()
    with RawConnection(broker.port) as conn:
        # The state came back from the log: a retry, a gap, the fenced epoch.
        assert idempotent_answer(conn, topic, new, 1) == (0, 4)
        assert idempotent_answer(conn, topic, new, 3)[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert idempotent_answer(conn, topic, old, 3)[0] == INVALID_PRODUCER_EPOCH
        assert idempotent_produce(conn, topic, new, 2) == 5


def test_producer_state_expires_and_an_idle_producer_carries_on(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """After producer.id.expiration.ms without a batch the broker forgets the
    producer: a resend is then written again (the window of idempotence has
    closed), and an idle confluent-kafka idempotent producer carries on."""
    broker = broker_factory(
        producer_id_expiration_ms="500", producer_id_expiration_check_interval_ms="50"
    )
    topic = "idempotent-expired"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    stream = ConfluentStream(broker.bootstrap, topic)
    with RawConnection(broker.port) as conn, stream.running():
        wait_for(stream.acked_at_least(100), 10, what="acks before idling")
        stream.pause()
        wait_for(stream.settled, 10, what="the stream to go quiet")
        # A producer whose last batch comes after the stream's: once it is
        # forgotten, so is the stream's producer.
        producer = init_producer_id(conn)
        first = idempotent_produce(conn, topic, producer, 0)
        assert idempotent_produce(conn, topic, producer, 0) == first, "a resend was written twice"
        wait_for(
            lambda: idempotent_produce(conn, topic, producer, 0) != first,
            10,
            0.05,
            "the raw producer to expire",
        )
        stream.carry_on()
        wait_for(stream.acked_at_least(len(stream.acked) + 100), 10, what="acks after idling")
    assert stream.failed == []
    stored = [r for r in confluent_read_all(broker.bootstrap, topic) if len(r.value) == 9]
    assert len(stored) == len({r.value for r in stored}), "a record stored twice"
    assert stream.acked <= {int(r.value) for r in stored}, "an acknowledged record lost"


def values_to_eof(broker: BrokerProcess, topic: str) -> list[bytes]:
    """Partition 0's values from its start until the consumer reports its end
    (offsets of a compacted log have gaps, so counting cannot tell)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "eof-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        while True:
            message = consumer.poll(10)
            assert message is not None, "no end of partition within 10 s"
            if message.error() is not None:
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                return values
            values.append(message.value())
    finally:
        consumer.close()


def test_idempotent_producer_outlives_the_cleaning_of_its_batches(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    """Compaction removes every batch an idempotent producer wrote; after a
    kill -9 the broker must still know the producer's sequence, so that the
    same producer carries on without an OUT_OF_ORDER_SEQUENCE_NUMBER."""
    broker = broker_factory(log_cleaner_backoff_ms="50")
    topic = "idempotent-compacted"
    create_topic(
        broker.bootstrap,
        topic,
        1,
        **{
            "cleanup.policy": "compact",
            "segment.bytes": "2048",
            "min.cleanable.dirty.ratio": "0.01",
        },
    )
    errors: list[Any] = []
    fatal: list[Any] = []
    idempotent = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "reconnect.backoff.ms": 20,
            "error_cb": lambda error: error.fatal() and fatal.append(error),
        }
    )
    plain = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})

    def send(producer: Producer, key: bytes, value: bytes) -> None:
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda e, m: e and errors.append(e)
        )
        assert producer.flush(15) == 0

    for version in range(20):
        send(idempotent, b"key-%d" % (version % 4), b"idempotent-%d" % version + b"." * 200)
    # Newer values of the same keys from another producer, then records that
    # roll the log: all of the idempotent producer's batches become cleanable.
    for version in range(4):
        send(plain, b"key-%d" % version, b"plain")
    for filler in range(3):
        send(plain, b"filler-%d" % filler, b"f" * 1500)

    def cleaned() -> bool:
        stored = values_to_eof(broker, topic)
        return not any(value.startswith(b"idempotent") for value in stored)

    wait_for(cleaned, 20, 0.2, "the idempotent producer's batches to be cleaned")
    broker.kill()
    broker.start()
    send(idempotent, b"key-0", b"idempotent-after-restart")
    assert errors == [] and fatal == []
    assert b"idempotent-after-restart" in values_to_eof(broker, topic)
