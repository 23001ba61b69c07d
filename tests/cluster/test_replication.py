"""Replication end to end: real ZooKeeper, three broker processes, confluent-kafka.

Followers fetch from their leaders and keep byte-identical logs; acks=all
answers once the ISR has a batch; a leader killed with SIGKILL is replaced
by a follower that has every acknowledged record; the killed broker comes
back, truncates what only it had, and catches up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    BrokerProcess,
    RawConnection,
    Rec,
    confluent_produce,
    confluent_read_all,
    wait_for,
)
from support.zookeeper import ZooKeeper

pytestmark = pytest.mark.cluster

SESSION_MS = 3000


class Cluster:
    """Three brokers of one ZooKeeper chroot, as subprocesses."""

    def __init__(self, zookeeper: ZooKeeper, root: Path, count: int = 3, **overrides: str) -> None:
        self.brokers = {
            broker_id: BrokerProcess(
                root / f"data-{broker_id}",
                **{
                    "zookeeper.connect": zookeeper.connect,
                    "broker.id": str(broker_id),
                    "zookeeper.session.timeout.ms": str(SESSION_MS),
                    "replica.fetch.backoff.ms": "200",
                    **overrides,
                },
            )
            for broker_id in range(1, count + 1)
        }

    @property
    def bootstrap(self) -> str:
        return ",".join(b.bootstrap for b in self.brokers.values() if b.process is not None)

    def live_bootstrap(self) -> str:
        return ",".join(
            b.bootstrap
            for b in self.brokers.values()
            if b.process is not None and b.process.poll() is None
        )

    def start(self) -> None:
        for broker in self.brokers.values():
            broker.start()
        wait_for(lambda: len(self.admin().list_topics(timeout=5).brokers) == len(self.brokers), 20)

    def kill_all(self) -> None:
        for broker in self.brokers.values():
            broker.kill()

    def admin(self) -> Any:
        from confluent_kafka.admin import AdminClient

        return AdminClient({"bootstrap.servers": self.live_bootstrap()})

    def create_topic(self, name: str, partitions: int, replicas: int, **configs: str) -> None:
        from confluent_kafka.admin import NewTopic

        topic = NewTopic(
            name, num_partitions=partitions, replication_factor=replicas, config=configs
        )
        admin = self.admin()  # kept: the future fails once its client is collected
        admin.create_topics([topic])[name].result(20)

    def partition(self, topic: str, index: int) -> Any:
        """The PartitionMetadata of topic-index, as a live broker tells it."""
        return self.partition_from(self.live_bootstrap(), topic, index)

    def partition_from(self, bootstrap: str, topic: str, index: int) -> Any:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": bootstrap})
        return admin.list_topics(topic, timeout=5).topics[topic].partitions[index]

    def log_bytes(self, broker_id: int, topic: str, index: int) -> bytes:
        directory = self.brokers[broker_id].data_dir / f"{topic}-{index}"
        return b"".join(p.read_bytes() for p in sorted(directory.glob("*.log")))


@contextlib.contextmanager
def started(zookeeper: ZooKeeper, root: Path, **overrides: str) -> Iterator[Cluster]:
    """A started cluster whose brokers are all killed at the end."""
    cluster = Cluster(zookeeper, root, **overrides)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.kill_all()


@pytest.fixture
def cluster(zookeeper: ZooKeeper, tmp_path: Path) -> Iterator[Cluster]:
    with started(zookeeper, tmp_path) as cluster:
        yield cluster


def records(tag: str, count: int) -> list[Rec]:
    return [Rec(key=None, value=f"{tag}-{i}".encode()) for i in range(count)]


def wait_identical(cluster: Cluster, topic: str, index: int, broker_ids: list[int]) -> bytes:
    """Wait until the replicas' log files are equal (and not empty); their bytes."""

    def same() -> bytes | None:
        logs = {cluster.log_bytes(b, topic, index) for b in broker_ids}
        return logs.pop() if len(logs) == 1 and b"" not in logs else None

    result: bytes = wait_for(same, 20, what=f"identical logs of {topic}-{index} on {broker_ids}")
    return result


