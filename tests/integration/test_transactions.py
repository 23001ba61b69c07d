"""The transaction coordinator with real transactional clients (confluent-kafka's
librdkafka, aiokafka) over real sockets, and its state as DescribeTransactions
and ListTransactions tell it."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka import KafkaException, Producer

from conftest import (
    MOLDAU,
    BrokerProcess,
    RawConnection,
    confluent_read_isolated,
    create_topic,
    wait_for,
)
from moldau.group.placement import partition_for_group
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode

PARTITIONS = 3


def transactional(broker: BrokerProcess, transactional_id: str, **config: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 5,
            **config,
        }
    )


def describe(broker: BrokerProcess, transactional_id: str) -> dict[str, Any]:
    with RawConnection(broker.port) as conn:
        body = conn.request(
            ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": [transactional_id]}
        )
    [state] = body["transaction_states"]
    return state


def list_transactions(broker: BrokerProcess, **filters: Any) -> dict[str, Any]:
    request = {"state_filters": [], "producer_id_filters": [], "duration_filter": -1, **filters}
    with RawConnection(broker.port) as conn:
        return conn.request(ApiKey.LIST_TRANSACTIONS, 1, request)


def in_state(broker: BrokerProcess, transactional_id: str, state: str) -> Callable[[], bool]:
    return lambda: describe(broker, transactional_id)["transaction_state"] == state


def fresh_topic(broker: BrokerProcess) -> str:
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, PARTITIONS)
    return topic


def test_commit_and_abort_over_several_partitions(broker: BrokerProcess) -> None:
    topic = fresh_topic(broker)
    tid = "commit-abort"
    producer = transactional(broker, tid)
    producer.init_transactions(15)
    first = describe(broker, tid)
    assert (first["error_code"], first["transaction_state"]) == (0, "Empty")
    assert first["producer_epoch"] == 0

    producer.begin_transaction()
    for i in range(30):
        producer.produce(topic, value=b"c%d" % i, partition=i % PARTITIONS)
    producer.flush(10)
    ongoing = describe(broker, tid)
    assert ongoing["transaction_state"] == "Ongoing"
    assert ongoing["topics"] == [{"topic": topic, "partitions": list(range(PARTITIONS))}]
    assert ongoing["transaction_start_time_ms"] > 0
    producer.commit_transaction(15)
    wait_for(in_state(broker, tid, "CompleteCommit"), 10, what="CompleteCommit")
    assert describe(broker, tid)["topics"] == []

    producer.begin_transaction()
    producer.produce(topic, value=b"a", partition=0)
    producer.flush(10)  # else librdkafka purges it and has nothing to abort
    producer.abort_transaction(15)
    wait_for(in_state(broker, tid, "CompleteAbort"), 10, what="CompleteAbort")

    listed = list_transactions(broker, state_filters=["CompleteAbort", "Nonsense"])
    assert listed["unknown_state_filters"] == ["Nonsense"]
    assert {
        "transactional_id": tid,
        "producer_id": first["producer_id"],
        "transaction_state": "CompleteAbort",
    } in listed["transaction_states"]
    by_pid = list_transactions(broker, producer_id_filters=[first["producer_id"]])
    assert [t["transactional_id"] for t in by_pid["transaction_states"]] == [tid]


def test_a_second_producer_fences_the_first(broker: BrokerProcess) -> None:
    topic = fresh_topic(broker)
    tid = "zombie"
    zombie = transactional(broker, tid)
    zombie.init_transactions(15)
    zombie.begin_transaction()
    zombie.produce(topic, value=b"from the zombie", partition=0)
    zombie.flush(10)

    # The new instance aborts the zombie's open transaction (the client
    # retries through CONCURRENT_TRANSACTIONS) and gets epoch 2, the abort
    # having taken epoch 1.
    successor = transactional(broker, tid)
    successor.init_transactions(20)
    state = describe(broker, tid)
    assert (state["transaction_state"], state["producer_epoch"]) == ("Empty", 2)

    with pytest.raises(KafkaException) as raised:
        zombie.commit_transaction(10)
    assert raised.value.args[0].code() in (
        ConfluentError._FENCED,
        ConfluentError.PRODUCER_FENCED,
        ConfluentError.INVALID_PRODUCER_EPOCH,
    )

    successor.begin_transaction()
    successor.produce(topic, value=b"from the successor", partition=1)
    successor.commit_transaction(15)
    wait_for(in_state(broker, tid, "CompleteCommit"), 10, what="CompleteCommit")


def test_a_transaction_past_its_timeout_is_aborted(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    broker = broker_factory(
        **{"transaction.abort.timed.out.transaction.cleanup.interval.ms": "200"}
    )
    topic = fresh_topic(broker)
    tid = "slow"
    producer = transactional(broker, tid, **{"transaction.timeout.ms": 1000})
    producer.init_transactions(15)
    producer.begin_transaction()
    producer.produce(topic, value=b"too late", partition=0)
    producer.flush(10)
    wait_for(in_state(broker, tid, "CompleteAbort"), 10, what="the timeout's abort")
    assert describe(broker, tid)["producer_epoch"] == 1, "the abort bumps the epoch"
    with pytest.raises(KafkaException):
        producer.commit_transaction(10)


def test_errors_on_the_wire(broker: BrokerProcess) -> None:
    topic = fresh_topic(broker)
    with RawConnection(broker.port) as conn:
        too_long = conn.request(
            ApiKey.INIT_PRODUCER_ID,
            4,
            {"transactional_id": "t", "transaction_timeout_ms": 10**9},
        )
        assert too_long["error_code"] == ErrorCode.INVALID_TRANSACTION_TIMEOUT
        found = conn.request(ApiKey.FIND_COORDINATOR, 3, {"key": "t", "key_type": 1})
        assert (found["error_code"], found["port"]) == (0, broker.port)
        init = conn.request(
            ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": "t", "transaction_timeout_ms": 5000}
        )
        assert init["error_code"] == 0
        pid, epoch = init["producer_id"], init["producer_epoch"]
        # An unknown topic is refused; the other partitions are not attempted.
        added = conn.request(
            ApiKey.ADD_PARTITIONS_TO_TXN,
            3,
            {
                "v3_and_below_transactional_id": "t",
                "v3_and_below_producer_id": pid,
                "v3_and_below_producer_epoch": epoch,
                "v3_and_below_topics": [
                    {"name": "no-such-topic", "partitions": [0]},
                    {"name": topic, "partitions": [0]},
                ],
            },
        )
        codes = {
            t["name"]: t["results_by_partition"][0]["partition_error_code"]
            for t in added["results_by_topic_v3_and_below"]
        }
        assert codes["no-such-topic"] == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert codes[topic] == ErrorCode.OPERATION_NOT_ATTEMPTED
        # EndTxn with nothing open; with a stale epoch, by version.
        end = {"transactional_id": "t", "producer_id": pid, "producer_epoch": epoch}
        assert conn.request(ApiKey.END_TXN, 3, {**end, "committed": True})["error_code"] == (
            ErrorCode.INVALID_TXN_STATE
        )
        stale = {**end, "producer_epoch": epoch - 1, "committed": True}
        assert conn.request(ApiKey.END_TXN, 3, stale)["error_code"] == ErrorCode.PRODUCER_FENCED
        assert conn.request(ApiKey.END_TXN, 1, stale)["error_code"] == (
            ErrorCode.INVALID_PRODUCER_EPOCH
        )
        unknown = conn.request(ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": ["nope"]})
        assert unknown["transaction_states"][0]["error_code"] == (
            ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
        )


def test_aiokafka_transactional_producer(broker: BrokerProcess) -> None:
    from aiokafka import AIOKafkaProducer

    topic = fresh_topic(broker)
    tid = "aiokafka-txn"

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=tid)
        await producer.start()
        try:
            async with producer.transaction():
                for i in range(PARTITIONS):
                    await producer.send_and_wait(topic, b"x", partition=i)
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"y", partition=0)
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(run())
    wait_for(in_state(broker, tid, "CompleteAbort"), 10, what="the abort")
    read = confluent_read_isolated(broker.bootstrap, topic, PARTITIONS, "read_committed", 3)
    assert read == [b"x"] * 3


def test_read_committed_sees_committed_transactions_only(broker: BrokerProcess) -> None:
    topic = fresh_topic(broker)
    producer = transactional(broker, "read-committed")
    producer.init_transactions(15)
    committed = [b"commit-%d" % i for i in range(12)]
    aborted = [b"abort-%d" % i for i in range(9)]
    for values, commit in ((committed[:6], True), (aborted, False), (committed[6:], True)):
        producer.begin_transaction()
        for i, value in enumerate(values):
            producer.produce(topic, value=value, partition=i % PARTITIONS)
        producer.flush(10)
        if commit:
            producer.commit_transaction(15)
        else:
            producer.abort_transaction(15)
    read = confluent_read_isolated(
        broker.bootstrap, topic, PARTITIONS, "read_committed", len(committed)
    )
    assert sorted(read) == sorted(committed)
    everything = confluent_read_isolated(
        broker.bootstrap, topic, PARTITIONS, "read_uncommitted", len(committed) + len(aborted)
    )
    assert sorted(everything) == sorted(committed + aborted)


def cli(broker: BrokerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MOLDAU, "transactions", *args, "--bootstrap-server", broker.bootstrap],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_lists_and_describes(broker: BrokerProcess) -> None:
    topic = fresh_topic(broker)
    producer = transactional(broker, "cli-open")
    producer.init_transactions(15)
    producer.begin_transaction()
    producer.produce(topic, value=b"open", partition=2)
    producer.flush(10)
    done = transactional(broker, "cli-done")
    done.init_transactions(15)

    listed = cli(broker, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE"]
    states = {line.split()[0]: line.split()[3] for line in lines[1:]}
    assert states == {"cli-done": "Empty", "cli-open": "Ongoing"}
    ongoing = cli(broker, "list", "--state", "Ongoing", "--min-duration-ms", "0")
    assert [line.split()[0] for line in ongoing.stdout.splitlines()[1:]] == ["cli-open"]

    described = cli(broker, "describe", "cli-open")
    assert described.returncode == 0, described.stderr
    assert "State: Ongoing" in described.stdout
    assert "Epoch: 0" in described.stdout
    assert f"Partitions: {topic}:2" in described.stdout
    assert "Open for: " in described.stdout

    missing = cli(broker, "describe", "never-used")
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    producer.abort_transaction(15)


def test_cli_history_shows_the_timeline_with_the_fencing(broker: BrokerProcess) -> None:
    topic = fresh_topic(broker)
    first = transactional(broker, "cli-history")
    first.init_transactions(15)
    first.begin_transaction()
    first.produce(topic, value=b"kept", partition=1)
    first.commit_transaction(15)
    second = transactional(broker, "cli-history")  # fences the first: a new epoch
    second.init_transactions(15)

    described = cli(broker, "describe", "cli-history", "--history")
    assert described.returncode == 0, described.stderr
    timeline = described.stdout.split("History", 1)[1].splitlines()[1:]
    states = [line.split()[1] for line in timeline]
    assert states == ["Empty", "Ongoing", "PrepareCommit", "CompleteCommit", "Empty"], timeline
    assert f"partitions {topic}-1" in timeline[1]
    assert timeline[-1].endswith("<- new epoch")


def test_add_offsets_adds_the_groups_offsets_partition(broker: BrokerProcess) -> None:
    with RawConnection(broker.port) as conn:
        # Before FindCoordinator created __transaction_state, no broker
        # coordinates the id.
        init = conn.request(
            ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": "eos", "transaction_timeout_ms": 5000}
        )
        assert init["error_code"] == ErrorCode.NOT_COORDINATOR
        found = conn.request(ApiKey.FIND_COORDINATOR, 3, {"key": "eos", "key_type": 1})
        assert found["error_code"] == 0
        init = conn.request(
            ApiKey.INIT_PRODUCER_ID, 4, {"transactional_id": "eos", "transaction_timeout_ms": 5000}
        )
        assert init["error_code"] == 0
        ids = {"transactional_id": "eos", "producer_id": init["producer_id"]}
        epoch = init["producer_epoch"]
        added = conn.request(
            ApiKey.ADD_OFFSETS_TO_TXN, 3, {**ids, "producer_epoch": epoch, "group_id": "g"}
        )
        assert added["error_code"] == 0
        stale = {**ids, "producer_epoch": epoch - 1, "group_id": "g"}
        assert conn.request(ApiKey.ADD_OFFSETS_TO_TXN, 1, stale)["error_code"] == (
            ErrorCode.INVALID_PRODUCER_EPOCH
        )
        state = describe(broker, "eos")
        assert state["transaction_state"] == "Ongoing"
        expected = partition_for_group("g", 50)
        assert state["topics"] == [{"topic": "__consumer_offsets", "partitions": [expected]}]
        ended = conn.request(
            ApiKey.END_TXN, 3, {**ids, "producer_epoch": epoch, "committed": False}
        )
        assert ended["error_code"] == 0
    wait_for(in_state(broker, "eos", "CompleteAbort"), 10, what="the abort")


def test_kafka_python_transactional_producer(broker: BrokerProcess) -> None:
    from kafka import KafkaProducer

    topic = fresh_topic(broker)
    tid = "kafka-python-txn"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=tid)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for i in range(PARTITIONS):
            producer.send(topic, b"kept", partition=i)
        producer.commit_transaction()
        producer.begin_transaction()
        producer.send(topic, b"dropped", partition=0)
        producer.flush()
        producer.abort_transaction()
    finally:
        producer.close(timeout=10)
    wait_for(in_state(broker, tid, "CompleteAbort"), 10, what="the abort")
    read = confluent_read_isolated(broker.bootstrap, topic, PARTITIONS, "read_committed", 3)
    assert read == [b"kept"] * 3


def test_an_open_transaction_survives_kill_9_and_is_aborted_by_the_next_producer(
    broker: BrokerProcess,
) -> None:
    topic = fresh_topic(broker)
    tid = "survivor"
    committed = transactional(broker, tid)
    committed.init_transactions(15)
    committed.begin_transaction()
    committed.produce(topic, value=b"committed", partition=0)
    committed.commit_transaction(15)
    committed.begin_transaction()
    for i in range(PARTITIONS):
        committed.produce(topic, value=b"open", partition=i)
    committed.flush(10)
    before = describe(broker, tid)
    assert before["transaction_state"] == "Ongoing"

    broker.kill()
    broker.start()
    wait_for(lambda: describe(broker, tid)["error_code"] == 0, 15, what="the id loaded again")
    after = describe(broker, tid)
    for field in ("transaction_state", "producer_id", "producer_epoch", "topics"):
        assert after[field] == before[field], field

    successor = transactional(broker, tid)
    successor.init_transactions(20)
    assert describe(broker, tid)["producer_epoch"] == before["producer_epoch"] + 2
    read = confluent_read_isolated(broker.bootstrap, topic, PARTITIONS, "read_committed", 1)
    assert read == [b"committed"]
