"""Fixtures for tests against a real ZooKeeper.

One server for the whole session (it starts in about a second); every test
gets its own chroot, so tests never see each other's znodes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.zookeeper import ZooKeeper, ZooKeeperServer


@pytest.fixture(scope="session")
def zookeeper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer(Path(tmp_path_factory.mktemp("zookeeper")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def zookeeper(zookeeper_server: ZooKeeperServer) -> ZooKeeper:
    return ZooKeeper(zookeeper_server, f"/moldau-test-{uuid.uuid4().hex[:12]}")
