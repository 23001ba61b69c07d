"""One TCP connection to one broker.

Requests are pipelined: each gets a correlation id and a future, is written
at once, and its future is resolved from ``data_received`` when the answer
with that id arrives (Kafka answers in order on a connection). No task per
request: an asyncio ``BufferedProtocol`` decodes frames as they come in.

Receiving is a buffered protocol because of the replica fetchers: a
follower's fetch answers are megabytes of records, and a plain ``Protocol``
gets each read as a fresh ``bytes`` that must be copied again into a growing
frame buffer. Here the kernel writes small frames into one reusable buffer
(copied out whole, a few bytes each) and a large frame straight into a
buffer of its own final size, which its decoded records then keep views into:
the only copy is the kernel's. That buffer is used again for a later large
frame once nothing views it any more (a follower's answer is appended before
its next fetch is sent), so its memory stays mapped and warm instead of being
allocated, zeroed and faulted in again for every answer.

On connect the client asks ApiVersions and, per API, uses the highest version
both sides know (capped where the client builds bodies that later versions
changed, see ``_CLIENT_MAX``).

A request that gets no answer within its timeout fails with REQUEST_TIMED_OUT
and closes the connection, as the Java client does: the answers queued behind
it can no longer be trusted to come, and a fresh connection is cheap.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Any, cast

import moldau
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.messages import decode_response, encode_request, supported_versions

from .errors import make_error

__all__ = ["BrokerConnection", "connect"]

Body = dict[str, Any]

_SIZE = struct.Struct(">i")
_ERROR = struct.Struct(">h")
#: The reusable receive buffer; a frame that does not fit in what is left of
#: it gets a buffer of its own.
_READ_BUFFER = 256 * 1024
#: Frames at least this large are received into a buffer of their own rather
#: than copied out of the reusable one.
_LARGE_FRAME = 64 * 1024

#: Versions past these name topics by id (Produce/Fetch 13+) where the client
#: names them; the client stays below until it tracks topic ids.
_CLIENT_MAX: dict[int, int] = {ApiKey.PRODUCE: 12, ApiKey.FETCH: 12}
#: The codecs also know the versions Kafka 4.0 dropped (for the broker); the
#: client writes and reads record batches v2 and one offset per partition only.
_CLIENT_MIN: dict[int, int] = {ApiKey.PRODUCE: 3, ApiKey.FETCH: 4, ApiKey.LIST_OFFSETS: 1}


@dataclass(slots=True)
class _InFlight:
    api_key: int
    version: int
    future: asyncio.Future[Body]
    timer: asyncio.TimerHandle


def pick_versions(broker_ranges: dict[int, tuple[int, int]]) -> dict[int, int]:
    """Per API, the highest version both the broker and the client speak."""
    chosen = {}
    for api_key, (lo, hi) in broker_ranges.items():
        ours = supported_versions(api_key)
        if ours is None:
            continue
        top = min(hi, ours.stop - 1, _CLIENT_MAX.get(api_key, hi))
        if top >= max(lo, ours.start, _CLIENT_MIN.get(api_key, 0)):
            chosen[api_key] = top
    return chosen


class BrokerConnection(asyncio.BufferedProtocol):
    """A connected, version-negotiated link to ``host:port``; make one with
    :func:`connect`."""

    def __init__(self, host: str, port: int, client_id: str, request_timeout_ms: int) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.request_timeout_ms = request_timeout_ms
        #: Negotiated version per API key (filled by ``_negotiate``).
        self.versions: dict[int, int] = {}
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        #: The reusable buffer and how much of it holds received bytes.
        self._buf = bytearray(_READ_BUFFER)
        self._filled = 0
        #: A large frame being received (without its size prefix) into the
        #: start of ``_frame``, its size, and how much of it has arrived.
        self._frame: bytearray | None = None
        self._frame_size = 0
        self._frame_filled = 0
        #: The last large frame's buffer, for the next one.
        self._spare: bytearray | None = None
        self._pending: dict[int, _InFlight] = {}
        self._next_id = 0
        self._closed = False
        self._write_ready = asyncio.Event()
        self._write_ready.set()
        self.closed_future: asyncio.Future[None] = self._loop.create_future()

    def __repr__(self) -> str:
        return f"<BrokerConnection {self.host}:{self.port}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # --- requests ------------------------------------------------------------

    def version(self, api_key: int) -> int:
        """The version to use for ``api_key``; UNSUPPORTED_VERSION if none."""
        try:
            return self.versions[api_key]
        except KeyError:
            raise KafkaError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"broker {self.host}:{self.port} does not support {_api_name(api_key)}",
            ) from None

    def send(
        self,
        api_key: int,
        body: Body,
        *,
        version: int | None = None,
        timeout_ms: int | None = None,
        expect_response: bool = True,
    ) -> asyncio.Future[Body]:
        """Write a request now; the future resolves with the response body.

        ``expect_response=False`` is for Produce with acks=0, which the broker
        never answers: the future resolves (with ``{}``) once the bytes are
        handed to the transport.
        """
        future: asyncio.Future[Body] = self._loop.create_future()
        if self._closed or self._transport is None:
            future.set_exception(self._lost_error())
            return future
        if version is None:
            version = self.version(api_key)
        correlation_id = self._next_id
        self._next_id = (self._next_id + 1) & 0x7FFFFFFF
        frame = encode_request(api_key, version, correlation_id, self.client_id, body)
        if expect_response:
            timeout = (timeout_ms if timeout_ms is not None else self.request_timeout_ms) / 1000
            timer = self._loop.call_later(timeout, self._timed_out, correlation_id)
            self._pending[correlation_id] = _InFlight(api_key, version, future, timer)
        self._transport.write(frame)
        if not expect_response:
            future.set_result({})
        return future

    async def request(
        self,
        api_key: int,
        body: Body,
        *,
        version: int | None = None,
        timeout_ms: int | None = None,
    ) -> Body:
        """Send and wait for the response body."""
        return await self.send(api_key, body, version=version, timeout_ms=timeout_ms)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high mark."""
        if not self._write_ready.is_set():
            await self._write_ready.wait()
        if self._closed:
            raise self._lost_error()

    def close(self) -> None:
        """Close now; requests still waiting fail with NETWORK_EXCEPTION."""
        if self._transport is not None and not self._closed:
            self._transport.close()
        self._shutdown(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self.closed_future)

    # --- asyncio.BufferedProtocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._shutdown(exc)

    def pause_writing(self) -> None:
        self._write_ready.clear()

    def resume_writing(self) -> None:
        self._write_ready.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._frame is not None:
            return memoryview(self._frame)[self._frame_filled : self._frame_size]
        return memoryview(self._buf)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        frame = self._frame
        if frame is not None:
            self._frame_filled += nbytes
            if self._frame_filled == self._frame_size:
                self._frame = None
                self._spare = frame
                self._dispatch(memoryview(frame)[: self._frame_size])
            return
        self._filled += nbytes
        self._split_frames()

    def _split_frames(self) -> None:
        """Dispatch the whole frames in the reusable buffer; move a large
        partial one to a buffer of its own, a small one to the front."""
        buf = self._buf
        start = 0
        end = self._filled
        while end - start >= 4:
            size = _SIZE.unpack_from(buf, start)[0]
            if size < 4:  # not even a correlation id: nothing after it can be trusted
                self._fail_connection(
                    KafkaError(ErrorCode.CORRUPT_MESSAGE, f"{self} sent a frame of {size} bytes")
                )
                return
            frame_end = start + 4 + size
            if frame_end <= end:
                self._dispatch(bytes(memoryview(buf)[start + 4 : frame_end]))
                start = frame_end
                continue
            if size >= _LARGE_FRAME:
                frame = self._large_buffer(size)
                received = end - start - 4
                frame[:received] = memoryview(buf)[start + 4 : end]
                self._frame, self._frame_size, self._frame_filled = frame, size, received
                start = end
            break
        if start:
            left = end - start
            buf[:left] = buf[start:end]
            self._filled = left

    def _large_buffer(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes: the spare one if it is large
        enough and no decoded answer still views it, else a new one."""
        spare, self._spare = self._spare, None
        if spare is not None and len(spare) >= size:
            try:
                spare.append(0)  # refused while any memoryview of it is alive
            except BufferError:
                pass
            else:
                del spare[-1]
                return spare
        return bytearray(size)

    # --- internals -------------------------------------------------------------

    def _dispatch(self, frame: memoryview | bytes) -> None:
        correlation_id = _SIZE.unpack_from(frame, 0)[0]
        pending = self._pending.pop(correlation_id, None)
        if pending is None:
            self._fail_connection(
                KafkaError(
                    ErrorCode.CORRUPT_MESSAGE,
                    f"{self.host}:{self.port} answered unknown correlation id {correlation_id}",
                )
            )
            return
        pending.timer.cancel()
        if pending.future.done():  # cancelled by the caller
            return
        version = pending.version
        # A broker that does not know our ApiVersions version answers in v0
        # so that we can read its ranges (KIP-511).
        if (
            pending.api_key == ApiKey.API_VERSIONS
            and len(frame) >= 6
            and _ERROR.unpack_from(frame, 4)[0] == ErrorCode.UNSUPPORTED_VERSION
        ):
            version = 0
        try:
            _, body = decode_response(pending.api_key, version, frame)
        except Exception as exc:
            pending.future.set_exception(
                KafkaError(
                    ErrorCode.CORRUPT_MESSAGE,
                    f"cannot decode {_api_name(pending.api_key)} v{version} "
                    f"response from {self.host}:{self.port}: {exc}",
                )
            )
            return
        pending.future.set_result(body)

    def _timed_out(self, correlation_id: int) -> None:
        pending = self._pending.pop(correlation_id, None)
        if pending is None:
            return
        error = KafkaError(
            ErrorCode.REQUEST_TIMED_OUT,
            f"{_api_name(pending.api_key)} to {self.host}:{self.port} got no answer in time",
        )
        if not pending.future.done():
            pending.future.set_exception(error)
        self._fail_connection(error)

    def _fail_connection(self, error: KafkaError) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._shutdown(error)

    def _lost_error(self) -> KafkaError:
        return KafkaError(
            ErrorCode.NETWORK_EXCEPTION, f"connection to {self.host}:{self.port} is closed"
        )

    def _shutdown(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._write_ready.set()
        pending, self._pending = self._pending, {}
        for item in pending.values():
            item.timer.cancel()
            if not item.future.done():
                error = self._lost_error()
                if exc is not None:
                    error.__cause__ = exc
                item.future.set_exception(error)
        if not self.closed_future.done():
            self.closed_future.set_result(None)

    async def _negotiate(self) -> None:
        ours = supported_versions(ApiKey.API_VERSIONS)
        assert ours is not None
        version = ours.stop - 1
        body = {
            "client_software_name": "moldau",
            "client_software_version": moldau.__version__,
        }
        for _ in range(2):
            response = await self.request(ApiKey.API_VERSIONS, body, version=version)
            ranges = {
                entry["api_key"]: (entry["min_version"], entry["max_version"])
                for entry in response["api_keys"]
            }
            code = response["error_code"]
            if code == ErrorCode.UNSUPPORTED_VERSION and ApiKey.API_VERSIONS in ranges:
                version = min(version, ranges[ApiKey.API_VERSIONS][1])
                continue
            if code:
                raise make_error(code, context=f"ApiVersions to {self.host}:{self.port}")
            self.versions = pick_versions(ranges)
            return
        raise KafkaError(
            ErrorCode.UNSUPPORTED_VERSION, f"{self.host}:{self.port} refuses every ApiVersions"
        )


async def connect(
    host: str,
    port: int,
    *,
    client_id: str = "moldau",
    request_timeout_ms: int = 30_000,
    connect_timeout_ms: int = 10_000,
) -> BrokerConnection:
    """Open a connection and negotiate API versions.

    Failures are NETWORK_EXCEPTION (retriable) with the address in the text.
    """
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: BrokerConnection(host, port, client_id, request_timeout_ms), host, port
            ),
            connect_timeout_ms / 1000,
        )
    except (OSError, TimeoutError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
        raise KafkaError(
            ErrorCode.NETWORK_EXCEPTION, f"cannot connect to {host}:{port} ({reason})"
        ) from exc
    try:
        await conn._negotiate()
    except BaseException:
        conn.close()
        raise
    return conn


def _api_name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return f"API {api_key}"
