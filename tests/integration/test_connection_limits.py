"""What one connection may cost: memory, time on the loop, idleness, count.

Each test attacks a broker subprocess over raw sockets the way a hostile or
broken client would (size prefixes that claim 100 MB and never deliver,
thousands of pipelined requests, connections that never speak or are too
many) and checks that the broker bounds the cost and keeps serving others.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BrokerProcess, RawConnection, create_topic, wait_for
from moldau.protocol.messages import encode_request
from moldau.protocol.records import Record, build_batch

API_VERSIONS = 18
METADATA = 3
PRODUCE = 0
FETCH = 1
VERSIONS_BODY = {"client_software_name": "t", "client_software_version": "1"}


def answers(conn: RawConnection) -> bool:
    return conn.request(API_VERSIONS, 3, VERSIONS_BODY)["error_code"] == 0


def new_connection_served(port: int) -> bool:
    with RawConnection(port) as conn:
        return answers(conn)


def silent_for(sock: socket.socket, seconds: float) -> bool:
    """True if nothing arrives (and the socket stays open) for ``seconds``."""
    sock.settimeout(seconds)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(10)
    return False


def produce_body(topic: str, value: bytes) -> dict[str, object]:
    records = build_batch([Record(0, 0, None, value, [])], base_timestamp=int(time.time() * 1000))
    partition = {"index": 0, "records": records}
    return {
        "acks": -1,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [partition]}],
    }


def round_trip(port: int, topic: str, value: bytes) -> float:
    """Seconds for a new client to produce ``value`` and fetch it back."""
    started = time.monotonic()
    with RawConnection(port) as conn:
        produced = conn.request(PRODUCE, 8, produce_body(topic, value))
        partition = produced["responses"][0]["partition_responses"][0]
        assert partition["error_code"] == 0
        fetch = {
            "replica_id": -1,
            "max_wait_ms": 0,
            "min_bytes": 0,
            "max_bytes": 1 << 20,
            "isolation_level": 0,
            "topics": [
                {
                    "topic": topic,
                    "partitions": [
                        {
                            "partition": 0,
                            "fetch_offset": partition["base_offset"],
                            "partition_max_bytes": 1 << 20,
                        }
                    ],
                }
            ],
        }
        fetched = conn.request(FETCH, 4, fetch)
        records = fetched["responses"][0]["partitions"][0]["records"]
        assert value in bytes(records)
    return time.monotonic() - started


@contextmanager
def sockets(port: int, count: int) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(socket.create_connection(("127.0.0.1", port))) for _ in range(count)
        ]


# -- memory ----------------------------------------------------------------------


def test_size_prefix_allocates_only_as_bytes_arrive(broker: BrokerProcess) -> None:
    with RawConnection(broker.port) as probe:
        assert answers(probe)
        before = broker.memory()
        with sockets(broker.port, 5) as claims:
            for sock in claims:  # 100 MB claimed (the default limit), 2 KB sent
                sock.sendall(struct.pack(">i", 100_000_000) + bytes(2048))
            for _ in range(3):  # the broker has read the claims by now
                assert answers(probe)
            grown = broker.memory() - before
            assert grown < 48 << 20, f"RSS grew {grown >> 20} MB for 10 KB received"
        assert answers(probe)


def test_queued_max_request_bytes_stops_reading_until_memory_is_free(
    broker_factory: type[BrokerProcess],
) -> None:
    broker = broker_factory(queued_max_request_bytes=str(1 << 20))
    create_topic(broker.bootstrap, "big", 1)
    first = encode_request(PRODUCE, 8, 1, "a", produce_body("big", b"x" * (2 << 20)))
    second = encode_request(PRODUCE, 8, 2, "b", produce_body("big", b"y" * 300_000))
    with RawConnection(broker.port) as a, RawConnection(broker.port) as b:
        a.send_bytes(first[: len(first) // 2])
        assert new_connection_served(broker.port)  # a's half has been read by now
        b.send_bytes(second)
        assert silent_for(b.sock, 1.0), "b was read although the budget is spent"
        a.send_bytes(first[len(first) // 2 :])
        assert a.read_frame() is not None
        assert b.read_frame() is not None
        assert answers(a) and answers(b)


def test_claims_that_send_nothing_do_not_hold_the_budget(
    broker_factory: type[BrokerProcess],
) -> None:
    # Each claim holds its first buffer (1 MiB), not the 100 MB it claims.
    broker = broker_factory(queued_max_request_bytes=str(16 << 20))
    create_topic(broker.bootstrap, "big", 1)
    honest = encode_request(PRODUCE, 8, 1, "h", produce_body("big", b"z" * 600_000))
    with sockets(broker.port, 8) as claims, RawConnection(broker.port) as client:
        for sock in claims:  # 800 MB claimed, 80 bytes sent
            sock.sendall(struct.pack(">i", 100_000_000) + bytes(10))
        assert new_connection_served(broker.port)  # the claims have been read
        for start in range(0, len(honest), 100_000):  # arrives in pieces
            client.send_bytes(honest[start : start + 100_000])
        client.sock.settimeout(5)
        assert client.read_frame() is not None, "the budget is held by claims of nothing"


# -- time on the event loop ---------------------------------------------------------


def test_pipelined_flood_does_not_stall_other_clients(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topics = [NewTopic(f"flood-{i}", num_partitions=4, replication_factor=1) for i in range(50)]
    for done in admin.create_topics(topics).values():
        done.result(10)
    create_topic(broker.bootstrap, "quiet", 1)
    all_topics = encode_request(METADATA, 1, 1, "flood", {"topics": None})
    flood = all_topics * 20_000
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as flooder:

        def send_flood() -> None:
            with suppress(OSError):  # the test closes the socket while this still sends
                flooder.sendall(flood)

        sender = threading.Thread(target=send_flood, daemon=True)
        sender.start()
        assert flooder.recv(1, socket.MSG_PEEK), "the flood is not being answered"
        took = round_trip(broker.port, "quiet", b"through the flood")
        assert took < 2.0, f"a produce and fetch took {took:.1f} s behind the flood"
    assert round_trip(broker.port, "quiet", b"after")


# -- idleness and connection counts ------------------------------------------------


def test_idle_connections_are_closed(broker_factory: type[BrokerProcess]) -> None:
    broker = broker_factory(connections_max_idle_ms="400")
    with RawConnection(broker.port) as idle, RawConnection(broker.port) as busy:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            assert answers(busy)
            time.sleep(0.1)  # the client's pace, not synchronisation
        assert idle.read_frame() is None, "the idle connection is still open"
        assert answers(busy)


def test_max_connections_makes_new_connections_wait(broker_factory: type[BrokerProcess]) -> None:
    broker = broker_factory(max_connections="3")
    first = [RawConnection(broker.port) for _ in range(3)]
    try:
        assert all(answers(conn) for conn in first)
        with RawConnection(broker.port) as waiting:
            waiting.send(API_VERSIONS, 3, VERSIONS_BODY)
            assert silent_for(waiting.sock, 0.5), "a connection over max.connections was served"
            first.pop().sock.close()
            assert waiting.read_frame() is not None
    finally:
        for conn in first:
            conn.sock.close()


@pytest.mark.parametrize(
    ("overrides", "allowed"),
    [
        ({"max_connections_per_ip": "2"}, 2),
        ({"max_connections_per_ip": "1", "max_connections_per_ip_overrides": "127.0.0.1:4"}, 4),
    ],
    ids=["per-ip", "override"],
)
def test_max_connections_per_ip_closes_the_extra_one(
    broker_factory: type[BrokerProcess], overrides: dict[str, str], allowed: int
) -> None:
    broker = broker_factory(**overrides)
    kept = [RawConnection(broker.port) for _ in range(allowed)]
    try:
        assert all(answers(conn) for conn in kept)
        with RawConnection(broker.port) as extra:
            extra.send(API_VERSIONS, 3, VERSIONS_BODY)
            assert extra.read_frame() is None, "the connection over the limit was served"
        kept.pop().sock.close()
        wait_for(lambda: new_connection_served(broker.port), what="a slot freed by a close")
    finally:
        for conn in kept:
            conn.sock.close()
