"""sarama, the Go client, from Debian's packages, at its default protocol and at 0.10.2.

``sarama.NewConfig()`` still defaults to Kafka 0.8.2: Produce v0 with message
format v0, Fetch v0, ListOffsets v0, OffsetCommit and OffsetFetch v1. With
``Version = V0_10_2_0`` it speaks Produce v2 (format v1, timestamps), Fetch v3,
ListOffsets v1, the group API and (with an offset retention) OffsetCommit v2.

tests/clients/sarama/main.go is the client; it is built once per source and
toolchain (GOPATH mode against Debian's /usr/share/gocode, cached in the temp
directory) and run once per action, printing JSON. Without Go or sarama the
tests skip, except in CI (``CI`` set), where scripts/setup.sh --test installs
them and a skip would hide a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_old_clients import Seen, committed_by_a_current_client, current_read, records_for

from conftest import FAST_GROUPS, ROOT, BrokerProcess, confluent_produce, create_topic

SOURCE = ROOT / "tests" / "clients" / "sarama" / "main.go"
GOPATH = Path("/usr/share/gocode")
SARAMA = GOPATH / "src" / "github.com" / "Shopify" / "sarama"

#: The codecs each message format has: v0 none, gzip, snappy (sarama refuses
#: LZ4 before 0.10); v1 adds LZ4.
CODECS = {"default": ("none", "gzip", "snappy"), "0.10.2": ("none", "gzip", "snappy", "lz4")}


def _build() -> Path:
    """The client binary, built unless one from the same source and Go exists."""
    go = shutil.which("go")
    if go is None or not SARAMA.is_dir():
        message = "needs golang-go and golang-github-shopify-sarama-dev (scripts/setup.sh --test)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    version = subprocess.run([go, "version"], capture_output=True, check=True).stdout
    digest = hashlib.sha256(SOURCE.read_bytes() + version).hexdigest()[:16]
    home = Path(tempfile.gettempdir()) / "moldau-sarama-client"
    binary = home / digest / "sarama-client"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"sarama-client.{os.getpid()}")
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOCACHE": str(home / "go-build"),
        "GOFLAGS": "",
    }
    built = subprocess.run(
        [go, "build", "-o", str(partial), str(SOURCE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    os.replace(partial, binary)  # atomic: a parallel session sees all or nothing
    return binary


@pytest.fixture(scope="session")
def sarama_client() -> Path:
    return _build()


class Sarama:
    """Runs the client's actions against one broker at one protocol version."""

    def __init__(self, binary: Path, broker: BrokerProcess, version: str) -> None:
        self.binary, self.broker, self.version = binary, broker, version

    def __call__(self, action: str, **flags: object) -> Any:
        args = [str(self.binary), action, "-bootstrap", self.broker.bootstrap]
        args += ["-version", self.version]
        for name, value in flags.items():
            args += [f"-{name}", str(value)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{action}: {done.stderr}"
        return json.loads(done.stdout)

    def read(self, topic: str, count: int) -> list[Seen]:
        messages = self("consume", topic=topic, count=count)["messages"]
        return [_seen(m) for m in messages]


def _seen(message: dict[str, Any]) -> Seen:
    key, value = message["key"], message["value"]
    return (
        message["offset"],
        None if key is None else key.encode(),
        None if value is None else value.encode(),
        message["timestamp"],
    )


@pytest.fixture(params=["default", "0.10.2"])
def sarama(request: pytest.FixtureRequest, sarama_client: Path, broker: BrokerProcess) -> Sarama:
    return Sarama(sarama_client, broker, request.param)


def test_sarama_formats_round_trip(sarama: Sarama) -> None:
    """sarama writes format v0 (default) or v1 (0.10.2) with each codec the
    format has; it reads its records back down-converted, and a current
    client reads the up-converted v2 batches the same."""
    v1 = sarama.version != "default"
    bootstrap = sarama.broker.bootstrap
    for codec in CODECS[sarama.version]:
        topic = f"sarama-{codec}"
        create_topic(bootstrap, topic, 1)
        produced = sarama("produce", topic=topic, codec=codec, count=6)
        assert produced["offsets"] == list(range(6)), codec
        expected = [
            (i, r.key, r.value, 1000 + i if v1 else -1) for i, r in enumerate(records_for(topic, 6))
        ]
        assert sarama.read(topic, 6) == expected, codec
        assert current_read(bootstrap, topic) == expected, codec


def test_current_records_read_by_sarama(sarama: Sarama) -> None:
    """v2 batches from a current client (headers, each codec of the format)
    reach sarama down-converted to its format, with their timestamps in v1.

    Not LZ4 at the default version: format v0's LZ4 frames carry Kafka 0.8's
    wrong header checksum, which Kafka (and moldau, see legacy_records) keeps
    when down-converting to v0 and which sarama's LZ4 reader refuses; sarama
    refuses to write LZ4 before 0.10 for the same reason."""
    v1 = sarama.version != "default"
    for codec in CODECS[sarama.version]:
        topic = f"current-{codec}"
        create_topic(sarama.broker.bootstrap, topic, 1)
        records = [
            replace(r, timestamp=5000 + i, headers=(("h", b"x"),))
            for i, r in enumerate(records_for(topic, 6))
        ]
        confluent_produce(sarama.broker.bootstrap, topic, records, **{"compression.codec": codec})
        expected = [(i, r.key, r.value, 5000 + i if v1 else -1) for i, r in enumerate(records)]
        assert sarama.read(topic, 6) == expected, codec


def test_sarama_offsets(sarama: Sarama) -> None:
    """ListOffsets (v0 by default, v1 at 0.10.2) and an OffsetManager's
    commit (OffsetCommit v1, v2 with a retention at 0.10.2; OffsetFetch v1),
    read back by sarama and by a current client."""
    bootstrap = sarama.broker.bootstrap
    create_topic(bootstrap, "offsets", 1)
    assert sarama("offsets", topic="offsets") == {"oldest": 0, "newest": 0}
    confluent_produce(bootstrap, "offsets", records_for("offsets", 5))
    assert sarama("offsets", topic="offsets") == {"oldest": 0, "newest": 5}
    group = f"sarama-{sarama.version}"
    assert sarama("commit", group=group, topic="offsets", offset=3) == {"committed": 3}
    assert committed_by_a_current_client(bootstrap, group, "offsets") == 3


def test_sarama_consumer_group(sarama_client: Path, broker_factory: Any) -> None:
    """sarama's consumer group (0.10.2 on: JoinGroup v1, SyncGroup,
    Heartbeat and LeaveGroup v0, OffsetCommit v2) reads and commits a partition."""
    broker = broker_factory(**FAST_GROUPS)
    sarama = Sarama(sarama_client, broker, "0.10.2")
    create_topic(broker.bootstrap, "grouped", 1)
    records = confluent_produce(broker.bootstrap, "grouped", records_for("grouped", 4))
    answer = sarama("group", group="g", topic="grouped", count=4)
    assert [_seen(m)[2] for m in answer["messages"]] == [r.value for r in records]
    assert answer["committed"] == 4
    assert committed_by_a_current_client(broker.bootstrap, "g", "grouped") == 4
