"""ZooKeeper for the cluster tests: the server (moldau's own, from
``moldau.cluster.local_zookeeper``), a chroot per test, and session expiry."""

from __future__ import annotations

from dataclasses import dataclass

from kazoo.client import KazooClient

from moldau.cluster.local_zookeeper import ZooKeeperServer


@dataclass(frozen=True)
class ZooKeeper:
    """What a test gets: the shared server and a chroot of its own.

    The chroot does not exist yet: whoever connects creates it, as Kafka's
    client does with the chroot of ``zookeeper.connect``.
    """

    server: ZooKeeperServer
    chroot: str

    @property
    def connect(self) -> str:
        """A ``zookeeper.connect`` string with this test's chroot."""
        return f"{self.server.connect}{self.chroot}"


def expire_session(connect: str, session_id: int, password: bytes, timeout: float = 10.0) -> None:
    """End a client's session from outside, as ZooKeeper does when it expires.

    A second client joins the same session (id and password) and closes it;
    the server then deletes the session's ephemeral znodes and the first
    client learns that its session is gone when it next talks to the server.
    This is ZooKeeper's own test technique, and needs no sleep.
    """
    intruder = KazooClient(hosts=connect, client_id=(session_id, password), timeout=timeout)
    intruder.start(timeout=timeout)
    try:
        if intruder.client_id is None or intruder.client_id[0] != session_id:
            raise RuntimeError("could not join the session to expire it")
    finally:
        intruder.stop()
        intruder.close()