def test_acks_all_reaches_every_replica_and_survives_a_leader_kill(cluster: Cluster) -> None:
    cluster.create_topic("r", 1, 3, **{"min.insync.replicas": "2"})
    wait_for(lambda: len(cluster.partition("r", 0).isrs) == 3, 20, what="ISR of 3")
    first = records("a", 500)
    acked = confluent_produce(cluster.bootstrap, "r", first, **{"enable.idempotence": True})
    assert [r.offset for r in acked] == list(range(500))
    wait_identical(cluster, "r", 0, [1, 2, 3])
    assert sorted(r.value for r in confluent_read_all(cluster.bootstrap, "r")) == sorted(
        r.value for r in first
    )

    leader = cluster.partition("r", 0).leader
    cluster.brokers[leader].kill()
    wait_for(
        lambda: cluster.partition("r", 0).leader not in (-1, leader),
        SESSION_MS / 1000 + 10,
        what="a new leader",
    )
    new_leader = cluster.partition("r", 0).leader
    second = records("b", 200)
    confluent_produce(cluster.live_bootstrap(), "r", second, **{"enable.idempotence": True})
    got = {r.value for r in confluent_read_all(cluster.live_bootstrap(), "r")}
    assert got == {r.value for r in first + second}, "an acknowledged record was lost"

    cluster.brokers[leader].start()
    wait_identical(cluster, "r", 0, [1, 2, 3])
    assert cluster.partition("r", 0).leader == new_leader
    # Caught up, it rejoins the ISR (the leader's AlterPartition).
    wait_for(lambda: len(cluster.partition("r", 0).isrs) == 3, 20, what="the ISR back to 3")


def test_a_returning_leader_truncates_what_only_it_had(
    zookeeper: ZooKeeper, tmp_path: Path
) -> None:
    """Both followers die; the leader, alone in the ISR, takes acks=1 writes
    no one else sees, then dies too. The followers return and one leads
    (an unclean election, allowed for this topic) at a new epoch and takes
    new writes. The old leader returns as a follower: the diverging epoch
    tells it where its log left the new leader's, it drops its own tail and
    ends byte-identical."""
    with started(zookeeper, tmp_path, **{"unclean.leader.election.enable": "true"}) as cluster:
        returning_leader_truncates(cluster)


def returning_leader_truncates(cluster: Cluster) -> None:
    cluster.create_topic("t", 1, 3, **{"min.insync.replicas": "1"})
    wait_for(lambda: len(cluster.partition("t", 0).isrs) == 3, 20, what="ISR of 3")
    confluent_produce(cluster.bootstrap, "t", records("a", 50))
    wait_identical(cluster, "t", 0, [1, 2, 3])
    state = cluster.partition("t", 0)
    leader = state.leader
    followers = [r for r in state.replicas if r != leader]
    for f in followers:
        cluster.brokers[f].kill()
    wait_for(
        lambda: cluster.partition("t", 0).isrs == [leader],
        SESSION_MS / 1000 + 10,
        what="the leader alone in the ISR",
    )
    confluent_produce(cluster.brokers[leader].bootstrap, "t", records("lost", 20), acks="1")
    assert b"lost-19" in cluster.log_bytes(leader, "t", 0)
    cluster.brokers[leader].kill()
    for f in followers:
        cluster.brokers[f].start()
    wait_for(
        lambda: cluster.partition("t", 0).leader in followers,
        SESSION_MS / 1000 + 10,
        what="a new leader",
    )
    confluent_produce(cluster.live_bootstrap(), "t", records("b", 30))
    cluster.brokers[leader].start()
    log = wait_identical(cluster, "t", 0, [1, 2, 3])
    assert b"lost-" not in log and b"b-29" in log
    got = {r.value for r in confluent_read_all(cluster.bootstrap, "t")}
    assert got == {r.value for r in records("a", 50) + records("b", 30)}
    # The controller says the loss: a leader elected from outside the ISR.
    said = "".join(b.log_path.read_text() for b in cluster.brokers.values())
    assert "unclean leader election of t-0" in said


def test_acks_all_times_out_while_a_follower_is_missing_and_min_isr_refuses(
    cluster: Cluster,
) -> None:
    """min.insync.replicas 3: with one broker gone the ISR shrinks to 2 and
    acks=all is refused before the append (NOT_ENOUGH_REPLICAS); acks=1 is not."""
    from confluent_kafka import KafkaError, Producer

    cluster.create_topic("m", 1, 3, **{"min.insync.replicas": "3"})
    wait_for(lambda: len(cluster.partition("m", 0).isrs) == 3, 20, what="ISR of 3")
    confluent_produce(cluster.bootstrap, "m", records("ok", 10))
    state = cluster.partition("m", 0)
    follower = next(r for r in state.replicas if r != state.leader)
    cluster.brokers[follower].kill()
    wait_for(lambda: len(cluster.partition("m", 0).isrs) == 2, SESSION_MS / 1000 + 10)

    errors: list[Any] = []
    producer = Producer(
        {
            "bootstrap.servers": cluster.live_bootstrap(),
            "acks": "all",
            "message.timeout.ms": 3000,
            "retries": 0,
        }
    )
    producer.produce("m", b"refused", on_delivery=lambda e, m: errors.append(e))
    producer.flush(10)
    assert [e.code() for e in errors] == [KafkaError.NOT_ENOUGH_REPLICAS]
    confluent_produce(cluster.live_bootstrap(), "m", records("one", 5), acks="1")


