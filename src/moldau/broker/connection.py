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

What one connection may cost is bounded, so that no client can starve the
others or exhaust the broker's memory:

- Memory: a size prefix allocates only as bytes arrive, beyond a first
  buffer of ``_FIRST_ALLOCATION`` (1 MiB); the buffer doubles each time it
  fills, and each step is reserved from the broker's ``RequestMemory``
  (Kafka's ``queued.max.request.bytes``) before it is allocated. The kernel
  receives straight into the buffer. Starting smaller was measured: growing
  a 1 MB produce request from 64 KiB tripled its CPU cost (fresh pages fault
  in, where one buffer of the final size reuses warm heap memory), so a
  claim that sends nothing holds at most 1 MiB.
- Time: at most ``_BATCH`` requests are handled per turn of the event loop,
  then the connection yields to the others; Kafka goes further and handles
  one request of a connection at a time. moldau lets up to ``_MAX_IN_FLIGHT``
  wait for their answers (fetches waiting for data, joins waiting for a
  rebalance) and stops reading beyond that.
- Output: reading stops while more than ``_WRITE_HIGH_WATER`` bytes of
  responses wait for a client that does not read them.
- Idleness: ``connections.max.idle.ms`` without a byte either way closes it.

Requests whose answer is an awaitable run as tasks owned by the connection;
closing it cancels them, so a fetch waiting for data dies with its client.
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

from .log_limit import RateLimitedLog
from .request_memory import RequestMemory

log = logging.getLogger(__name__)

_SIZE = struct.Struct(">i")
_READ_CHUNK = 256 * 1024
#: Frames at least this large are received into a buffer of their own.
_LARGE_FRAME = 64 * 1024
#: The first buffer of a large frame, at most; it doubles as bytes arrive
#: beyond it. A produce request within the clients' default limit (1 MB)
#: fits, so it lands in one buffer of its final size.
_FIRST_ALLOCATION = 1024 * 1024
#: Stop reading new requests while this much is waiting to be written.
_WRITE_HIGH_WATER = 16 * 1024 * 1024
#: Requests handled per turn of the event loop before yielding to others.
_BATCH = 16
#: Requests whose answers are not yet written, at most.
_MAX_IN_FLIGHT = 64

Parts = list[Any]
#: Handles one frame; returns response parts, None (no response: acks=0), or
#: an awaitable of either. Raising closes the connection (a frame that could
#: not be parsed at all, a failed Produce with acks=0).
FrameHandler = Callable[["Connection", bytes | bytearray], "Parts | Awaitable[Parts | None] | None"]


class _Slot:
    """The place of one request's response in the connection's order."""

    __slots__ = ("parts", "ready", "reserved")

    def __init__(self, reserved: int) -> None:
        self.parts: Parts | None = None
        self.ready = False
        #: Bytes of the broker's request memory this request holds until answered.
        self.reserved = reserved


class Connection:
    """A client socket served by callbacks on the event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        handler: FrameHandler,
        max_request_bytes: int,
        on_close: Callable[[Connection], None],
        *,
        memory: RequestMemory | None = None,
        idle_ms: int = 0,
        warnings: RateLimitedLog | None = None,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        try:
            host, port = sock.getpeername()[:2]
        except (OSError, ValueError):  # gone already, or not an IP socket
            host, port = "?", 0
        self.peer = f"{host}:{port}"
        self.client_host = host
        #: The listener it came in on (its name, as ``listeners`` gives it):
        #: the addresses a client is told are the ones of that listener.
        self.listener: str | None = None
        self._handler = handler
        self._max_request_bytes = max_request_bytes
        self._on_close = on_close
        self._memory = memory or RequestMemory(0)
        self._warnings = warnings or RateLimitedLog(log)
        self._inbox = bytearray()
        #: Where the unhandled bytes of the inbox start.
        self._inbox_start = 0
        #: A large frame being received into its own buffer, its size and fill.
        self._frame: bytearray | None = None
        self._frame_size = 0
        self._frame_filled = 0
        #: Bytes of the broker's request memory reserved for the large frame.
        self._reserved = 0
        #: Bytes asked of the request memory and queued behind others (0: none).
        self._awaiting_memory = 0
        self._slots: collections.deque[_Slot] = collections.deque()
        self._tasks: set[asyncio.Task[Parts | None]] = set()
        self._outbox: collections.deque[Any] = collections.deque()
        self._outbox_bytes = 0
        self._writing = False
        self._reading = False
        self._processing = False
        self._scheduled = False
        self.closed = False
        self.last_active = loop.time()
        self._idle_s = idle_ms / 1000
        self._idle_timer = loop.call_later(self._idle_s, self._check_idle) if idle_ms > 0 else None
        self._update_reading()

    @property
    def pending_tasks(self) -> int:
        return len(self._tasks)

    # -- reading ------------------------------------------------------------

    def _update_reading(self) -> None:
        """Read while there is room for what the reads would bring."""
        want = not (
            self.closed or self._awaiting_memory or self._blocked() or self._has_unhandled_frame()
        )
        if want and not self._reading:
            self.loop.add_reader(self.fd, self._on_readable)
            self._reading = True
        elif not want and self._reading:
            self.loop.remove_reader(self.fd)
            self._reading = False

    def _blocked(self) -> bool:
        """Too many answers pending or waiting to be written: handle no more for now."""
        return len(self._slots) >= _MAX_IN_FLIGHT or self._outbox_bytes > _WRITE_HIGH_WATER

    def _has_unhandled_frame(self) -> bool:
        if self._frame is not None:
            return self._frame_filled == self._frame_size
        available = len(self._inbox) - self._inbox_start
        if available < 4:
            return False
        size = _SIZE.unpack_from(self._inbox, self._inbox_start)[0]
        return available >= 4 + size or size < 8 or size > self._max_request_bytes

    def _on_readable(self) -> None:
        """Take what the socket has, then handle the frames it completes."""
        try:
            if self._frame is not None:
                if self._frame_filled == len(self._frame):
                    return  # waiting for memory to grow into; reading resumes then
                received = self.sock.recv_into(memoryview(self._frame)[self._frame_filled :])
                if not received:
                    self.close()
                    return
                self._frame_filled += received
                if self._frame_filled == len(self._frame) < self._frame_size:
                    self._ask_to_grow()
            else:
                data = self.sock.recv(_READ_CHUNK)
                if not data:
                    self.close()
                    return
                self._inbox += data
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self.last_active = self.loop.time()
        self._process()

    def _ask_to_grow(self) -> None:
        """Double the full buffer of a large frame, up to the size its prefix claims.

        The step is reserved first; while it does not fit, reading stops.
        """
        assert self._frame is not None
        step = min(len(self._frame), self._frame_size - len(self._frame))
        if self._memory.reserve(step, self._memory_granted, grow=True):
            self._grow(step)
        else:
            self._awaiting_memory = step

    def _grow(self, step: int) -> None:
        assert self._frame is not None
        self._frame += bytes(step)
        self._reserved += step

    def _process(self) -> None:
        """Handle up to ``_BATCH`` complete frames, then yield to other connections."""
        self._scheduled = False
        if self._processing or self.closed:
            return
        self._processing = True
        try:
            handled = 0
            while not self.closed and not self._blocked():
                if handled == _BATCH:
                    self._schedule()
                    break
                frame, reserved = self._next_frame()
                if frame is None:
                    break
                self._dispatch(frame, reserved)
                handled += 1
        finally:
            self._processing = False
        if self._inbox_start:
            del self._inbox[: self._inbox_start]
            self._inbox_start = 0
        self._update_reading()

    def _schedule(self) -> None:
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self.loop.call_soon(self._process)

    def _next_frame(self) -> tuple[bytes | bytearray | None, int]:
        """The next complete frame and the request memory it holds, or None.

        Starts receiving a large frame into a buffer of its own.
        """
        frame = self._frame
        if frame is not None:
            if self._frame_filled < self._frame_size:
                return None, 0
            self._frame = None
            reserved, self._reserved = self._reserved, 0
            self._memory.received()
            return frame, reserved
        inbox = self._inbox
        start = self._inbox_start
        available = len(inbox) - start
        if available < 4:
            return None, 0
        size = _SIZE.unpack_from(inbox, start)[0]
        if size < 8 or size > self._max_request_bytes:
            self._warnings.warning(
                f"closing {self.peer}: request size {size} outside 8..{self._max_request_bytes}"
            )
            self.close()
            return None, 0
        end = start + 4 + size
        if end <= len(inbox):
            self._inbox_start = end
            return bytes(inbox[start + 4 : end]), 0
        if size >= _LARGE_FRAME:
            self._start_large_frame(size)
        return None, 0

    def _start_large_frame(self, size: int) -> None:
        """Move a partly received large frame into a buffer of its own.

        The buffer holds what arrived, at least ``_FIRST_ALLOCATION`` bytes,
        and is reserved from the broker's request memory first; while the
        budget is spent the connection reads nothing more.
        """
        start = self._inbox_start + 4
        have = len(self._inbox) - start
        if not self._reserved:
            if self._awaiting_memory:
                return
            first = min(size, max(have, _FIRST_ALLOCATION))
            if not self._memory.reserve(first, self._memory_granted, grow=False):
                self._awaiting_memory = first
                return
            self._reserved = first
        frame = bytearray(self._reserved)
        frame[:have] = memoryview(self._inbox)[start:]
        self._frame = frame
        self._frame_size = size
        self._frame_filled = have
        self._inbox_start = len(self._inbox)
        if have == len(frame):  # full already: room for what comes next
            self._ask_to_grow()

    def _memory_granted(self) -> None:
        """The request memory reserved what we asked for: go on receiving."""
        granted, self._awaiting_memory = self._awaiting_memory, 0
        if self._frame is None:
            self._reserved = granted
            self._schedule()  # _process starts the frame's buffer
        else:
            self._grow(granted)
            self._update_reading()

    def _dispatch(self, frame: bytes | bytearray, reserved: int) -> None:
        slot = _Slot(reserved)
        self._slots.append(slot)
        try:
            result = self._handler(self, frame)
        except Exception as exc:
            # A request that cannot be answered (see FrameHandler); the handler said why.
            log.debug("closing %s: request not answerable", self.peer, exc_info=exc)
            self.close()
            return
        if result is None or isinstance(result, list):
            self._complete(slot, result)
        else:
            task = asyncio.ensure_future(result, loop=self.loop)
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._finish(slot, t))

    def _finish(self, slot: _Slot, task: asyncio.Task[Parts | None]) -> None:
        self._tasks.discard(task)
        if self.closed:
            return
        if task.cancelled():
            self.close()
            return
        error = task.exception()
        if error is not None:
            self._warnings.warning(f"closing {self.peer}: request failed: {error!r}", error)
            self.close()
            return
        self._complete(slot, task.result())

    def _complete(self, slot: _Slot, parts: Parts | None) -> None:
        slot.parts = parts
        slot.ready = True
        if slot.reserved:
            self._memory.release(slot.reserved)
            slot.reserved = 0
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
        before = self._outbox_bytes
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
        if self._outbox_bytes < before:
            self.last_active = self.loop.time()
        if outbox and not self._writing:
            self.loop.add_writer(self.fd, self._flush)
            self._writing = True
        elif not outbox and self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False
        if self._processing:
            return  # _process looks at the state once it has handled its batch
        if not self._blocked() and self._has_unhandled_frame():
            self._schedule()
        self._update_reading()

    # -- idleness and closing -----------------------------------------------

    def _check_idle(self) -> None:
        """Close after ``connections.max.idle.ms`` without a byte read or written."""
        if self.closed:
            return
        idle = self.loop.time() - self.last_active
        if idle >= self._idle_s:
            log.debug("closing %s: idle for %.0f ms", self.peer, idle * 1000)
            self.close()
            return
        self._idle_timer = self.loop.call_later(self._idle_s - idle, self._check_idle)

    def close(self) -> None:
        """Close the socket, cancel what its requests still wait for, free their memory."""
        if self.closed:
            return
        self.closed = True
        if self._reading:
            self.loop.remove_reader(self.fd)
            self._reading = False
        if self._writing:
            self.loop.remove_writer(self.fd)
            self._writing = False
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for task in self._tasks:
            task.cancel()
        if self._awaiting_memory:
            self._memory.forget(self._memory_granted)
            self._awaiting_memory = 0
        if self._frame is not None or self._reserved:
            self._memory.received()
        held = self._reserved
        for slot in self._slots:
            held += slot.reserved
            slot.reserved = 0  # a late _complete must not give it back twice
        self._reserved = 0
        self._frame = None
        self._outbox.clear()
        self._slots.clear()
        if held:
            self._memory.release(held)
        try:
            self.sock.close()
        finally:
            self._on_close(self)

    async def wait_closed(self) -> None:
        """Until the cancelled tasks of a closed connection have finished."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks)
