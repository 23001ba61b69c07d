"""The ZooKeeper fixture itself: a real server, a chroot per test, session expiry."""

from __future__ import annotations

import threading

import pytest
from kazoo.client import KazooClient, KazooState

from support.zookeeper import ZooKeeper, expire_session

pytestmark = pytest.mark.cluster


def make_chroot(zookeeper: ZooKeeper) -> None:
    client = KazooClient(hosts=zookeeper.server.connect)
    client.start(timeout=10)
    try:
        client.ensure_path(zookeeper.chroot)
    finally:
        client.stop()
        client.close()


def test_server_answers_and_chroots_are_separate(zookeeper: ZooKeeper) -> None:
    make_chroot(zookeeper)
    client = KazooClient(hosts=zookeeper.connect)
    client.start(timeout=10)
    try:
        client.ensure_path("/x")
        assert client.exists("/x")
    finally:
        client.stop()
        client.close()
    outer = KazooClient(hosts=zookeeper.server.connect)
    outer.start(timeout=10)
    try:
        assert outer.exists(f"{zookeeper.chroot}/x")
        assert not outer.exists("/x")
    finally:
        outer.stop()
        outer.close()


def test_expire_session_removes_ephemerals(zookeeper: ZooKeeper) -> None:
    make_chroot(zookeeper)
    client = KazooClient(hosts=zookeeper.connect, timeout=4.0)
    lost = threading.Event()
    client.add_listener(lambda state: lost.set() if state == KazooState.LOST else None)
    client.start(timeout=10)
    watcher = KazooClient(hosts=zookeeper.connect)
    watcher.start(timeout=10)
    try:
        client.create("/eph", b"x", ephemeral=True, makepath=True)
        gone = threading.Event()
        watcher.exists("/eph", watch=lambda event: gone.set())
        session_id, password = client.client_id
        expire_session(zookeeper.server.connect, session_id, password)
        assert gone.wait(10), "the ephemeral znode outlived its session"
        assert watcher.exists("/eph") is None
        assert lost.wait(10), "the client never learnt its session expired"
    finally:
        for c in (client, watcher):
            c.stop()
            c.close()