def test_a_paused_follower_leaves_the_isr_and_rejoins_after_catching_up(
    zookeeper: ZooKeeper, tmp_path: Path
) -> None:
    """replica.lag.time.max.ms 1 s, sessions 8 s: a follower stopped with
    SIGSTOP leaves the ISR through the leader's AlterPartition (its session
    still lives), so an acks=all write completes without it; resumed, it
    catches up and the leader takes it back."""
    overrides = {"replica.lag.time.max.ms": "1000", "zookeeper.session.timeout.ms": "8000"}
    with started(zookeeper, tmp_path, **overrides) as cluster:
        cluster.create_topic("p", 1, 3, **{"min.insync.replicas": "2"})
        wait_for(lambda: len(cluster.partition("p", 0).isrs) == 3, 20, what="ISR of 3")
        confluent_produce(cluster.bootstrap, "p", records("before", 10))
        state = cluster.partition("p", 0)
        follower = next(r for r in state.replicas if r != state.leader)
        cluster.brokers[follower].pause()
        try:
            confluent_produce(cluster.bootstrap, "p", records("while", 10))
            assert sorted(cluster.partition("p", 0).isrs) == sorted(
                r for r in state.replicas if r != follower
            )
            assert len(cluster.admin().list_topics(timeout=5).brokers) == 3, "the session ended"
        finally:
            cluster.brokers[follower].resume()
        wait_for(lambda: len(cluster.partition("p", 0).isrs) == 3, 20, what="the ISR back to 3")
        wait_identical(cluster, "p", 0, [1, 2, 3])


