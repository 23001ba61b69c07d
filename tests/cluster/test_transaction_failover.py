"""Transaction coordinator failover on a real 3-broker cluster.

The coordinator of a transactional id is the leader of its
``__transaction_state`` partition (RF 3). It is killed with SIGKILL while a
confluent-kafka producer's transaction is open; a survivor becomes the
partition's leader, loads the id's state (Ongoing, with its partitions), and
the producer commits through it: a read_committed consumer then reads every
record of the transaction, once.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import RawConnection, confluent_read_isolated, wait_for
from moldau.cluster.local import LocalCluster
from moldau.cluster.local_zookeeper import ZooKeeperServer
from moldau.protocol.api_keys import ApiKey
from moldau.testing import CLUSTER_TEST_DEFAULTS

pytestmark = pytest.mark.cluster

PARTITIONS = 3


def find_coordinator(port: int, tid: str, but: int | None = None) -> tuple[int] | None:
    """The coordinator a broker names for ``tid``, other than ``but``."""
    with RawConnection(port) as conn:
        answer = conn.request(ApiKey.FIND_COORDINATOR, 3, {"key": tid, "key_type": 1})
    found = int(answer["node_id"])
    return (found,) if answer["error_code"] == 0 and found != but else None


def describe(port: int, tid: str) -> dict[str, Any]:
    with RawConnection(port) as conn:
        body = conn.request(ApiKey.DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": [tid]})
    [state] = body["transaction_states"]
    return state


def test_a_transaction_commits_through_the_next_coordinator_after_kill_9(
    moldau_zookeeper: ZooKeeperServer, tmp_path: Path
) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    with LocalCluster(
        tmp_path / "cluster",
        3,
        zookeeper_connect=f"{moldau_zookeeper.connect}/moldau-{uuid.uuid4().hex[:12]}",
        broker_config=CLUSTER_TEST_DEFAULTS,
    ) as cluster:
        topic, tid = f"t-{uuid.uuid4().hex[:8]}", f"tx-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers, "log_level": 2})
        admin.create_topics([NewTopic(topic, PARTITIONS, 3)])[topic].result(20)
        producer = Producer(
            {
                "bootstrap.servers": cluster.bootstrap_servers,
                "transactional.id": tid,
                "transaction.timeout.ms": 120_000,
                "log_level": 2,
            }
        )
        producer.init_transactions(60)
        first = cluster.port(cluster.broker_ids[0])
        (old,) = wait_for(lambda: find_coordinator(first, tid), 30, what="a coordinator")
        producer.begin_transaction()
        values = [b"v%d" % i for i in range(30)]
        for i, value in enumerate(values):
            producer.produce(topic, value=value, partition=i % PARTITIONS)
        assert producer.flush(30) == 0
        assert describe(cluster.port(old), tid)["transaction_state"] == "Ongoing"

        cluster.kill(old, signal.SIGKILL)
        survivor = next(b for b in cluster.broker_ids if b != old)
        (new,) = wait_for(
            lambda: find_coordinator(cluster.port(survivor), tid, but=old),
            cluster.session_timeout + 30,
            what="a new coordinator",
        )
        loaded = wait_for(
            lambda: (s := describe(cluster.port(new), tid))["error_code"] == 0 and s,
            30,
            what="the id loaded by the new coordinator",
        )
        assert loaded["transaction_state"] == "Ongoing"
        assert {p for t in loaded["topics"] for p in t["partitions"]} == set(range(PARTITIONS))

        producer.commit_transaction(60)
        wait_for(
            lambda: describe(cluster.port(new), tid)["transaction_state"] == "CompleteCommit",
            30,
            what="CompleteCommit",
        )
        live = ",".join(cluster.address(b) for b in cluster.broker_ids if b != old)
        read = confluent_read_isolated(live, topic, PARTITIONS, "read_committed", len(values))
        assert sorted(read) == sorted(values)
