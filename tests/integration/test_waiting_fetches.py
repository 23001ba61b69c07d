"""Fetches that wait for data die with their connection, and waking them is cheap.

A long poll (max_wait_ms up to 2^31-1, about 24.8 days) whose client went
away must not stay registered: every append to its partition would wake and
re-run it, and the broker would keep it until the wait ends. These tests use
the in-process ``moldau.Broker`` to look at the broker's waiter table.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import moldau
from conftest import RawConnection, create_topic, wait_for
from moldau.broker.purgatory import FetchPurgatory
from moldau.protocol.messages import encode_request
from moldau.protocol.records import Record, build_batch

FETCH = 1
PRODUCE = 0
FOREVER = 2**31 - 1


def long_poll(topic: str) -> dict[str, object]:
    """A fetch that waits as long as Kafka allows for more data than there will ever be."""
    partition = {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
    return {
        "replica_id": -1,
        "max_wait_ms": FOREVER,
        "min_bytes": FOREVER,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "topics": [{"topic": topic, "partitions": [partition]}],
    }


def produce_seconds(port: int, topic: str) -> float:
    records = build_batch([Record(0, 0, None, b"v", [])], base_timestamp=int(time.time() * 1000))
    body = {
        "acks": -1,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    }
    started = time.monotonic()
    with RawConnection(port) as conn:
        answer = conn.request(PRODUCE, 8, body)
    assert answer["responses"][0]["partition_responses"][0]["error_code"] == 0
    return time.monotonic() - started


def test_abandoned_long_polls_are_freed_when_their_connections_close() -> None:
    with moldau.Broker() as broker:
        create_topic(broker.bootstrap_servers, "polled", 1)
        port = int(broker.bootstrap_servers.rsplit(":", 1)[1])
        assert broker.server.core is not None
        purgatory = broker.server.core.purgatory
        frame = encode_request(FETCH, 4, 1, "poller", long_poll("polled"))
        pollers = [RawConnection(port) for _ in range(200)]
        try:
            for conn in pollers:
                conn.send_bytes(frame)
            wait_for(
                lambda: len(purgatory._waiters.get(("polled", 0), ())) == 200,
                what="200 waiting fetches",
            )
        finally:
            for conn in pollers:
                conn.sock.close()
        wait_for(lambda: not purgatory._waiters, what="the waiter table to empty")
        assert max(produce_seconds(port, "polled") for _ in range(20)) < 0.5


def test_forgetting_many_waiters_is_linear(tmp_path: Path) -> None:
    purgatory = FetchPurgatory()
    key = [("t", 0)]

    async def register_and_forget(count: int) -> float:
        futures = [purgatory.waiter(key) for _ in range(count)]
        started = time.perf_counter()
        for future in reversed(futures):  # as cancelled fetches leave: any order
            purgatory.forget_waiter(key, future)
        return time.perf_counter() - started

    took = asyncio.run(register_and_forget(50_000))
    assert not purgatory._waiters
    assert took < 0.5, f"forgetting 50,000 waiters took {took:.2f} s"


SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import gc, sys, time
    sys.path.insert(0, {tests!r})
    import moldau
    from conftest import RawConnection, create_topic, wait_for
    from moldau.protocol.messages import encode_request
    from test_waiting_fetches import long_poll

    broker = moldau.Broker().start()
    create_topic(broker.bootstrap_servers, "polled", 1)
    port = int(broker.bootstrap_servers.rsplit(":", 1)[1])
    conn = RawConnection(port)
    conn.send_bytes(encode_request(1, 4, 1, "poller", long_poll("polled")))
    wait_for(lambda: broker.server.core.purgatory._waiters, what="a waiting fetch")
    broker.stop()
    gc.collect()
    print("stopped")
    """
)


def test_no_pending_task_is_destroyed_at_shutdown() -> None:
    tests = str(Path(__file__).resolve().parent.parent)
    script = SHUTDOWN_SCRIPT.format(tests=tests)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, str(Path(__file__).parent)])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0 and "stopped" in done.stdout, done.stderr
    assert "Task was destroyed" not in done.stderr, done.stderr
