"""Shared fixtures: real moldau brokers as subprocesses, and ways to wait.

Tests talk to brokers over real sockets with real clients. A broker runs as a
``moldau broker`` subprocess so that tests can kill -9 it, SIGSTOP it and
restart it on the same data directory; every process started here is killed
in a finally, and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from moldau.cluster.local_zookeeper import ZooKeeperServer
from support.zookeeper import ZooKeeper

if TYPE_CHECKING:
    from moldau.group.history import RebalanceRecord

ROOT = Path(__file__).resolve().parent.parent
MOLDAU = str(Path(sys.executable).parent / "moldau")


#: The event loops the Python client is tested on: uvloop (what the CLI and
#: the broker use) and asyncio's own. Their timer handles differ: uvloop's
#: ``call_at`` returns a plain ``Handle`` for a deadline under a millisecond
#: ahead.
LOOP_FACTORIES: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop
}
try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
    pass
else:
    LOOP_FACTORIES["uvloop"] = uvloop.new_event_loop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as exc:  # the condition may fail until it holds
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what or condition}: {last_error}")


def answers_api_versions(port: int) -> bool:
    """True once a broker on ``port`` answers an ApiVersions v0 request."""
    request = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        header = sock.recv(8)
        return len(header) == 8 and struct.unpack(">ii", header)[1] == 1


@dataclass(frozen=True)
class Rec:
    """One record as a client sent or received it; -1 where the client does not know."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = -1
    partition: int = -1
    offset: int = -1


def sample_records(tag: str, count: int, first_timestamp: int) -> list[Rec]:
    """Keyed records with unique values, repeated and empty headers, rising timestamps."""
    return [
        Rec(
            key=f"key-{i % 7}".encode(),
            value=f"{tag}:{i}:".encode() + b"payload " * (i % 40),
            headers=(("tag", tag.encode()), ("seq", str(i).encode()), ("seq", b""), ("z", b"1")),
            timestamp=first_timestamp + i,
        )
        for i in range(count)
    ]


def assert_round_trip(sent: Sequence[Rec], got: Sequence[Rec]) -> None:
    """Every sent record came back exactly once, each partition in send order at 0, 1, 2...

    What a sender did not know (-1: partition, offset or timestamp) is taken
    from what came back; records of one key must share a partition.
    """
    assert sorted(r.value for r in got) == sorted(r.value for r in sent), "records lost or doubled"
    order = {r.value: i for i, r in enumerate(sent)}
    by_partition: dict[int, list[Rec]] = defaultdict(list)
    for record in got:
        by_partition[record.partition].append(record)
    key_partitions: dict[bytes | None, set[int]] = defaultdict(set)
    for partition, records in by_partition.items():
        records.sort(key=lambda r: r.offset)
        expected = sorted((sent[order[r.value]] for r in records), key=lambda r: order[r.value])
        filled = [
            replace(
                want,
                partition=partition if want.partition < 0 else want.partition,
                offset=offset if want.offset < 0 else want.offset,
                timestamp=seen.timestamp if want.timestamp < 0 else want.timestamp,
            )
            for offset, (want, seen) in enumerate(zip(expected, records, strict=True))
        ]
        assert records == filled, f"partition {partition} differs from what was sent"
        for record in records:
            key_partitions[record.key].add(partition)
    assert all(len(p) == 1 for p in key_partitions.values()), "one key in several partitions"


def create_topic(bootstrap: str, name: str, partitions: int, **configs: str) -> None:
    """Create a topic with confluent-kafka's admin API and wait for the answer."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=configs)
    admin.create_topics([topic])[name].result(10)


def confluent_produce(
    bootstrap: str, topic: str, records: Sequence[Rec], **config: Any
) -> list[Rec]:
    """Send ``records`` with confluent-kafka (acks=all unless ``config`` says otherwise).

    Returns them with the partition and offset of their acknowledgement; a
    timestamp of -1 lets the producer stamp the time of send.
    """
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **config})
    placed: dict[bytes, tuple[int, int]] = {}
    errors: list[Any] = []

    def report(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)
        else:
            placed[message.value()] = (message.partition(), message.offset())

    for record in records:
        producer.produce(
            topic,
            value=record.value,
            key=record.key,
            headers=list(record.headers),
            timestamp=max(record.timestamp, 0),
            on_delivery=report,
        )
    assert producer.flush(15) == 0, "records left undelivered"
    assert errors == []
    return [replace(r, partition=placed[r.value][0], offset=placed[r.value][1]) for r in records]


def confluent_read_all(bootstrap: str, topic: str, timeout: float = 20.0) -> list[Rec]:
    """Every record of ``topic`` up to the high watermarks at the start, via confluent-kafka."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "enable.auto.commit": False}
    )
    got: list[Rec] = []
    try:
        count = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        ends = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(count)
        ]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(count)])
        deadline = time.monotonic() + timeout
        while len(got) < sum(ends):
            assert time.monotonic() < deadline, f"read {len(got)} of {sum(ends)} records"
            for message in consumer.consume(1000, timeout=0.2):
                assert message.error() is None, message.error()
                got.append(
                    Rec(
                        key=message.key(),
                        value=message.value(),
                        headers=tuple(message.headers() or ()),
                        timestamp=message.timestamp()[1],
                        partition=message.partition(),
                        offset=message.offset(),
                    )
                )
    finally:
        consumer.close()
    return got


