"""The request layer's small parts: the dispatcher's answers to failing
handlers, the rate-limited log, the broker's request memory budget, and a
connection over a real socket pair cancelling what its requests wait for."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

from moldau.broker import handlers  # noqa: F401  (registers the handlers)
from moldau.broker.config import ConfigError
from moldau.broker.connection import Connection
from moldau.broker.connection_limits import ConnectionLimits, parse_overrides
from moldau.broker.dispatch import HANDLERS, Dispatcher, Handler, RequestContext
from moldau.broker.log_limit import RateLimitedLog
from moldau.broker.request_memory import RequestMemory
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.messages import decode_response, encode_request

INVALID_REQUEST = 42


class _Peer:
    peer = "test:1"
    client_host = "test"
    listener = None


def _serve(dispatcher: Dispatcher, api_key: int, version: int, body: dict[str, Any]) -> Any:
    frame = encode_request(api_key, version, 5, "t", body)[4:]
    result = dispatcher(_Peer(), frame)  # type: ignore[arg-type]
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    data = b"".join(bytes(part) for part in result)[4:]
    return decode_response(api_key, version, data)


def test_a_handler_whose_awaitable_raises_answers_invalid_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(context: RequestContext, request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug after the wait")

    monkeypatch.setitem(
        HANDLERS,
        ApiKey.HEARTBEAT,
        Handler(ApiKey.HEARTBEAT, range(0, 5), lambda c, r: broken(c, r)),
    )
    dispatcher = Dispatcher(None, RateLimitedLog(logging.getLogger("test")))  # type: ignore[arg-type]
    body = {"group_id": "g", "generation_id": 1, "member_id": "m"}
    correlation_id, answer = _serve(dispatcher, ApiKey.HEARTBEAT, 1, body)
    assert (correlation_id, answer["error_code"]) == (5, INVALID_REQUEST)


def test_rate_limited_log_writes_one_line_per_period(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("limited"), period_s=10, clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, "limited"):
        assert limited.warning("first", ValueError("why"))
        assert not any(limited.warning("again") for _ in range(99))
        now[0] = 10.0
        assert limited.warning("later")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "first",
        "later (99 similar warnings suppressed)",
    ]
    assert all(r.exc_info is None for r in warnings)
    assert [r.exc_info is not None for r in caplog.records if r.levelno == logging.DEBUG] == [True]


def test_request_memory_grants_in_order_and_never_deadlocks() -> None:
    memory = RequestMemory(100)
    granted: list[str] = []

    def wait(name: str) -> Callable[[], None]:
        return lambda: granted.append(name)

    assert memory.reserve(60, wait("a"), grow=False)
    assert memory.reserve(60, wait("b"), grow=False)  # something was left: granted
    assert not memory.reserve(10, wait("c"), grow=False)  # full: c waits its turn
    assert not memory.reserve(60, wait("a grows"), grow=True)
    # b is the last frame still receiving: if it waited too, nothing would finish.
    assert memory.reserve(60, wait("b grows"), grow=True)
    memory.received()  # b complete; a, the only one receiving, waits: it grows
    assert granted == ["a grows"]
    memory.release(120)  # b answered; still over the limit
    memory.received()  # a complete
    assert granted == ["a grows"]
    memory.release(120)  # a answered: c's turn
    assert granted == ["a grows", "c"] and memory.in_use == 10
    assert memory.reserve(100, wait("d"), grow=False)
    forgotten = wait("e")
    assert not memory.reserve(10, forgotten, grow=False)
    memory.forget(forgotten)  # e's connection closed
    memory.release(110)
    assert granted == ["a grows", "c"] and memory.in_use == 0 and memory.waiting == 0
    assert RequestMemory(0).reserve(1 << 40, wait("f"), grow=False)  # unlimited


def test_closing_a_connection_cancels_what_its_requests_wait_for() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        started = asyncio.Event()

        async def waits_forever() -> None:
            started.set()
            await asyncio.Event().wait()

        closed: list[Connection] = []
        conn = Connection(loop, ours, lambda c, f: waits_forever(), 1 << 20, closed.append)
        theirs.sendall(encode_request(ApiKey.HEARTBEAT, 1, 1, "t", {}))
        await asyncio.wait_for(started.wait(), 5)
        assert conn.pending_tasks == 1
        conn.close()
        await asyncio.wait_for(conn.wait_closed(), 5)
        assert conn.pending_tasks == 0 and closed == [conn]
        theirs.close()

    asyncio.run(scenario())


def test_connection_limits_per_address_with_overrides() -> None:
    limits = ConnectionLimits(10, 1, parse_overrides("localhost:2, 10.0.0.9:0"))
    assert limits.overrides == {"127.0.0.1": 2, "10.0.0.9": 0}
    assert limits.admit("127.0.0.1") and limits.admit("127.0.0.1")
    assert not limits.admit("127.0.0.1")
    assert limits.admit("10.0.0.1") and not limits.admit("10.0.0.1")
    assert not limits.admit("10.0.0.9")
    limits.release("127.0.0.1")
    assert limits.admit("127.0.0.1")
    with pytest.raises(ConfigError, match="host:count"):
        parse_overrides("localhost")
