"""BrokerConnection's framing and bookkeeping, driven through a fake transport."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from test_client_support import in_loop

from moldau.client.connection import BrokerConnection, pick_versions
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.messages import encode_response


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def response_frame(api_key: int, version: int, correlation_id: int, body: dict[str, Any]) -> bytes:
    return b"".join(bytes(p) for p in encode_response(api_key, version, correlation_id, body))


def feed(conn: BrokerConnection, data: bytes) -> None:
    """Deliver ``data`` as a transport does: into the protocol's buffers, as
    many reads as they need."""
    while data:
        buffer = conn.get_buffer(-1)
        n = min(len(buffer), len(data))
        buffer[:n] = data[:n]
        conn.buffer_updated(n)
        data = data[n:]


def sent_correlation_id(frame: bytes) -> int:
    return int(struct.unpack_from(">i", frame, 8)[0])


async def open_conn(timeout_ms: int = 30_000) -> tuple[BrokerConnection, FakeTransport]:
    conn = BrokerConnection("h", 1, "test", timeout_ms)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.versions = {ApiKey.METADATA: 12, ApiKey.API_VERSIONS: 3}
    return conn, transport


METADATA = {"brokers": [{"node_id": 1, "host": "h", "port": 1}], "topics": []}


@in_loop
async def test_pipelined_responses_match_their_requests() -> None:
    conn, transport = await open_conn()
    futures = [conn.send(ApiKey.METADATA, {"topics": []}) for _ in range(3)]
    ids = [sent_correlation_id(f) for f in transport.written]
    assert len(set(ids)) == 3
    stream = b"".join(
        response_frame(ApiKey.METADATA, 12, cid, {**METADATA, "controller_id": i})
        for i, cid in enumerate(ids)
    )
    # Arbitrary cuts: frames split across reads and several in one read.
    for start in range(0, len(stream), 7):
        feed(conn, stream[start : start + 7])
    results = [f.result() for f in futures]
    assert [r["controller_id"] for r in results] == [0, 1, 2]
    assert conn.in_flight == 0


BIG_METADATA = {
    **METADATA,
    "topics": [{"error_code": 0, "name": f"topic-{n:05}", "partitions": []} for n in range(4_000)],
}


@in_loop
async def test_large_frames_among_small_ones_in_any_cuts() -> None:
    """Large frames (a follower's fetch answers) are received into buffers of
    their own, whatever the reads' sizes and whatever precedes them."""
    bodies = [METADATA, BIG_METADATA, METADATA, BIG_METADATA, BIG_METADATA, METADATA]
    assert len(response_frame(ApiKey.METADATA, 12, 0, BIG_METADATA)) > 64 * 1024
    for read_size in (997, 65_536, 10_000_000):
        conn, transport = await open_conn()
        futures = [conn.send(ApiKey.METADATA, {"topics": []}) for _ in bodies]
        ids = [sent_correlation_id(f) for f in transport.written]
        pairs = zip(ids, bodies, strict=True)
        stream = b"".join(response_frame(ApiKey.METADATA, 12, cid, body) for cid, body in pairs)
        for start in range(0, len(stream), read_size):
            feed(conn, stream[start : start + read_size])
        assert [len(f.result()["topics"]) for f in futures] == [len(b["topics"]) for b in bodies]
        assert conn.in_flight == 0


@in_loop
async def test_a_large_frame_gets_a_buffer_of_its_own_size() -> None:
    conn, transport = await open_conn()
    future = conn.send(ApiKey.METADATA, {"topics": []})
    frame = response_frame(
        ApiKey.METADATA, 12, sent_correlation_id(transport.written[0]), BIG_METADATA
    )
    feed(conn, frame[:100])
    assert len(conn.get_buffer(-1)) == len(frame) - 100  # the rest of it, exactly
    feed(conn, frame[100:])
    assert len(future.result()["topics"]) == 4_000
    assert len(conn.get_buffer(-1)) > 0  # back to the shared buffer


@in_loop
async def test_a_large_frames_buffer_is_used_again_only_once_nothing_views_it() -> None:
    conn, transport = await open_conn()

    def answer_big() -> None:
        future = conn.send(ApiKey.METADATA, {"topics": []})
        cid = sent_correlation_id(transport.written[-1])
        frame = response_frame(ApiKey.METADATA, 12, cid, BIG_METADATA)
        feed(conn, frame[:100])  # the rest goes to a large frame's buffer
        feed(conn, frame[100:])
        assert len(future.result()["topics"]) == 4_000

    answer_big()
    first = conn._spare
    held = memoryview(first or b"")[10:20]  # an answer's record views, still alive
    answer_big()
    second = conn._spare
    assert second is not None and second is not first
    answer_big()
    assert conn._spare is second  # nothing viewed the second: used again
    held.release()


@in_loop
async def test_a_frame_too_short_for_a_correlation_id_closes_the_connection() -> None:
    conn, transport = await open_conn()
    waiting = conn.send(ApiKey.METADATA, {"topics": []})
    feed(conn, struct.pack(">i", -4) + b"\x00" * 8)
    assert transport.closed
    with pytest.raises(KafkaError):
        await waiting


@in_loop
async def test_timeout_fails_request_and_closes_connection() -> None:
    conn, transport = await open_conn(timeout_ms=10)
    slow = conn.send(ApiKey.METADATA, {"topics": []})
    other = conn.send(ApiKey.METADATA, {"topics": []}, timeout_ms=60_000)
    with pytest.raises(KafkaError) as info:
        await slow
    assert info.value.code == ErrorCode.REQUEST_TIMED_OUT
    assert transport.closed and conn.closed
    with pytest.raises(KafkaError) as info:
        await other
    assert info.value.code == ErrorCode.NETWORK_EXCEPTION


@in_loop
async def test_connection_lost_fails_everything_waiting_and_later_sends() -> None:
    conn, _ = await open_conn()
    waiting = conn.send(ApiKey.METADATA, {"topics": []})
    conn.connection_lost(ConnectionResetError())
    with pytest.raises(KafkaError) as info:
        await waiting
    assert info.value.code == ErrorCode.NETWORK_EXCEPTION
    assert info.value.code.retriable
    later = conn.send(ApiKey.METADATA, {"topics": []})
    with pytest.raises(KafkaError):
        await later
    await conn.wait_closed()


@in_loop
async def test_unknown_correlation_id_closes_the_connection() -> None:
    conn, transport = await open_conn()
    waiting = conn.send(ApiKey.METADATA, {"topics": []})
    feed(conn, response_frame(ApiKey.METADATA, 12, 999, METADATA))
    assert transport.closed
    with pytest.raises(KafkaError):
        await waiting


@in_loop
async def test_undecodable_response_fails_only_its_request() -> None:
    conn, transport = await open_conn()
    future = conn.send(ApiKey.METADATA, {"topics": []})
    cid = sent_correlation_id(transport.written[0])
    feed(conn, struct.pack(">ii", 6, cid) + b"\x00\x01")
    with pytest.raises(KafkaError) as info:
        await future
    assert info.value.code == ErrorCode.CORRUPT_MESSAGE
    assert not conn.closed


@in_loop
async def test_no_response_expected_resolves_at_once() -> None:
    conn, transport = await open_conn()
    conn.versions[ApiKey.PRODUCE] = 9
    future = conn.send(ApiKey.PRODUCE, {"acks": 0, "topic_data": []}, expect_response=False)
    assert future.result() == {}
    assert conn.in_flight == 0 and len(transport.written) == 1


@in_loop
async def test_unsupported_api_is_a_clear_error() -> None:
    conn, _ = await open_conn()
    with pytest.raises(KafkaError, match="does not support FETCH") as info:
        conn.send(ApiKey.FETCH, {})
    assert info.value.code == ErrorCode.UNSUPPORTED_VERSION


@in_loop
async def test_api_versions_error_answer_is_read_as_v0() -> None:
    """A broker that does not know our ApiVersions version answers in v0 (KIP-511)."""
    conn, transport = await open_conn()
    future = conn.send(ApiKey.API_VERSIONS, {}, version=3)
    cid = sent_correlation_id(transport.written[0])
    body = {
        "error_code": ErrorCode.UNSUPPORTED_VERSION,
        "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 2}],
    }
    feed(conn, response_frame(ApiKey.API_VERSIONS, 0, cid, body))
    answer = future.result()
    assert answer["error_code"] == ErrorCode.UNSUPPORTED_VERSION
    assert answer["api_keys"][0]["max_version"] == 2


def test_pick_versions_takes_highest_common_and_caps_topic_id_versions() -> None:
    chosen = pick_versions(
        {
            ApiKey.METADATA: (0, 12),
            ApiKey.PRODUCE: (3, 13),  # 13 names topics by id: we stay at 12
            ApiKey.FETCH: (0, 3),  # below our lowest fetch version: unusable
            9999: (0, 1),  # an API we do not know
        }
    )
    assert chosen == {ApiKey.METADATA: 12, ApiKey.PRODUCE: 12}
