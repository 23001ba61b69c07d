"""Transaction markers in a 3-broker cluster (real ZooKeeper, SIGKILL):
markers written on the leader reach the followers byte for byte, with their
aborted-transaction index; after the leader is killed, the new leader
answers the same last stable offset and aborted transactions, and ends the
transaction left open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_replication import SESSION_MS, Cluster, started, wait_identical

from conftest import RawConnection, wait_for
from support.txn_wire import (
    FETCH,
    TxnProducer,
    committed_fetch,
    list_latest,
    write_markers,
)
from support.zookeeper import ZooKeeper

pytestmark = pytest.mark.cluster

NOT_LEADER_OR_FOLLOWER = 6


@pytest.fixture
def cluster(zookeeper: ZooKeeper, tmp_path: Path) -> Iterator[Cluster]:
    # The coordinator's part is played by hand: no verification with it.
    with started(
        zookeeper, tmp_path, **{"transaction.partition.verification.enable": "false"}
    ) as cluster:
        yield cluster


def txn_index(cluster: Cluster, broker_id: int, topic: str) -> bytes:
    directory = cluster.brokers[broker_id].data_dir / f"{topic}-0"
    return b"".join(p.read_bytes() for p in sorted(directory.glob("*.txnindex")))


def committed_view(port: int, topic: str) -> tuple[int, list[Any]]:
    """(last stable offset, aborted transactions) a read_committed fetch gets."""
    with RawConnection(port) as conn:
        response = conn.request(FETCH, 12, committed_fetch(topic, {0: 0}))
    [answer] = response["responses"][0]["partitions"]
    assert answer["error_code"] == 0
    return answer["last_stable_offset"], answer["aborted_transactions"]


def test_markers_replicate_and_survive_a_leader_kill(cluster: Cluster) -> None:
    cluster.create_topic("tx", 1, 3, **{"min.insync.replicas": "2"})
    wait_for(lambda: len(cluster.partition("tx", 0).isrs) == 3, 20, what="ISR of 3")
    leader = cluster.partition("tx", 0).leader
    follower = next(b for b in cluster.brokers if b != leader)
    with RawConnection(cluster.brokers[leader].port) as conn:
        aborted, committed, left_open = TxnProducer(conn), TxnProducer(conn), TxnProducer(conn)
        aborted.send("tx", 0, [b"a1", b"a2"])  # 0-1
        committed.send("tx", 0, [b"c1"])  # 2
        left_open.send("tx", 0, [b"o1"])  # 3
        assert aborted.end(False, {"tx": [0]}) == {("tx", 0): 0}  # 4, answered once replicated
        assert committed.end(True, {"tx": [0]}) == {("tx", 0): 0}  # 5
        assert list_latest(conn, "tx", isolation=1) == 3
    with RawConnection(cluster.brokers[follower].port) as conn:
        refused = write_markers(conn, left_open.pid, 0, True, {"tx": [0]})
        assert refused == {("tx", 0): NOT_LEADER_OR_FOLLOWER}
    before = committed_view(cluster.brokers[leader].port, "tx")
    assert before == (3, [{"producer_id": aborted.pid, "first_offset": 0}])
    wait_identical(cluster, "tx", 0, [1, 2, 3])
    indexes = {txn_index(cluster, b, "tx") for b in cluster.brokers}
    assert len(indexes) == 1 and len(indexes.pop()) == 34  # one entry, the same everywhere

    cluster.brokers[leader].kill()
    wait_for(
        lambda: cluster.partition("tx", 0).leader not in (-1, leader),
        SESSION_MS / 1000 + 10,
        what="a new leader",
    )
    new_leader = cluster.brokers[cluster.partition("tx", 0).leader]
    wait_for(lambda: committed_view(new_leader.port, "tx") == before, 10, what="the same LSO")
    with RawConnection(new_leader.port) as conn:
        assert write_markers(conn, left_open.pid, 0, False, {"tx": [0]}) == {("tx", 0): 0}
        assert list_latest(conn, "tx", isolation=1) == 7
    lso, aborted_txns = committed_view(new_leader.port, "tx")
    assert lso == 7
    assert aborted_txns == [
        {"producer_id": aborted.pid, "first_offset": 0},
        {"producer_id": left_open.pid, "first_offset": 3},
    ]
