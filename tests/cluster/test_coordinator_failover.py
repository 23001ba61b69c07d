"""Group coordinator failover on a real 3-broker cluster (RF 3 offsets topic).

- kill -9 of the group's coordinator while a confluent-kafka group consumes
  and commits, audited by ``moldau verify``: the group goes on with the new
  coordinator, no accepted commit is forgotten (``commit_lost``), no
  partition has two owners (``double_owned``), nothing is skipped or lost;
  and every partition's committed offset after the kill is at least what it
  was before.
- The rebalance history is kept for groups of every coordinator, also of
  those that do not lead the history topic's partition (they send it there).
- SIGSTOP of the coordinator past its ZooKeeper session: once replaced, a
  commit it takes after SIGCONT is not acknowledged (its high watermark
  cannot move: the ISR follows the new leader), and the group's offset is
  the one the new coordinator accepted.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import RawConnection, rebalances, wait_for
from moldau.cluster.local import LocalCluster
from moldau.cluster.local_zookeeper import ZooKeeperServer
from moldau.group.history import HISTORY_TOPIC
from moldau.group.placement import partition_for_group
from moldau.protocol.api_keys import ApiKey
from moldau.protocol.errors import ErrorCode
from moldau.testing import CLUSTER_TEST_DEFAULTS

pytestmark = pytest.mark.cluster

OFFSETS = "__consumer_offsets"


def admin(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})


def live_bootstrap(cluster: LocalCluster, but: int | None = None) -> str:
    return ",".join(cluster.address(b) for b in cluster.broker_ids if b != but)


def find_coordinator(port: int, group: str, but: int | None = None) -> tuple[int] | None:
    """The coordinator a broker names for ``group``, other than ``but``; None
    while it names none (a tuple, so that broker 0 is found too)."""
    with RawConnection(port) as conn:
        answer = conn.request(ApiKey.FIND_COORDINATOR, 3, {"key": group, "key_type": 0})
    found = int(answer["node_id"])
    return (found,) if answer["error_code"] == 0 and found != but else None


def commit_body(group: str, topic: str, offset: int) -> dict[str, Any]:
    """A standalone consumer's commit (no generation), as the admin client sends."""
    partition = {
        "partition_index": 0,
        "committed_offset": offset,
        "committed_leader_epoch": -1,
        "committed_metadata": "",
    }
    return {
        "group_id": group,
        "generation_id_or_member_epoch": -1,
        "member_id": "",
        "group_instance_id": None,
        "topics": [{"name": topic, "partitions": [partition]}],
    }


def commit(conn: RawConnection, group: str, topic: str, offset: int) -> int:
    answer = conn.request(ApiKey.OFFSET_COMMIT, 8, commit_body(group, topic, offset))
    return int(answer["topics"][0]["partitions"][0]["error_code"])


def committed(port: int, group: str, topic: str) -> int:
    body = {"group_id": group, "topics": [{"name": topic, "partition_indexes": [0]}]}
    with RawConnection(port) as conn:
        answer = conn.request(ApiKey.OFFSET_FETCH, 7, body)
    assert answer["error_code"] == 0, answer
    return int(answer["topics"][0]["partitions"][0]["committed_offset"])


def offsets_isr(bootstrap: str, group: str) -> tuple[int, list[int]]:
    partitions = admin(bootstrap).list_topics(OFFSETS, timeout=5).topics[OFFSETS].partitions
    state = partitions[partition_for_group(group, len(partitions))]
    return state.leader, list(state.isrs)


def test_a_replaced_coordinator_acknowledges_no_commit(moldau_cluster: LocalCluster) -> None:
    cluster = moldau_cluster
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    from confluent_kafka.admin import NewTopic

    client = admin(cluster.bootstrap_servers)
    client.create_topics([NewTopic(topic, 1, 3)])[topic].result(20)
    port = cluster.port(cluster.broker_ids[0])
    (old,) = wait_for(lambda: find_coordinator(port, group), 30, what="a coordinator")
    wait_for(
        lambda: len(offsets_isr(cluster.bootstrap_servers, group)[1]) == 3,
        30,
        what="the offsets partition's ISR of 3",
    )
    survivor = next(b for b in cluster.broker_ids if b != old)
    with RawConnection(cluster.port(old), timeout=30) as stale:
        assert commit(stale, group, topic, 5) == ErrorCode.NONE
        cluster.kill(old, signal.SIGSTOP)
        try:
            (new,) = wait_for(
                lambda: find_coordinator(cluster.port(survivor), group, but=old),
                cluster.session_timeout + 20,
                what="a new coordinator",
            )
            with RawConnection(cluster.port(new)) as conn:
                accepted = wait_for(
                    lambda: commit(conn, group, topic, 10) == ErrorCode.NONE,
                    20,
                    what="a commit the new coordinator accepts",
                )
                assert accepted
        finally:
            cluster.kill(old, signal.SIGCONT)
        # The stale coordinator may take the commit before it hears it was
        # replaced: it must not acknowledge it.
        error = commit(stale, group, topic, 99)
    assert error in (ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE), error
    assert committed(cluster.port(new), group, topic) == 10
    # Back as a follower, the old coordinator dropped what only it had.
    wait_for(
        lambda: len(offsets_isr(cluster.bootstrap_servers, group)[1]) == 3,
        30,
        what="the old coordinator back in the ISR",
    )
    assert committed(cluster.port(new), group, topic) == 10


