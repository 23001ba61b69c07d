"""kill -9 in the middle of DeleteTopics or CreateTopics: after the restart
the metadata and the partition dirs agree.

DeleteTopics saves the metadata first and then removes the dirs one by one;
a crash in between used to leave most of them behind forever, opened (and
holding file descriptors) at every start. CreateTopics creates the dirs
first and saves the metadata last; a crash in between leaves dirs the
metadata does not name. Both are removed at the next start.
"""

from __future__ import annotations

import json
import time
from typing import Any

from conftest import (
    BrokerProcess,
    RawConnection,
    Rec,
    confluent_produce,
    confluent_read_all,
    create_topic,
)

PARTITIONS = 300


def live_dirs(broker: BrokerProcess, topic: str) -> int:
    prefix = f"{topic}-"
    return sum(
        1
        for p in broker.data_dir.iterdir()
        if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
    )


def leftovers(broker: BrokerProcess) -> list[str]:
    """Deletion dirs still there: the start finishes them."""
    return [p.name for p in broker.data_dir.iterdir() if p.name.endswith("-delete")]


def metadata_topics(broker: BrokerProcess) -> set[str]:
    data = json.loads((broker.data_dir / "moldau-metadata.json").read_text())
    return {t["name"] for t in data["topics"]}


def kill_when(broker: BrokerProcess, condition: Any, timeout: float = 30.0) -> bool:
    """kill -9 the broker as soon as ``condition()`` holds (polled without
    pause); True if it held before the deadline."""
    deadline = time.monotonic() + timeout
    held = False
    while time.monotonic() < deadline:
        if condition():
            held = True
            break
    broker.kill()
    return held


def test_kill_during_delete_topics_leaves_no_partition_dir(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "survivor", 2)
    survivors = confluent_produce(broker.bootstrap, "survivor", [Rec(b"k", b"kept")] * 3)
    create_topic(broker.bootstrap, "doomed", PARTITIONS)
    with RawConnection(broker.port) as conn:
        conn.send(20, 5, {"topic_names": ["doomed"], "timeout_ms": 30000})
        caught_midway = kill_when(broker, lambda: 0 < live_dirs(broker, "doomed") < PARTITIONS)
    assert caught_midway, "the deletion ended before the test could interrupt it"
    # The crash left the metadata without the topic and most of its dirs.
    assert "doomed" not in metadata_topics(broker)
    broker.start()
    assert live_dirs(broker, "doomed") == 0
    assert leftovers(broker) == []
    assert len(confluent_read_all(broker.bootstrap, "survivor")) == len(survivors)
    # Nothing of the old topic comes back under its name.
    create_topic(broker.bootstrap, "doomed", 2)
    assert confluent_read_all(broker.bootstrap, "doomed", timeout=3) == []


def test_kill_during_create_topics_leaves_all_or_nothing(broker: BrokerProcess) -> None:
    with RawConnection(broker.port) as conn:
        topic = {
            "name": "half",
            "num_partitions": PARTITIONS,
            "replication_factor": 1,
            "assignments": [],
            "configs": [],
        }
        conn.send(19, 5, {"topics": [topic], "timeout_ms": 30000, "validate_only": False})
        caught_midway = kill_when(broker, lambda: 0 < live_dirs(broker, "half") < PARTITIONS)
    assert caught_midway, "the creation ended before the test could interrupt it"
    assert "half" not in metadata_topics(broker)
    broker.start()
    assert live_dirs(broker, "half") == 0
    assert leftovers(broker) == []
    create_topic(broker.bootstrap, "half", 3)
    assert live_dirs(broker, "half") == 3


def test_kill_during_create_partitions_keeps_the_old_count(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "grow", 1)
    confluent_produce(broker.bootstrap, "grow", [Rec(b"k", b"first")])
    with RawConnection(broker.port) as conn:
        request = {
            "topics": [{"name": "grow", "count": PARTITIONS + 1, "assignments": None}],
            "timeout_ms": 30000,
            "validate_only": False,
        }
        conn.send(37, 2, request)
        caught_midway = kill_when(broker, lambda: 1 < live_dirs(broker, "grow") < PARTITIONS + 1)
    assert caught_midway, "the creation ended before the test could interrupt it"
    broker.start()
    assert live_dirs(broker, "grow") == 1
    assert [r.value for r in confluent_read_all(broker.bootstrap, "grow")] == [b"first"]
