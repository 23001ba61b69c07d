"""kcat (librdkafka's command line tool) against a real broker.

kcat has no admin API, so the topic is created and deleted with
confluent-kafka's. kcat produces keyed records (-K) with headers (-H) in every
codec (-z), reads them back with a -f format of partition, offset, timestamp,
key, headers and value (-e: exit at the end), and lists offsets by time (-Q).
kcat cannot set a record's timestamp: librdkafka stamps the time of send, so
timestamps are checked against the window of each kcat run.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BrokerProcess, Rec, assert_round_trip, sample_records, wait_for

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed")

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
PER_CODEC = 40
PARTITIONS = 3
#: kcat sets the same headers on every record of one run.
HEADERS = (("dup", b"a"), ("dup", b"b"), ("z", b"1"))
FORMAT = "%p\t%o\t%T\t%k\t%h\t%s\n"


def kcat(*args: str, stdin: str | None = None) -> str:
    assert KCAT is not None
    done = subprocess.run(
        [KCAT, *args], input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def produce(bootstrap: str, topic: str, codec: str, records: list[Rec]) -> None:
    lines = "".join(f"{r.key.decode()}\t{r.value.decode()}\n" for r in records if r.key)
    headers = [arg for name, value in HEADERS for arg in ("-H", f"{name}={value.decode()}")]
    kcat("-P", "-b", bootstrap, "-t", topic, "-K", "\t", "-z", codec, *headers, stdin=lines)


def parse(line: str) -> Rec:
    partition, offset, timestamp, key, headers, value = line.split("\t")
    pairs = [h.split("=", 1) for h in headers.split(",")] if headers else []
    return Rec(
        key=key.encode(),
        value=value.encode(),
        headers=tuple((name, text.encode()) for name, text in pairs),
        timestamp=int(timestamp),
        partition=int(partition),
        offset=int(offset),
    )


def offsets_at(bootstrap: str, topic: str, timestamp: int) -> dict[int, int]:
    """kcat -Q for every partition: partition -> offset."""
    query = [arg for p in range(PARTITIONS) for arg in ("-t", f"{topic}:{p}:{timestamp}")]
    answers: dict[int, int] = {}
    for line in kcat("-Q", "-b", bootstrap, *query).splitlines():
        # "<topic> [<partition>] offset <offset>"
        words = line.split()
        if len(words) == 4 and words[0] == topic and words[2] == "offset":
            answers[int(words[1].strip("[]"))] = int(words[3])
    return answers


def test_topic_life_in_every_codec(broker: BrokerProcess) -> None:
    topic = "kcat-life"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[
        topic
    ].result(10)
    listing = kcat("-L", "-b", broker.bootstrap, "-t", topic)
    assert f'topic "{topic}" with {PARTITIONS} partitions' in listing

    sent: list[Rec] = []
    windows: dict[str, tuple[int, int]] = {}
    for codec in CODECS:
        records = [Rec(r.key, r.value, HEADERS) for r in sample_records(codec, PER_CODEC, 0)]
        before = int(time.time() * 1000)
        produce(broker.bootstrap, topic, codec, records)
        windows[codec] = (before, int(time.time() * 1000))
        sent += records

    out = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-f", FORMAT)
    got = [parse(line) for line in out.splitlines()]
    assert_round_trip(sent, got)
    for record in got:
        first, last = windows[record.value.split(b":")[0].decode()]
        assert first <= record.timestamp <= last

    counts = {p: sum(r.partition == p for r in got) for p in range(PARTITIONS)}
    assert offsets_at(broker.bootstrap, topic, -2) == dict.fromkeys(counts, 0)
    assert offsets_at(broker.bootstrap, topic, -1) == counts
    since = windows["lz4"][0]
    expected = {
        p: min((r.offset for r in got if r.partition == p and r.timestamp >= since), default=-1)
        for p in range(PARTITIONS)
    }
    assert offsets_at(broker.bootstrap, topic, since) == expected

    admin.delete_topics([topic])[topic].result(10)
    wait_for(
        lambda: topic not in admin.list_topics(timeout=5).topics, 10, what="topic to be deleted"
    )