def verify(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moldau", "verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_group_consumes_on_across_a_coordinator_kill(
    moldau_zookeeper: ZooKeeperServer, tmp_path: Path
) -> None:
    """A cluster of its own: the broker verify starts again after the kill
    is not the fixture's, and only ``LocalCluster.stop`` stops it too."""
    path = tmp_path / "history.json"
    with LocalCluster(
        tmp_path / "cluster",
        3,
        zookeeper_connect=f"{moldau_zookeeper.connect}/moldau-{uuid.uuid4().hex[:12]}",
        broker_config=CLUSTER_TEST_DEFAULTS,
    ) as cluster:
        session = cluster.session_timeout
        done = verify(
            "--dir", cluster.directory,
            "--duration", str(session + 8), "--partitions", "3", "--consumers", "2",
            "--rate", "300", "--faults", "kill", "--target", "coordinator",
            "--interval", "4", "--fault-time", str(session + 2), "--seed", "1",
            "--history", path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "VERDICT: clean" in done.stdout, done.stdout
        history = json.loads(path.read_text())
        stored = committed_offsets(cluster, history["topic"], history["partitions"])
    kills = [f for f in history["info"]["faults"] if f["kind"] == "kill" and f["injected"]]
    assert kills, history["info"]["faults"]
    killed_at = kills[0]["injected"]
    accepted = [c for c in history["commits"] if c["ok"]]
    assert any(c["done"] < killed_at for c in accepted), "no commit before the kill"
    assert any(c["started"] > killed_at for c in accepted), "no commit after the kill"
    # Every commit the coordinators accepted, before or after the kill, is
    # kept: the group's offsets in the end are at least the highest of them.
    for partition in range(history["partitions"]):
        highest = max((c["offset"] for c in accepted if c["partition"] == partition), default=-1)
        assert stored[partition] >= highest, (partition, stored, highest)


def committed_offsets(cluster: LocalCluster, topic: str, partitions: int) -> list[int]:
    """The offsets the verify workload's group (``TOPIC-group``) has committed."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": cluster.bootstrap_servers, "group.id": f"{topic}-group"}
    )
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], 20)
    finally:
        consumer.close()
    return [tp.offset for tp in found]


def test_every_coordinator_keeps_the_rebalance_history(moldau_cluster: LocalCluster) -> None:
    from confluent_kafka import Consumer
    from confluent_kafka.admin import NewTopic

    cluster = moldau_cluster
    topic = f"h-{uuid.uuid4().hex[:8]}"
    client = admin(cluster.bootstrap_servers)
    client.create_topics([NewTopic(topic, 1, 3)])[topic].result(20)
    port = cluster.port(cluster.broker_ids[0])
    groups: dict[int, str] = {}
    for n in range(100):  # a group per coordinator (a broker back from a fault leads none)
        group = f"{topic}-g{n}"
        (coordinator,) = wait_for(lambda g=group: find_coordinator(port, g), 30, what="coordinator")
        groups.setdefault(coordinator, group)
    assert len(groups) >= 2, groups
    consumers = [
        Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": g, "log_level": 2})
        for g in groups.values()
    ]
    try:
        for consumer in consumers:
            consumer.subscribe([topic])
        wait_for(
            lambda: all(c.poll(0.05) is None and c.assignment() for c in consumers),
            30,
            what="every group stable",
        )
    finally:
        for consumer in consumers:
            consumer.close()
    for group in groups.values():
        wait_for(
            lambda g=group: any(
                r.outcome == "empty" for r in rebalances(cluster.bootstrap_servers, g)
            ),
            20,
            what=f"the history of {group}: joined, then empty",
        )
    history = admin(cluster.bootstrap_servers).list_topics(HISTORY_TOPIC, timeout=5)
    leader = history.topics[HISTORY_TOPIC].partitions[0].leader
    assert set(groups) - {leader}, "every group's coordinator leads the history"