def produce_request(topic: str, value: bytes, timeout_ms: int) -> dict[str, Any]:
    """An acks=all Produce v9 body of one record to partition 0."""
    from moldau.protocol.records import Record, build_batch

    batch = build_batch([Record(0, 0, None, value)], base_timestamp=1)
    return {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": timeout_ms,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    }


def produce_acks_all(port: int, topic: str, value: bytes, timeout_ms: int) -> tuple[int, float]:
    """One acks=all Produce v9 over a raw connection: (error code, seconds to the answer)."""
    body = produce_request(topic, value, timeout_ms)
    started_at = time.monotonic()
    with RawConnection(port) as conn:
        response = conn.request(0, 9, body)
    [answer] = response["responses"][0]["partition_responses"]
    return answer["error_code"], time.monotonic() - started_at


def test_acks_all_waits_for_the_isr_and_times_out_without_it(
    zookeeper: ZooKeeper, tmp_path: Path
) -> None:
    """With a follower stopped (but in the ISR: lag and session are long), an
    acks=all write waits and gets REQUEST_TIMED_OUT at the request's timeout;
    resumed, the follower catches up and the next one is answered at once."""
    overrides = {"zookeeper.session.timeout.ms": "10000"}
    with started(zookeeper, tmp_path, **overrides) as cluster:
        cluster.create_topic("w", 1, 3, **{"min.insync.replicas": "2"})
        wait_for(lambda: len(cluster.partition("w", 0).isrs) == 3, 20, what="ISR of 3")
        state = cluster.partition("w", 0)
        port = cluster.brokers[state.leader].port
        assert produce_acks_all(port, "w", b"first", 5000)[0] == 0
        follower = next(r for r in state.replicas if r != state.leader)
        cluster.brokers[follower].pause()
        try:
            code, took = produce_acks_all(port, "w", b"waits", 700)
            assert code == 7, "REQUEST_TIMED_OUT"
            assert took >= 0.6
        finally:
            cluster.brokers[follower].resume()
        code, took = produce_acks_all(port, "w", b"after", 5000)
        assert code == 0
        wait_identical(cluster, "w", 0, [1, 2, 3])


def test_a_follower_behind_the_leaders_log_start_restarts_there(cluster: Cluster) -> None:
    """A follower is down while the leader's log start moves past its log
    end (DeleteRecords): back, its fetch is out of range, and it empties its
    log and starts at the leader's log start (inside a batch: the batch's
    base), then copies the rest byte for byte."""
    from confluent_kafka import TopicPartition

    cluster.create_topic("o", 1, 3, **{"min.insync.replicas": "2"})
    wait_for(lambda: len(cluster.partition("o", 0).isrs) == 3, 20, what="ISR of 3")
    confluent_produce(cluster.bootstrap, "o", records("a", 50))
    wait_identical(cluster, "o", 0, [1, 2, 3])
    state = cluster.partition("o", 0)
    follower = next(r for r in state.replicas if r != state.leader)
    cluster.brokers[follower].kill()
    wait_for(lambda: len(cluster.partition("o", 0).isrs) == 2, SESSION_MS / 1000 + 10)
    confluent_produce(cluster.live_bootstrap(), "o", records("b", 50))
    admin = cluster.admin()
    [done] = admin.delete_records([TopicPartition("o", 0, 75)]).values()
    assert done.result(10).low_watermark == 75
    cluster.brokers[follower].start()

    def caught_up() -> bool:
        mine = cluster.log_bytes(follower, "o", 0)
        leader = cluster.log_bytes(state.leader, "o", 0)
        return b"b-49" in mine and leader.endswith(mine)

    wait_for(caught_up, 20, what="the follower restarted at the leader's log start")
    assert b"a-49" not in cluster.log_bytes(follower, "o", 0)
    wait_for(lambda: len(cluster.partition("o", 0).isrs) == 3, 20, what="the ISR back to 3")


def test_a_replaced_leader_acknowledges_nothing_and_rejoins_as_follower(
    cluster: Cluster,
) -> None:
    """The leader is stopped (SIGSTOP) past its session: the controller
    elects a follower, which takes acks=all writes. An acks=all write sent to
    the old leader while it is stopped is read when it resumes, still
    believing it leads: it must not be acknowledged (its followers follow
    the new leader), and the old leader then truncates it and follows."""
    cluster.create_topic("s", 1, 3, **{"min.insync.replicas": "2"})
    wait_for(lambda: len(cluster.partition("s", 0).isrs) == 3, 20, what="ISR of 3")
    confluent_produce(cluster.bootstrap, "s", records("a", 20))
    state = cluster.partition("s", 0)
    old = state.leader
    others = [r for r in state.replicas if r != old]
    others_bootstrap = ",".join(cluster.brokers[r].bootstrap for r in others)
    stale = produce_request("s", b"stale", timeout_ms=2000)
    cluster.brokers[old].pause()
    try:
        wait_for(
            lambda: cluster.partition_from(others_bootstrap, "s", 0).leader in others,
            SESSION_MS / 1000 + 10,
            what="a new leader",
        )
        confluent_produce(others_bootstrap, "s", records("b", 20))
        conn = RawConnection(cluster.brokers[old].port)
        correlation_id = conn.send(0, 9, stale)
    finally:
        cluster.brokers[old].resume()
    with conn:
        response = conn.receive(0, 9, correlation_id)
    [answer] = response["responses"][0]["partition_responses"]
    assert answer["error_code"] != 0, "a replaced leader acknowledged an acks=all write"
    log = wait_identical(cluster, "s", 0, [1, 2, 3])
    assert b"stale" not in log and b"b-19" in log
    got = {r.value for r in confluent_read_all(others_bootstrap, "s")}
    assert got == {r.value for r in records("a", 20) + records("b", 20)}


def test_an_idempotent_producer_keeps_going_across_a_leader_kill(cluster: Cluster) -> None:
    """One idempotent acks=all producer sends on while its leader is killed:
    it retries its unanswered batches at the new leader, whose producer
    state came from the batches it copied as a follower, so every
    acknowledged record is there exactly once, and no record twice."""
    from confluent_kafka import Producer

    cluster.create_topic("i", 1, 3, **{"min.insync.replicas": "2"})
    wait_for(lambda: len(cluster.partition("i", 0).isrs) == 3, 20, what="ISR of 3")
    leader = cluster.partition("i", 0).leader
    producer = Producer(
        {
            "bootstrap.servers": cluster.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "retry.backoff.ms": 100,
        }
    )
    acked: list[bytes] = []
    failed: list[Any] = []

    def report(error: Any, message: Any) -> None:
        (failed if error is not None else acked).append(error or message.value())

    total = 3000
    for i in range(total):
        producer.produce("i", f"v-{i}".encode(), on_delivery=report)
        producer.poll(0)
        if i == total // 2:
            # Some answered, some in flight: kill the leader mid-stream.
            wait_for(lambda: producer.poll(0.01) >= 0 and len(acked) >= total // 4, 15)
            cluster.brokers[leader].kill()
    assert producer.flush(60) == 0
    assert failed == []
    got = [r.value for r in confluent_read_all(cluster.live_bootstrap(), "i")]
    assert len(got) == len(set(got)), "a record was written twice"
    assert set(got) == set(acked) and len(acked) == total
