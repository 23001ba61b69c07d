"""moldau in-process: ``moldau.Broker`` in a thread or a running loop, the
pytest fixture, and the ``moldau broker`` process's clean stop."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

import moldau
from conftest import BrokerProcess, create_topic


def _round_trip(bootstrap: str, topic: str) -> list[bytes]:
    create_topic(bootstrap, topic, 1)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(3):
        producer.produce(topic, value=b"v%d" % i)
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "embedded"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + 10
    try:
        while len(values) < 3 and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                values.append(message.value())
    finally:
        consumer.close()
    return values


def test_broker_in_a_background_thread_cleans_up_its_data() -> None:
    with moldau.Broker() as broker:
        data_dir = broker.config.log_dirs[0]
        assert _round_trip(broker.bootstrap_servers, "thread") == [b"v0", b"v1", b"v2"]
        assert os.path.isdir(data_dir)
    assert not os.path.exists(data_dir), "the temporary data dir outlived the broker"


def test_broker_in_a_running_event_loop(tmp_path: Path) -> None:
    async def scenario() -> list[bytes]:
        async with moldau.Broker(log_dir=str(tmp_path)) as broker:
            # Blocking clients must not block the loop that serves them.
            return await asyncio.to_thread(_round_trip, broker.bootstrap_servers, "loop")

    assert asyncio.run(scenario()) == [b"v0", b"v1", b"v2"]
    assert (tmp_path / "loop-0").is_dir(), "an explicit log dir is kept"


def test_pytest_fixture_gives_a_working_broker(moldau_broker: str) -> None:
    assert _round_trip(moldau_broker, "fixture") == [b"v0", b"v1", b"v2"]


def test_sigterm_stops_the_process_cleanly_and_quickly(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "clean-stop", 2)
    assert broker.process is not None
    started = time.monotonic()
    assert broker.stop() == 0, broker.output()
    # The issue asks for "within a second"; the bound here leaves room for a
    # loaded CI machine while still catching a stop that waits on a timer.
    assert time.monotonic() - started < 3.0
    assert (broker.data_dir / ".kafka_cleanshutdown").exists(), "no clean-shutdown marker"
    assert (broker.data_dir / "recovery-point-offset-checkpoint").exists()
