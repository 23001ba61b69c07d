"""Transactions on the partition side, over real sockets: hand-built
transactional batches sent with raw Produce requests by an idempotent
producer id, ended with raw WriteTxnMarkers requests (the coordinator's
job, done here by hand), read back by real read_committed and
read_uncommitted consumers."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import pytest
from test_clients_raw import answered_within

import moldau
from conftest import BrokerProcess, RawConnection, create_topic, wait_for
from moldau.protocol.errors import ErrorCode
from moldau.protocol.legacy_records import parse_message_set
from support.txn_wire import (
    FETCH,
    INVALID_PRODUCER_EPOCH,
    INVALID_TXN_STATE,
    TRANSACTION_COORDINATOR_FENCED,
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    UNKNOWN_TOPIC_OR_PARTITION,
    TxnProducer,
    committed_fetch,
    data_values,
    list_latest,
    write_markers,
)

NOT_ENOUGH_REPLICAS = 19
#: These tests play the transaction coordinator by hand (their producers never
#: ask it for their partitions), so the brokers do not verify with it.
BY_HAND = {"transaction.partition.verification.enable": "false"}


@pytest.fixture
def broker(broker_factory: Callable[..., BrokerProcess]) -> BrokerProcess:
    return broker_factory(**BY_HAND)


def read_values(
    bootstrap: str, topic: str, isolation: str, until: Callable[[list[bytes]], bool]
) -> list[bytes]:
    """Values a confluent-kafka consumer with ``isolation`` reads from the
    start of partition 0, polling until ``until`` holds (or 15 s)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-{isolation}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    got: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 15
        while not until(got) and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=0.2):
                if message.error() is None:
                    got.append(message.value())
    finally:
        consumer.close()
    return got


def test_read_committed_sees_committed_transactions_whole_and_never_aborted_ones(
    broker: BrokerProcess,
) -> None:
    create_topic(broker.bootstrap, "eos", 1)
    with RawConnection(broker.port) as conn:
        a, b, plain = TxnProducer(conn), TxnProducer(conn), TxnProducer(conn)
        assert a.send("eos", 0, [b"a1", b"a2"])["base_offset"] == 0
        assert b.send("eos", 0, [b"b1"])["base_offset"] == 2
        assert a.send("eos", 0, [b"a3"])["error_code"] == 0  # 3
        assert a.end(True, {"eos": [0]}) == {("eos", 0): 0}  # commit at 4
        assert b.end(False, {"eos": [0]}) == {("eos", 0): 0}  # abort at 5
        assert b.send("eos", 0, [b"b2"])["base_offset"] == 6  # b's next, open
        plain.send("eos", 0, [b"p1"], transactional=False, transactional_id=None)  # 7
        # the last stable offset stops at b's open transaction
        assert list_latest(conn, "eos", isolation=1) == 6
        assert list_latest(conn, "eos", isolation=0) == 8
        [answer] = conn.request(FETCH, 12, committed_fetch("eos", {0: 0}))["responses"][0][
            "partitions"
        ]
        assert answer["last_stable_offset"] == 6 and answer["high_watermark"] == 8
        assert answer["aborted_transactions"] == [{"producer_id": b.pid, "first_offset": 2}]
        assert data_values(answer["records"]) == [b"a1", b"a2", b"b1", b"a3"]
        committed = read_values(broker.bootstrap, "eos", "read_committed", lambda v: len(v) >= 3)
        assert committed == [b"a1", b"a2", b"a3"]
        uncommitted = read_values(
            broker.bootstrap, "eos", "read_uncommitted", lambda v: len(v) >= 6
        )
        assert uncommitted == [b"a1", b"a2", b"b1", b"a3", b"b2", b"p1"]
        # b's commit frees what followed it
        assert b.end(True, {"eos": [0]}) == {("eos", 0): 0}
        assert list_latest(conn, "eos", isolation=1) == 9
        committed = read_values(broker.bootstrap, "eos", "read_committed", lambda v: len(v) >= 5)
        assert committed == [b"a1", b"a2", b"a3", b"b2", b"p1"]


def test_a_waiting_read_committed_fetch_wakes_when_the_marker_lands(
    broker: BrokerProcess,
) -> None:
    create_topic(broker.bootstrap, "wake", 1)
    with RawConnection(broker.port, timeout=15) as conn, RawConnection(broker.port) as other:
        producer = TxnProducer(other)
        producer.send("wake", 0, [b"x" * 100])
        request = committed_fetch("wake", {0: 0}, max_wait_ms=10_000, min_bytes=1)
        correlation_id = conn.send(FETCH, 12, request)
        assert not answered_within(conn, 0.3), "read past an open transaction"
        producer.end(True, {"wake": [0]})
        ended = time.monotonic()
        response = conn.receive(FETCH, 12, correlation_id)
        assert time.monotonic() - ended < 2.0, "the marker did not wake the fetch"
    [answer] = response["responses"][0]["partitions"]
    assert answer["error_code"] == 0 and data_values(answer["records"]) == [b"x" * 100]