def confluent_read_isolated(
    bootstrap: str, topic: str, partitions: int, isolation: str, expected: int
) -> list[bytes]:
    """The values of ``topic`` a confluent-kafka consumer with ``isolation``
    (``read_committed`` or ``read_uncommitted``) reads from the start, once it
    has reached the end of every partition (the LSO under read_committed) and
    has at least ``expected`` records."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from confluent_kafka import KafkaError as ConfluentError

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-{isolation}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "log_level": 2,
        }
    )
    got: list[bytes] = []
    at_end: set[int] = set()
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])

        def done() -> bool:
            for message in consumer.consume(100, timeout=0.2):
                if message.error() is None:
                    got.append(message.value())
                elif message.error().code() == ConfluentError._PARTITION_EOF:
                    at_end.add(message.partition())
            return len(at_end) == partitions and len(got) >= expected

        wait_for(done, 30, interval=0, what=f"{expected} records under {isolation}")
    finally:
        consumer.close()
    return got


class RawConnection:
    """A blocking Kafka connection for tests that need exact requests or exact bytes.

    Requests are encoded with moldau's own codecs (checked against kio's
    elsewhere); ``send_bytes`` and ``read_frame`` let a test speak nonsense.
    """

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._correlation_id = 0

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, api_key: int, version: int, body: dict[str, Any]) -> int:
        """Send one request; returns its correlation id."""
        from moldau.protocol.messages import encode_request

        self._correlation_id += 1
        self.sock.sendall(encode_request(api_key, version, self._correlation_id, "test", body))
        return self._correlation_id

    def receive(self, api_key: int, version: int, correlation_id: int) -> dict[str, Any]:
        from moldau.protocol.messages import decode_response

        frame = self.read_frame()
        assert frame is not None, "the broker closed the connection"
        got, body = decode_response(api_key, version, frame)
        assert got == correlation_id
        return body

    def request(self, api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
        return self.receive(api_key, version, self.send(api_key, version, body))

    def read_frame(self) -> bytes | None:
        """The next response frame without its size prefix; None once the broker closed."""
        head = self._read_exactly(4)
        if head is None:
            return None
        body = self._read_exactly(struct.unpack(">i", head)[0])
        assert body is not None, "connection closed inside a response"
        return body

    def _read_exactly(self, count: int) -> bytes | None:
        data = bytearray()
        while len(data) < count:
            try:
                chunk = self.sock.recv(count - len(data))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            data += chunk
        return bytes(data)


class BrokerProcess:
    """A ``moldau broker`` subprocess on a fixed port and data directory."""

    def __init__(self, data_dir: Path, port: int | None = None, **overrides: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.overrides = overrides
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"broker-{self.port}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> BrokerProcess:
        args = [
            MOLDAU,
            "broker",
            "--override",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "--override",
            f"log.dirs={self.data_dir}",
        ]
        for key, value in self.overrides.items():
            args += ["--override", f"{key.replace('_', '.')}={value}"]
        log_file = open(self.log_path, "ab")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
        log_file.close()
        try:
            wait_for(
                lambda: self._exited() or answers_api_versions(self.port),
                timeout,
                what=f"broker on port {self.port}",
            )
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"broker did not start:\n{self.output()}") from None
        if self._exited():
            raise RuntimeError(f"broker exited:\n{self.output()}")
        return self

    def _exited(self) -> bool:
        """True once the process is gone: a broker that cannot start fails at once."""
        return self.process is None or self.process.poll() is not None

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait: the clean shutdown path."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def memory(self, field: str = "VmRSS") -> int:
        """Bytes of a memory figure from /proc/PID/status (VmRSS now, VmHWM peak)."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        [line] = [line for line in status.splitlines() if line.startswith(f"{field}:")]
        return int(line.split()[1]) * 1024

    def kill(self) -> None:
        """kill -9, if still running."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    """Start brokers as subprocesses; all are killed when the test ends."""
    started: list[BrokerProcess] = []

    def make(data_dir: Path | None = None, **overrides: str) -> BrokerProcess:
        broker = BrokerProcess(data_dir or tmp_path / f"data-{len(started)}", **overrides)
        started.append(broker)
        return broker.start()

    try:
        yield make
    finally:
        for broker in started:
            broker.kill()


@pytest.fixture
def broker(broker_factory: Callable[..., BrokerProcess]) -> BrokerProcess:
    """One fresh broker subprocess for this test."""
    return broker_factory()


#: kafka-python 3.0.12 now and then never applies a group assignment the
#: broker did send it: the cause is in the client, so these scenarios rerun
#: twice for kafka-python only (a broker bug that fails every time still fails).
#:
#: Caught with GROUP_MEMBER_LOG under a CPU hog
#: (test_partitions_added_to_the_topic_are_assigned_and_read, member m1):
#:
#:   WARNING:kafka.coordinator.assignors.range:No partition metadata for topic grow-kafka-python
#:   DEBUG:kafka.coordinator.consumer:need_rejoin: True (assignment_snapshot != metadata_snapshot:
#:       {} != {'grow-kafka-python': {0, 1}})
#:   INFO:kafka.coordinator:Successfully joined group g <Generation 2 (member_id: m1-..., ...)>
#:   INFO:kafka.coordinator:Elected group leader -- performing partition assignments using range
#:   DEBUG:kafka.coordinator:Received SyncGroup response: SyncGroupResponse(version=5,
#:       error_code=0, ..., assignment=b'...grow-kafka-python...\x00\x00\x00\x01...')
#:   DEBUG:kafka.coordinator.consumer:coordinator.poll: timeout in ensure_active_group;
#:       returning early
#:   DEBUG:kafka.coordinator.consumer:need_rejoin: False (from base.rejoin_needed;
#:       assignment_snapshot={'grow-kafka-python': {0, 1}} metadata_snapshot={...: {0, 1}} ...)
#:   ... the last line 77,000 more times; never "Enabling heartbeat" nor
#:   "Updated partition assignment". The broker's answers all took < 30 ms.
#:
#: The path, in kafka/coordinator/base.py and consumer.py: the leader assigned
#: generation 1 before its first Metadata answer (nothing to assign), then
#: rejoined because ConsumerCoordinator.need_rejoin saw the metadata snapshot
#: change; base.rejoin_needed had stayed False since generation 1. While
#: generation 2's join task ran, _perform_assignment set _assignment_snapshot =
#: _metadata_snapshot. The poll's 50 ms ran out in join_group_async's
#: ``await self._manager.wait_for(self._join_task, ...)`` (KafkaTimeoutError:
#: return False, the finished task kept for the next poll), and the next poll
#: re-awaits that task only inside ``while self.need_rejoin():``, which is now
#: False. So _on_join_complete_async never runs: the assignment is never
#: applied and heartbeats stay disabled until the session times out.
#:
#: The same dropped task, other face (test_members_starting_together_...,
#: leader m0, first join, so base.rejoin_needed still True): SyncGroup answered
#: at 53,318, "coordinator.poll: timeout in ensure_active_group; returning
#: early" at 53,349, then "(Re-)joining group g" at 53,350: the next poll finds
#: ``self._join_task.is_done`` and sends a new JoinGroup instead of taking the
#: finished task's assignment, so the group rebalances twice. A restarted
#: static leader hits it too (test_static_member_restarted_...[leader-kafka-
#: python-range]: SyncGroup answered at 09,372, a new JoinGroup at 09,378); a
#: JoinGroup from the leader of a Stable group is a rebalance, in Kafka as here.
KAFKA_PYTHON_RERUNS = pytest.mark.flaky(reruns=2)


def with_kafka_python_reruns(clients: tuple[str, ...] | list[str]) -> list[Any]:
    """``clients`` as test parameters, kafka-python marked for reruns."""
    return [
        pytest.param(c, marks=KAFKA_PYTHON_RERUNS) if c == "kafka-python" else c for c in clients
    ]


#: Broker overrides for group tests: no initial rebalance delay, and session
#: timeouts short enough to see evictions within a test.
FAST_GROUPS = {"group_initial_rebalance_delay_ms": "0", "group_min_session_timeout_ms": "1000"}


def produce_tagged(bootstrap: str, topic: str, tag: str, count: int) -> set[tuple[int, int]]:
    """``count`` keyed records ``tag-i`` spread over the partitions; their (partition, offset)s."""
    records = [Rec(key=f"{tag}-{i}".encode(), value=f"{tag}:{i}".encode()) for i in range(count)]
    return {(r.partition, r.offset) for r in confluent_produce(bootstrap, topic, records)}


def rebalances(bootstrap: str, group: str) -> list[RebalanceRecord]:
    """The group's rebalances as the broker recorded them (its history topic)."""
    from moldau.client.cluster import Cluster
    from moldau.client.groups_admin import GroupsAdmin

    async def read() -> list[RebalanceRecord]:
        async with Cluster(bootstrap) as cluster:
            return await GroupsAdmin(cluster, timeout_ms=10_000).rebalance_history(group)

    return asyncio.run(read())


# -- ZooKeeper (cluster tests) ---------------------------------------------------
# Here rather than in tests/cluster/conftest.py: test modules import helpers
# with ``from conftest import ...``, and a second conftest module would shadow
# this one for every test collected after it.


@pytest.fixture(scope="session")
def zookeeper_server(moldau_zookeeper: ZooKeeperServer) -> ZooKeeperServer:
    """The session's one real ZooKeeper: the plugin's, which ``moldau_cluster``
    uses too, so the suite starts one server, not two."""
    return moldau_zookeeper


@pytest.fixture
def zookeeper(zookeeper_server: ZooKeeperServer) -> ZooKeeper:
    """A chroot of its own per test, so tests never see each other's znodes."""
    return ZooKeeper(zookeeper_server, f"/moldau-test-{uuid.uuid4().hex[:12]}")
