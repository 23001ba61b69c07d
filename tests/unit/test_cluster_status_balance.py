"""``moldau cluster status``'s balance view, from values (cluster.status.summarize)."""

from __future__ import annotations

from moldau.cli.cluster import render_status
from moldau.cluster.status import summarize
from moldau.cluster.zk import paths as zp


def registration(broker_id: int) -> zp.BrokerRegistration:
    return zp.BrokerRegistration(
        broker_id, (zp.Endpoint("PLAINTEXT", "127.0.0.1", 9000 + broker_id),)
    )


def test_counts_imbalance_and_reassignments() -> None:
    # Broker 0 holds every replica and is preferred for both partitions;
    # partition 1 is led by broker 1 and is moving from 0 to 2.
    assignment = zp.TopicAssignment(
        None,
        {
            0: zp.ReplicaAssignment((0, 1)),
            1: zp.ReplicaAssignment((0, 1, 2), adding=(2,), removing=(0,)),
            2: zp.ReplicaAssignment((0, 3)),
        },
    )
    states = {
        ("t", 0): zp.PartitionState(0, 1, (0, 1), 1),
        ("t", 1): zp.PartitionState(1, 2, (0, 1), 1),
        ("t", 2): zp.PartitionState(0, 1, (0, 3), 1),
    }
    status = summarize(
        "zk", "id", 0, 1, {b: registration(b) for b in range(4)}, {"t": assignment}, states
    )
    by_id = {b.broker_id: b for b in status.brokers}
    assert [len(by_id[b].hosts) for b in range(4)] == [3, 2, 1, 1]
    assert [len(by_id[b].leads) for b in range(4)] == [2, 1, 0, 0]
    assert [len(by_id[b].preferred) for b in range(4)] == [3, 0, 0, 0]
    assert status.replicas_imbalanced and status.spread("hosts") == 2
    assert [(p.partition, p.adding, p.removing) for p in status.reassigning] == [(1, (2,), (0,))]
    assert [p.partition for p in status.not_preferred] == [1]
    text = render_status(status)
    assert "BROKER  ALIVE  RACK  ENDPOINT                    REPLICAS  LEADS  PREFERRED" in text
    assert any(
        line.startswith("replicas per broker: imbalanced (they differ by 2") for line in text
    )
    assert (
        "preferred leaders per broker: imbalanced; leaders: 1 not on the preferred replica "
        "(`moldau cluster elect-leaders` moves them back)" in text
    )
    assert "  t      1          0,1,2     2       0         0,1" in text
    as_json = status.to_json()
    assert as_json["reassigning"] == [{"topic": "t", "partition": 1}]
    assert as_json["replicas_imbalanced"] is True


def test_a_balanced_cluster_says_so() -> None:
    assignment = zp.TopicAssignment(
        None, {p: zp.ReplicaAssignment((p % 3, (p + 1) % 3)) for p in range(3)}
    )
    states = {("t", p): zp.PartitionState(p % 3, 0, (p % 3, (p + 1) % 3), 1) for p in range(3)}
    status = summarize(
        "zk", "id", 0, 1, {b: registration(b) for b in range(3)}, {"t": assignment}, states
    )
    text = render_status(status)
    assert "replicas per broker: balanced" in text
    assert "preferred leaders per broker: balanced; leaders: all on the preferred replicas" in text
    assert "reassignments in progress: 0" in text
    assert status.empty_brokers == ()


def test_a_live_broker_without_replicas_is_named() -> None:
    assignment = zp.TopicAssignment(None, {0: zp.ReplicaAssignment((0, 1))})
    states = {("t", 0): zp.PartitionState(0, 0, (0, 1), 1)}
    status = summarize(
        "zk", "id", 0, 1, {b: registration(b) for b in range(3)}, {"t": assignment}, states
    )
    assert status.empty_brokers == (2,) and not status.replicas_imbalanced
    assert (
        "replicas per broker: balanced; broker 2 holds none "
        "(`moldau cluster rebalance --add-broker 2` moves some onto it)"
    ) in render_status(status)
    assert status.to_json()["brokers_without_replicas"] == [2]