def test_marker_and_produce_refusals(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "refusals", 1)
    with RawConnection(broker.port) as conn:
        producer = TxnProducer(conn)
        assert producer.end(True, {"refusals": [0, 7], "absent": [0]}) == {
            ("refusals", 0): 0,  # nothing open: written all the same, as in Kafka
            ("refusals", 7): UNKNOWN_TOPIC_OR_PARTITION,
            ("absent", 0): UNKNOWN_TOPIC_OR_PARTITION,
        }
        no_id = producer.send("refusals", 0, [b"v"], transactional_id=None)
        assert no_id["error_code"] == TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        assert producer.send("refusals", 0, [b"v"])["error_code"] == 0
        inside = producer.send("refusals", 0, [b"w"], transactional=False)
        assert inside["error_code"] == INVALID_TXN_STATE
        # the coordinator bumps the epoch when it aborts (fencing a zombie)
        assert producer.end(False, {"refusals": [0]}, epoch=1, coordinator_epoch=3) == {
            ("refusals", 0): 0
        }
        zombie = producer.send("refusals", 0, [b"z"], epoch=0)
        assert zombie["error_code"] == INVALID_PRODUCER_EPOCH
        old_epoch = producer.end(True, {"refusals": [0]}, epoch=0, coordinator_epoch=3)
        assert old_epoch == {("refusals", 0): INVALID_PRODUCER_EPOCH}
        old_coordinator = producer.end(True, {"refusals": [0]}, epoch=1, coordinator_epoch=2)
        assert old_coordinator == {("refusals", 0): TRANSACTION_COORDINATOR_FENCED}


@pytest.mark.parametrize("client", ["kafka-python", "aiokafka"])
def test_other_clients_read_committed(broker: BrokerProcess, client: str) -> None:
    create_topic(broker.bootstrap, "others", 1)
    with RawConnection(broker.port) as conn:
        kept, dropped = TxnProducer(conn), TxnProducer(conn)
        kept.send("others", 0, [b"k1"])
        dropped.send("others", 0, [b"d1", b"d2"])
        kept.send("others", 0, [b"k2"])
        dropped.end(False, {"others": [0]})
        kept.end(True, {"others": [0]})
        open_txn = TxnProducer(conn)
        open_txn.send("others", 0, [b"o1"])
    reader = _kafka_python_values if client == "kafka-python" else _aiokafka_values
    assert reader(broker.bootstrap, "others", expected=2) == [b"k1", b"k2"]


