"""Bad input over raw sockets never takes the broker down.

Each test stores some records, keeps a bystander connection open, then sends
one kind of nonsense: bytes that are no Kafka frame, frames of impossible
sizes, APIs and versions nobody serves, record batches with a wrong CRC or
over ``message.max.bytes``. The broker answers with Kafka's error code or
closes that one connection; afterwards the bystander and new clients are
still served and everything stored before reads back unchanged.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from conftest import (
    BrokerProcess,
    RawConnection,
    Rec,
    assert_round_trip,
    confluent_produce,
    confluent_read_all,
    create_topic,
    sample_records,
)
from moldau.protocol.records import Record, build_batch

API_VERSIONS = 18
METADATA = 3
PRODUCE = 0
CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
INVALID_RECORD = 87
UNSUPPORTED_VERSION = 35
#: The broker's default socket.request.max.bytes.
MAX_REQUEST = 104857600


def header(api_key: int, version: int, correlation_id: int = 7, client_id: bytes = b"t") -> bytes:
    """A request header v1: what every request starts with, whatever follows."""
    return struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id


def framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


class Scene:
    """A broker with records stored and a bystander connection open."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        create_topic(broker.bootstrap, "kept", 2)
        base = int(time.time() * 1000) - 60_000
        self.kept = confluent_produce(broker.bootstrap, "kept", sample_records("kept", 30, base))
        self.bystander = RawConnection(broker.port)
        self.check_bystander()

    def check_bystander(self) -> None:
        body = {"client_software_name": "bystander", "client_software_version": "1"}
        answer = self.bystander.request(API_VERSIONS, 3, body)
        assert answer["error_code"] == 0

    def assert_unharmed(self) -> None:
        """The broker runs, serves old and new connections, and lost nothing."""
        assert self.broker.process is not None and self.broker.process.poll() is None
        self.check_bystander()
        with RawConnection(self.broker.port) as fresh:
            answer = fresh.request(METADATA, 1, {"topics": [{"name": "kept"}]})
            assert [t["name"] for t in answer["topics"]] == ["kept"]
        assert_round_trip(self.kept, confluent_read_all(self.broker.bootstrap, "kept"))

    def close(self) -> None:
        self.bystander.sock.close()


@pytest.fixture
def scene(broker: BrokerProcess) -> Iterator[Scene]:
    made = Scene(broker)
    try:
        yield made
    finally:
        made.close()


def closed_by_broker(conn: RawConnection) -> bool:
    """True if the broker closed the connection (without answering anything)."""
    return conn.read_frame() is None


# -- frames the broker cannot serve: it closes that connection --------------------

UNSERVABLE = {
    "http": b"GET / HTTP/1.1\r\nHost: moldau\r\n\r\n",
    "negative size": struct.pack(">i", -1) + bytes(16),
    "size over socket.request.max.bytes": struct.pack(">i", MAX_REQUEST + 1) + bytes(16),
    "frame shorter than a header": framed(b"\x00\x03\x00"),
    "unknown api key": framed(header(999, 0)),
    "unknown version of a known api": framed(header(METADATA, 99) + bytes(8)),
    "garbage body": framed(header(METADATA, 1) + b"\x7f\xff\xff\xff" + os.urandom(32)),
    "client id longer than the frame": framed(struct.pack(">hhih", METADATA, 1, 7, 5000)),
}


@pytest.mark.parametrize("payload", UNSERVABLE.values(), ids=UNSERVABLE.keys())
def test_unservable_frame_closes_only_its_connection(scene: Scene, payload: bytes) -> None:
    with RawConnection(scene.broker.port, timeout=5) as conn:
        conn.send_bytes(payload)
        assert closed_by_broker(conn)
    scene.assert_unharmed()


