"""Consumers get no fetch session (sessions are for followers only,
``broker/fetch_sessions.py``): a raw Fetch asking for one is answered
session id 0, kafka-python (which asks for sessions) stays on full fetches,
and confluent-kafka (which never asks) reads as before."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from conftest import BrokerProcess, RawConnection, confluent_read_all, create_topic
from moldau.protocol.errors import ErrorCode

TOPIC = "no-sessions"
PARTITIONS = 3
COUNT = 300


def consumer_fetch(session_id: int, epoch: int) -> dict[str, object]:
    """A consumer's Fetch v12 of every partition from 0."""
    return {
        "cluster_id": None,
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "session_id": session_id,
        "session_epoch": epoch,
        "topics": [
            {
                "topic": TOPIC,
                "partitions": [
                    {
                        "partition": p,
                        "current_leader_epoch": -1,
                        "fetch_offset": 0,
                        "last_fetched_epoch": -1,
                        "log_start_offset": -1,
                        "partition_max_bytes": 1 << 20,
                    }
                    for p in range(PARTITIONS)
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }


def test_consumers_are_answered_session_id_zero(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, TOPIC, PARTITIONS)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for n in range(COUNT):
        producer.send(TOPIC, f"v{n}".encode(), partition=n % PARTITIONS)
    producer.flush(10)
    producer.close()

    with RawConnection(broker.port) as conn:
        for _ in range(2):  # asking again opens nothing either
            response = conn.request(1, 12, consumer_fetch(0, 0))
            assert response["error_code"] == 0 and response["session_id"] == 0
            assert len(response["responses"][0]["partitions"]) == PARTITIONS
        response = conn.request(1, 12, consumer_fetch(1234, 1))
        assert response["error_code"] == ErrorCode.FETCH_SESSION_ID_NOT_FOUND

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        got = 0
        deadline = time.monotonic() + 20
        while got < COUNT and time.monotonic() < deadline:
            got += sum(len(m) for m in consumer.poll(timeout_ms=500).values())
        assert got == COUNT
        handlers = consumer._fetcher._session_handlers  # kafka-python's FetchSessionHandler
        assert handlers and all(h.next_metadata.session_id == 0 for h in handlers.values())
    finally:
        consumer.close()
    assert len(confluent_read_all(broker.bootstrap, TOPIC)) == COUNT