def _kafka_python_values(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    got: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 15
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got += [r.value for r in records]
        # and nothing past the open transaction, however long it polls
        got += [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs]
    finally:
        consumer.close()
    return got


def _aiokafka_values(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got: list[bytes] = []
        try:
            consumer.assign([TopicPartition(topic, 0)])
            await consumer.seek_to_beginning()
            deadline = time.monotonic() + 15
            while len(got) < expected and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    got += [r.value for r in records if r.value is not None]
            extra = await consumer.getmany(timeout_ms=500)
            got += [r.value for rs in extra.values() for r in rs if r.value is not None]
        finally:
            await consumer.stop()
        return got

    return asyncio.run(read())


def test_transactions_survive_kill_9(broker_factory: Callable[..., BrokerProcess]) -> None:
    broker = broker_factory(**BY_HAND)
    create_topic(broker.bootstrap, "durable", 1)
    with RawConnection(broker.port) as conn:
        aborted, left_open = TxnProducer(conn), TxnProducer(conn)
        aborted.send("durable", 0, [b"gone"])
        left_open.send("durable", 0, [b"pending"])
        aborted.end(False, {"durable": [0]})
    broker.kill()
    broker.start()
    with RawConnection(broker.port) as conn:
        wait_for(lambda: list_latest(conn, "durable", isolation=0) == 3, 10, what="log reload")
        assert list_latest(conn, "durable", isolation=1) == 1  # the open one survived
        [answer] = conn.request(FETCH, 12, committed_fetch("durable", {0: 0}))["responses"][0][
            "partitions"
        ]
        assert answer["aborted_transactions"] == [{"producer_id": aborted.pid, "first_offset": 0}]
        assert write_markers(conn, left_open.pid, 0, True, {"durable": [0]}) == {("durable", 0): 0}
        assert list_latest(conn, "durable", isolation=1) == 4


class ScriptedCoordinator:
    """The coordinator's side of KIP-890 verification, answering as told:
    the one thing of the transaction coordinator this test needs (the
    coordinator itself is another part's, tested there)."""

    def __init__(self) -> None:
        self.answers: dict[tuple[str, int], ErrorCode] = {}
        self.asked: list[tuple[str, int, int, list[tuple[str, int]]]] = []

    async def verify_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Sequence[tuple[str, int]],
    ) -> dict[tuple[str, int], ErrorCode]:
        self.asked.append((transactional_id, producer_id, producer_epoch, list(partitions)))
        return {p: self.answers.get(p, ErrorCode.NONE) for p in partitions}


def test_produce_verifies_a_new_transaction_with_the_coordinator() -> None:
    coordinator = ScriptedCoordinator()
    with moldau.Broker() as broker:
        core = broker.server.core
        assert core is not None
        real, core.transactions = core.transactions, coordinator  # None: not started yet
        try:
            _verified_by(coordinator, broker)
        finally:
            core.transactions = real


def _verified_by(coordinator: ScriptedCoordinator, broker: moldau.Broker) -> None:
    """Produce asks ``coordinator`` before a batch opens a transaction."""
    create_topic(broker.bootstrap_servers, "verified", 4)
    port = int(broker.bootstrap_servers.rsplit(":", 1)[1])
    with RawConnection(port) as conn:
        producer = TxnProducer(conn)
        assert producer.send("verified", 0, [b"first"])["error_code"] == 0
        assert coordinator.asked == [("txn", producer.pid, 0, [("verified", 0)])]
        assert producer.send("verified", 0, [b"second"])["error_code"] == 0
        assert len(coordinator.asked) == 1  # the transaction is open there: not asked

        coordinator.answers = {
            ("verified", 1): ErrorCode.INVALID_TXN_STATE,
            ("verified", 2): ErrorCode.PRODUCER_FENCED,
            ("verified", 3): ErrorCode.NOT_COORDINATOR,
        }
        expected = {1: INVALID_TXN_STATE, 2: INVALID_PRODUCER_EPOCH, 3: NOT_ENOUGH_REPLICAS}
        for partition, code in expected.items():
            assert producer.send("verified", partition, [b"x"])["error_code"] == code
            assert list_latest(conn, "verified", isolation=0, partition=partition) == 0

        assert producer.end(True, {"verified": [0]}) == {("verified", 0): 0}
        assert producer.send("verified", 0, [b"next"])["error_code"] == 0
        assert coordinator.asked[-1] == ("txn", producer.pid, 0, [("verified", 0)])


def test_old_fetch_versions_never_see_markers(broker: BrokerProcess) -> None:
    """Fetch v0-v3 down-converts to message sets, which have no control
    records: markers are left out (``legacy_records.down_convert``), as
    Kafka's down-conversion does."""
    create_topic(broker.bootstrap, "old", 1)
    with RawConnection(broker.port) as conn:
        producer = TxnProducer(conn)
        producer.send("old", 0, [b"v1", b"v2"])
        producer.end(True, {"old": [0]})
        producer.send("old", 0, [b"v3"])
        producer.end(True, {"old": [0]})
        request = {
            "replica_id": -1, "max_wait_ms": 0, "min_bytes": 0, "max_bytes": 1 << 20,
            "topics": [{"topic": "old", "partitions": [
                {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]}],
        }  # fmt: skip
        [answer] = conn.request(FETCH, 3, request)["responses"][0]["partitions"]
    _, messages = parse_message_set(answer["records"])
    assert [m.value for m in messages] == [b"v1", b"v2", b"v3"]


def test_marker_listeners_hear_of_every_marker_written_here() -> None:
    heard: list[tuple[str, int, int, int, bool]] = []

    def listener(topic: str, partition: int, pid: int, epoch: int, committed: bool) -> None:
        if partition == 1:
            raise RuntimeError("the group coordinator could not apply it")
        heard.append((topic, partition, pid, epoch, committed))

    with moldau.Broker() as broker:
        core = broker.server.core
        assert core is not None
        core.txn_marker_listeners.append(listener)
        create_topic(broker.bootstrap_servers, "heard", 2)
        port = int(broker.bootstrap_servers.rsplit(":", 1)[1])
        with RawConnection(port) as conn:
            producer = TxnProducer(conn)
            answers = producer.end(True, {"heard": [0, 1], "nowhere": [0]})
    assert answers == {
        ("heard", 0): 0,
        ("heard", 1): ErrorCode.UNKNOWN_SERVER_ERROR,  # the coordinator writes it again
        ("nowhere", 0): UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert heard == [("heard", 0, producer.pid, 0, True)]
