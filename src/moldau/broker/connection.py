"""One client connection: frames in, responses out in request order.

We drive the socket ourselves with the event loop's reader and writer
callbacks instead of an asyncio transport. The reason is sendfile: a fetch
response is a few bytes of header followed by slices of segment files, and a
transport offers no way to interleave its buffered writes with
``os.sendfile`` on the same socket. Owning the descriptor, we write bytes with
``send`` and log data with ``sendfile``, in order, without copying the log
through Python. Everything else is what an asyncio Protocol does: callbacks,
no task per connection, no task per request that completes at once.

Kafka answers requests of one connection in the order they arrived, even when
a later one is ready first; ``_slots`` keeps that order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
_READ_CHUNK = 256 * 1024
#: Frames at least this large are received into a buffer of their own.
_LARGE_FRAME = 64 * 1024
#: Stop reading new requests while this much is waiting to be written.
_WRITE_HIGH_WATER = 16 * 1024 * 1024

Parts = list[Any]
#: Handles one frame; returns response parts, None (no response: acks=0), or
#: an awaitable of either.
FrameHandler = Callable[["Connection", bytes | bytearray], "Parts | Awaitable[Parts | None] | None"]


class _Slot:
    """The place of one request's response in the connection's order."""

    __slots__ = ("parts", "ready")

    def __init__(self) -> None:
        self.parts: Parts | None = None
        self.ready = False


class Connection:
    """A client socket served by callbacks on the event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        handler: FrameHandler,
        max_request_bytes: int,
        on_close: Callable[[Connection], None],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        try:
            host, port = sock.getpeername()[:2]
        except OSError:
            host, port = "?", 0
        self.peer = f"{host}:{port}"
        self.client_host = host
        self._handler = handler
        self._max_request_bytes = max_request_bytes
        self._on_close = on_close
        self._inbox = bytearray()
        #: A large frame being received into its own buffer, and how full it is.
        self._frame: bytearray | None = None
        self._frame_filled = 0
        self._slots: collections.deque[_Slot] = collections.deque()
        self._outbox: collections.deque[Any] = collections.deque()
        self._outbox_bytes = 0
        self._writing = False
        self._reading = False
        self.closed = False
        self._resume_reading()

    # -- reading ------------------------------------------------------------

    def _resume_reading(self) -> None:
        if not self._reading and not self.closed:
            self.loop.add_reader(self.fd, self._on_readable)
            self._reading = True

    def _pause_reading(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.fd)
            self._reading = False

    def _on_readable(self) -> None:
        """Read what the socket has; dispatch every complete frame.

        Small frames are cut out of a shared buffer. A large frame (a produce
        of many batches) is received straight into a buffer of its own size,
        so its bytes are copied once, by the kernel, and never shifted.
        """
        try:
            if self._frame is not None:
                self._receive_into_frame()
                return
            data = self.sock.recv(_READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if not data:
            self.close()
            return
        inbox = self._inbox
        inbox += data
        start = 0
        available = len(inbox)
        while available - start >= 4:
            size = _SIZE.unpack_from(inbox, start)[0]
            if size < 8 or size > self._max_request_bytes:
                log.warning(
                    "closing %s: request size %d outside 8..%d",
                    self.peer,
                    size,
                    self._max_request_bytes,
                )
                self.close()
                return
            end = start + 4 + size
            if end > available:
                if size >= _LARGE_FRAME:
                    frame = bytearray(size)
                    frame[: available - start - 4] = memoryview(inbox)[start + 4 :]
                    self._frame = frame
                    self._frame_filled = available - start - 4
                    start = available
                break
            self._dispatch(bytes(inbox[start + 4 : end]))
            if self.closed:
                return
            start = end
        if start:
            del inbox[:start]

    def _receive_into_frame(self) -> None:
        frame = self._frame
        assert frame is not None
        received = self.sock.recv_into(memoryview(frame)[self._frame_filled :])
        if not received:
            self.close()
            return
        self._frame_filled += received
        if self._frame_filled == len(frame):
            self._frame = None
            self._dispatch(frame)

    def _dispatch(self, frame: bytes | bytearray) -> None:
        slot = _Slot()
        self._slots.append(slot)
        try:
            result = self._handler(self, frame)
        except Exception:
            log.exception("closing %s: request could not be handled", self.peer)
            self.close()
            return
        if result is None or isinstance(result, list):
            self._complete(slot, result)
        else:
            task = self.loop.create_task(_await(result))
            task.add_done_callback(lambda t: self._finish(slot, t))

    def _finish(self, slot: _Slot, task: asyncio.Task[Parts | None]) -> None:
        if task.cancelled():
            self.close()
            return
        error = task.exception()
        if error is not None:
            log.error("closing %s: request failed", self.peer, exc_info=error)
            self.close()
            return
        self._complete(slot, task.result())

    def _complete(self, slot: _Slot, parts: Parts | None) -> None:
        slot.parts = parts
        slot.ready = True
        slots = self._slots
        while slots and slots[0].ready:
            done = slots.popleft()
            if done.parts is not None:
                self._queue(done.parts)
        self._flush()

    # -- writing ------------------------------------------------------------

    def _queue(self, parts: Parts) -> None:
        pending: list[bytes | bytearray] = []
        for part in parts:
            if isinstance(part, bytes | bytearray):
                pending.append(part)
                continue
            if pending:
                self._push_bytes(pending)
                pending = []
            if part.length:
                self._outbox.append([part.file, part.position, part.length])
                self._outbox_bytes += part.length
        if pending:
            self._push_bytes(pending)

    def _push_bytes(self, pending: list[bytes | bytearray]) -> None:
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        self._outbox.append(memoryview(data))
        self._outbox_bytes += len(data)

    def _flush(self) -> None:
        if self.closed:
            return
        outbox = self._outbox
        try:
            while outbox:
                item = outbox[0]
                if isinstance(item, memoryview):
                    sent = self.sock.send(item)
                    self._outbox_bytes -= sent
                    if sent < len(item):
                        outbox[0] = item[sent:]
                        break
                else:
                    file, position, remaining = item
                    sent = os.sendfile(self.fd, file.fileno(), position, remaining)
                    if sent == 0:
                        raise OSError("segment file shorter than its slice")
                    self._outbox_bytes -= sent
                    if sent < remaining:
                        item[1] = position + sent
                        item[2] = remaining - sent
                        break
                outbox.popleft()
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.close()
            return
        if outbox and not self._writing:
            self.loop.add_writer(self.fd, self._flush)
            self._writing = True
        elif not outbox and self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False
        if self._outbox_bytes > _WRITE_HIGH_WATER:
            self._pause_reading()
        else:
            self._resume_reading()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._pause_reading()
        if self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False
        self._outbox.clear()
        self._slots.clear()
        try:
            self.sock.close()
        finally:
            self._on_close(self)


async def _await(result: Awaitable[Parts | None]) -> Parts | None:
    return await result
