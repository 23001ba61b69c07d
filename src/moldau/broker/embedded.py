"""``moldau.Broker``: a real broker inside your Python process.

For test suites and notebooks: ``with Broker() as broker:`` gives a broker on
a free port of 127.0.0.1, its data in a temporary directory removed on exit,
served by its own event loop in a background thread so that blocking clients
(confluent-kafka, kafka-python) can use it from the main thread. Inside a
running event loop use ``async with Broker() as broker:`` instead, which
serves from that loop.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from types import TracebackType
from typing import Self

from .config import BrokerConfig, parse_values
from .server import BrokerServer

START_TIMEOUT_S = 30.0


class Broker:
    """An in-process moldau broker. ``bootstrap_servers`` says where it is."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_dir: str | None = None,
        config: dict[str, str] | None = None,
    ) -> None:
        raw = {"listeners": f"PLAINTEXT://{host}:{port}"}
        raw.update(config or {})
        self._temporary_dir = None if log_dir else tempfile.mkdtemp(prefix="moldau-")
        raw.setdefault("log.dirs", log_dir or self._temporary_dir or "")
        self.config = BrokerConfig(parse_values(raw))
        self._server: BrokerServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self._server is None:
            raise RuntimeError("the broker is not running")
        return self._server.bootstrap_servers

    @property
    def server(self) -> BrokerServer:
        if self._server is None:
            raise RuntimeError("the broker is not running")
        return self._server

    # -- in a background thread ---------------------------------------------

    def start(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_server())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self.server.wait_stopped())
            finally:
                loop.close()

        self._thread = threading.Thread(target=serve, name="moldau-broker", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise TimeoutError("the broker did not start in time")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None and self._server is not None:
            future = asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop)
            future.result(timeout=START_TIMEOUT_S)
            self._thread.join(timeout=START_TIMEOUT_S)
            self._thread = None
        self._cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inside a running event loop ----------------------------------------

    async def _start_server(self) -> None:
        self._server = BrokerServer(self.config)
        await self._server.start()

    async def __aenter__(self) -> Self:
        await self._start_server()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            await self._server.stop()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._temporary_dir is not None:
            shutil.rmtree(self._temporary_dir, ignore_errors=True)
            self._temporary_dir = None