def test_truncated_frame_then_close(scene: Scene) -> None:
    request = framed(header(METADATA, 1) + struct.pack(">i", -1))
    with RawConnection(scene.broker.port) as conn:
        conn.send_bytes(request[: len(request) // 2])
    with RawConnection(scene.broker.port) as conn:
        conn.send_bytes(struct.pack(">i", 1_000_000) + bytes(1000))
    scene.assert_unharmed()


def test_many_connections_dropped_mid_frame(scene: Scene) -> None:
    for size in range(0, 40, 3):
        with socket.create_connection(("127.0.0.1", scene.broker.port)) as sock:
            sock.sendall(framed(header(PRODUCE, 8) + bytes(64))[:size])
    scene.assert_unharmed()


# -- ApiVersions of an unknown version: a v0 answer that says what we serve --------


def test_api_versions_of_unknown_version_answers_v0_with_the_ranges(scene: Scene) -> None:
    with RawConnection(scene.broker.port) as conn:
        conn.send_bytes(framed(header(API_VERSIONS, 99, correlation_id=4242)))
        frame = conn.read_frame()
        assert frame is not None
        correlation_id, error_code, count = struct.unpack_from(">ihi", frame)
        assert (correlation_id, error_code) == (4242, UNSUPPORTED_VERSION)
        assert len(frame) == 10 + 6 * count, "not a v0 ApiVersions response"
        ranges = {
            key: (low, high)
            for key, low, high in struct.iter_unpack(">hhh", frame[10 : 10 + 6 * count])
        }
        for api in (PRODUCE, 1, 2, METADATA, API_VERSIONS):
            assert ranges[api][0] <= ranges[api][1]
        assert ranges[API_VERSIONS][1] >= 3
        # The connection stays usable: a client retries with a version it found.
        body = {"client_software_name": "t", "client_software_version": "1"}
        assert conn.request(API_VERSIONS, 3, body)["error_code"] == 0
    scene.assert_unharmed()


# -- batches the broker must refuse, per partition, storing nothing ----------------


def batch(values: list[bytes], first_timestamp: int) -> bytes:
    records = [Record(i, i, b"key", value, [("h", b"v")]) for i, value in enumerate(values)]
    return build_batch(records, base_timestamp=first_timestamp)


def produce_raw(conn: RawConnection, topic: str, records: bytes) -> dict[str, object]:
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    }
    answer = conn.request(PRODUCE, 8, body)
    [topic_answer] = answer["responses"]
    [partition_answer] = topic_answer["partition_responses"]
    return partition_answer


def flipped(data: bytes, position: int) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 0x40
    return bytes(changed)


def stored_values(broker: BrokerProcess, topic: str) -> list[bytes]:
    records = sorted(confluent_read_all(broker.bootstrap, topic), key=lambda r: r.offset)
    return [r.value for r in records]


def refused_batches() -> dict[str, tuple[bytes, int]]:
    """Batches a broker must refuse, with the error code Kafka answers."""
    now = int(time.time() * 1000)
    good = batch([b"one", b"two", b"three"], now)
    three = [Record(i, i, b"key", b"v", []) for i in range(3)]
    return {
        "flipped payload byte": (flipped(good, len(good) - 2), CORRUPT_MESSAGE),
        "flipped crc": (flipped(good, 17), CORRUPT_MESSAGE),
        "flipped attributes": (flipped(good, 21), CORRUPT_MESSAGE),
        "valid batch then a corrupt one": (good + flipped(good, len(good) - 2), CORRUPT_MESSAGE),
        "truncated batch": (good[:-5], CORRUPT_MESSAGE),
        "shorter than a batch header": (good[:40], CORRUPT_MESSAGE),
        "last offset delta disagrees with the count": (
            build_batch(three, base_timestamp=now, last_offset_delta=0),
            INVALID_RECORD,
        ),
        "control batch from a client": (
            build_batch(three[:1], base_timestamp=now, is_control=True),
            INVALID_RECORD,
        ),
    }


@pytest.mark.parametrize("name", refused_batches().keys())
def test_refused_batch_stores_nothing(scene: Scene, name: str) -> None:
    records, code = refused_batches()[name]
    create_topic(scene.broker.bootstrap, "raw", 1)
    with RawConnection(scene.broker.port) as conn:
        ok = produce_raw(conn, "raw", batch([b"first"], int(time.time() * 1000)))
        assert (ok["error_code"], ok["base_offset"]) == (0, 0)
        refused = produce_raw(conn, "raw", records)
        assert refused["error_code"] == code
        after = produce_raw(conn, "raw", batch([b"after"], int(time.time() * 1000)))
        assert (after["error_code"], after["base_offset"]) == (0, 1)
    assert stored_values(scene.broker, "raw") == [b"first", b"after"]
    scene.assert_unharmed()


def test_batch_over_message_max_bytes_is_refused(scene: Scene) -> None:
    create_topic(scene.broker.bootstrap, "raw", 1)
    default_message_max_bytes = 1048588
    huge = batch([os.urandom(default_message_max_bytes)], int(time.time() * 1000))
    with RawConnection(scene.broker.port) as conn:
        refused = produce_raw(conn, "raw", huge)
        assert refused["error_code"] == MESSAGE_TOO_LARGE
        after = produce_raw(conn, "raw", batch([b"after"], int(time.time() * 1000)))
        assert (after["error_code"], after["base_offset"]) == (0, 0)
    assert stored_values(scene.broker, "raw") == [b"after"]
    scene.assert_unharmed()


def test_topic_max_message_bytes_is_enforced(scene: Scene) -> None:
    create_topic(scene.broker.bootstrap, "small", 1, **{"max.message.bytes": "2000"})
    with RawConnection(scene.broker.port) as conn:
        refused = produce_raw(conn, "small", batch([os.urandom(3000)], int(time.time() * 1000)))
        assert refused["error_code"] == MESSAGE_TOO_LARGE
        fits = produce_raw(conn, "small", batch([os.urandom(1000)], int(time.time() * 1000)))
        assert (fits["error_code"], fits["base_offset"]) == (0, 0)
    scene.assert_unharmed()


# -- clients that misbehave at the socket level ------------------------------------


def fetch_everything(topic: str) -> dict[str, object]:
    partition = {
        "partition": 0,
        "current_leader_epoch": -1,
        "fetch_offset": 0,
        "last_fetched_epoch": -1,
        "log_start_offset": -1,
        "partition_max_bytes": 64 << 20,
    }
    return {
        "cluster_id": None,
        "replica_id": -1,
        "max_wait_ms": 10_000,
        "min_bytes": 1,
        "max_bytes": 64 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [{"topic": topic, "partitions": [partition]}],
        "forgotten_topics_data": [],
        "rack_id": "",
    }


def test_client_that_never_reads_does_not_stall_others(scene: Scene) -> None:
    create_topic(scene.broker.bootstrap, "bulk", 1)
    chunk = os.urandom(500_000)
    records = [Rec(b"k", chunk + b"%d" % i) for i in range(40)]
    confluent_produce(scene.broker.bootstrap, "bulk", records, **{"linger.ms": 50})
    with RawConnection(scene.broker.port) as hog:
        hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(10):  # ~200 MB of answers that are never read
            hog.send(1, 12, fetch_everything("bulk"))
        started = time.monotonic()
        scene.assert_unharmed()
        assert time.monotonic() - started < 10
    scene.assert_unharmed()


def test_client_gone_while_its_fetch_waits(scene: Scene) -> None:
    create_topic(scene.broker.bootstrap, "waited", 1)
    for _ in range(20):
        with RawConnection(scene.broker.port) as conn:
            conn.send(1, 12, fetch_everything("waited"))
    confluent_produce(scene.broker.bootstrap, "waited", [Rec(b"k", b"wakes the dead")])
    scene.assert_unharmed()


def test_pipelined_requests_are_answered_in_order(scene: Scene) -> None:
    create_topic(scene.broker.bootstrap, "slow", 1)
    slow = fetch_everything("slow")
    slow["max_wait_ms"] = 300
    versions = {"client_software_name": "t", "client_software_version": "1"}
    with RawConnection(scene.broker.port) as conn:
        sent = [
            (API_VERSIONS, 3, conn.send(API_VERSIONS, 3, versions)),
            (1, 12, conn.send(1, 12, slow)),
            (METADATA, 1, conn.send(METADATA, 1, {"topics": [{"name": "kept"}]})),
            (API_VERSIONS, 3, conn.send(API_VERSIONS, 3, versions)),
        ]
        for api_key, version, correlation_id in sent:  # receive() checks the order
            conn.receive(api_key, version, correlation_id)
    scene.assert_unharmed()


def test_many_connections_at_once(scene: Scene) -> None:
    versions = {"client_software_name": "t", "client_software_version": "1"}
    connections = [RawConnection(scene.broker.port) for _ in range(300)]
    try:
        waiting = [(conn, conn.send(API_VERSIONS, 3, versions)) for conn in connections]
        for conn, correlation_id in waiting:
            assert conn.receive(API_VERSIONS, 3, correlation_id)["error_code"] == 0
    finally:
        for conn in connections:
            conn.sock.close()
    scene.assert_unharmed()
