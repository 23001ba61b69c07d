"""Burrow (Debian's ``burrow``, LinkedIn's consumer lag checker) on a moldau broker.

Burrow 1.2 is built on sarama 1.22. Its cluster module lists every topic's
log end offsets (ListOffsets v0 at client version 0.8.2, v1 at 0.10.2); its
consumer module reads ``__consumer_offsets`` from the start (Fetch v0 or
v3, so down-converted to format v0 or v1) and decodes the offset commit
records moldau writes in Kafka's layout (group/records.py); it answers each
group's lag over HTTP. It keeps its own state in ZooKeeper: the session's
server, under a root of its own per test.

The group's metadata records (GroupMetadataValue v3, which Kafka 2.3+
writes) are newer than Burrow 1.2 reads: it logs them as undecodable,
against Kafka 3.9 too, and reports the lag without the partitions' owners.

The broker has one ``__consumer_offsets`` partition: sarama's partition
consumers send ListOffsets on the connection their Fetch requests wait on
(250 ms each), so with Kafka's 50 partitions Burrow takes about 12 s to
start reading, against Kafka as against moldau. Without Burrow the test
skips, except in CI (``CI`` set), where scripts/setup.sh --test installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import (
    FAST_GROUPS,
    BrokerProcess,
    Rec,
    confluent_produce,
    create_topic,
    free_port,
    wait_for,
)
from moldau.cluster.local_zookeeper import ZooKeeperServer

BURROW = shutil.which("Burrow")


@pytest.fixture(autouse=True)
def _needs_burrow() -> None:
    if BURROW is None:
        message = "needs Debian's burrow (scripts/setup.sh --test)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _config(broker: BrokerProcess, zookeeper: str, http_port: int, version: str, home: Path) -> str:
    servers = f'["{broker.bootstrap}"]'
    return f"""
[general]
pidfile="{home}/burrow.pid"

[logging]
level="info"

[zookeeper]
servers=["{zookeeper}"]
timeout=6
root-path="/burrow-{uuid.uuid4().hex[:12]}"

[client-profile.moldau]
client-id="burrow"
kafka-version="{version}"

[cluster.moldau]
class-name="kafka"
servers={servers}
client-profile="moldau"
topic-refresh=1
offset-refresh=1

[consumer.moldau]
class-name="kafka"
cluster="moldau"
servers={servers}
client-profile="moldau"
start-latest=false

[evaluator.default]
class-name="caching"
expire-cache=1

[httpserver.default]
address="127.0.0.1:{http_port}"

[storage.default]
class-name="inmemory"
workers=2
intervals=10
min-distance=1
"""


class Burrow:
    """A Burrow process with its config in ``home``; killed by :meth:`kill`."""

    def __init__(self, home: Path, config: str, http_port: int) -> None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "burrow.toml").write_text(config)
        self.home, self.http_port = home, http_port
        self.log_path = home / "burrow.log"
        with open(self.log_path, "wb") as log:
            assert BURROW is not None
            self.process = subprocess.Popen(
                [BURROW, "--config-dir", str(home)], cwd=home, stdout=log, stderr=log
            )

    def get(self, path: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return dict(json.load(answer))
        except urllib.error.HTTPError as error:  # Burrow answers 404 with a JSON body
            return dict(json.load(error))

    def lag(self, group: str) -> dict[tuple[str, int], int]:
        """Each partition's current lag, as Burrow's v3 API reports it."""
        try:
            status = self.get(f"/v3/kafka/moldau/consumer/{group}/lag")["status"]
        except (OSError, KeyError):
            return {}
        return {(p["topic"], p["partition"]): p["current_lag"] for p in status["partitions"]}

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def _member_reading(bootstrap: str, group: str, count: int) -> Consumer:
    """A confluent-kafka group member that has read the topic's ``count`` records."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["lagged"])
    read: list[Any] = []

    def done() -> bool:
        read.extend(m for m in consumer.consume(100, timeout=0.1) if m.error() is None)
        return len(read) == count

    try:
        wait_for(done, timeout=20, what=f"the group read {count} records")
    except BaseException:
        consumer.close()
        raise
    return consumer


def _commit(consumer: Consumer, offsets: dict[int, int]) -> None:
    partitions = [TopicPartition("lagged", p, o) for p, o in offsets.items()]
    consumer.commit(offsets=partitions, asynchronous=False)


@pytest.mark.parametrize("version", ["0.8.2", "0.10.2"])
def test_burrow_reports_a_groups_lag(
    broker_factory: Any, zookeeper_server: ZooKeeperServer, tmp_path: Path, version: str
) -> None:
    broker = broker_factory(**{"offsets.topic.num.partitions": "1", **FAST_GROUPS})
    create_topic(broker.bootstrap, "lagged", 2)
    sent = confluent_produce(
        broker.bootstrap, "lagged", [Rec(b"k%d" % i, b"v%d" % i) for i in range(40)]
    )
    ends = {p: sum(1 for r in sent if r.partition == p) for p in (0, 1)}
    assert all(ends.values()), ends
    member = _member_reading(broker.bootstrap, "lagging", len(sent))
    burrow: Burrow | None = None
    try:
        # The group read everything but commits less in partition 0.
        _commit(member, {0: 1, 1: ends[1]})
        port = free_port()
        home = tmp_path / "burrow"
        burrow = Burrow(home, _config(broker, zookeeper_server.connect, port, version, home), port)
        expected = {("lagged", 0): ends[0] - 1, ("lagged", 1): 0}
        wait_for(lambda: burrow.lag("lagging") == expected, timeout=20, what="Burrow's lag")
        # A later commit moves the lag: Burrow follows __consumer_offsets.
        _commit(member, {0: ends[0] - 2})
        expected[("lagged", 0)] = 2
        wait_for(lambda: burrow.lag("lagging") == expected, timeout=20, what="the new lag")
        assert burrow.get("/v3/kafka/moldau/topic/lagged")["offsets"] == [ends[0], ends[1]]
    except TimeoutError:
        assert burrow is not None
        raise AssertionError(burrow.log_path.read_text()[-3000:]) from None
    finally:
        member.close()
        if burrow is not None:
            burrow.kill()
    failures = [
        json.loads(line)
        for line in burrow.log_path.read_text().splitlines()
        if '"failed to decode"' in line
    ]
    # Burrow 1.2 decodes GroupMetadataValue v0-v1 only; Kafka 3.9 writes v3
    # as moldau does, so it loses the members (owners) on both alike.
    assert {(f["message_type"], f["version"]) for f in failures} <= {("metadata", 3)}
