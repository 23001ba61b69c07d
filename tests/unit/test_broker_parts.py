"""The parts split out of the broker core keep their single jobs.

- No part imports the composition root (``broker/core.py``): the group
  service used to import it, and the core imported the group service back.
- The high watermark is kept once, in the log: the partition reads it there,
  so a change the log makes (truncation) is what the partition answers.
- Placement through ``cluster/placement.py`` gives the single node's answers.
"""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest

from moldau.broker.assignment import ReplicaAssigner
from moldau.broker.config import BrokerConfig
from moldau.cluster.metadata import BrokerInfo, LocalMetadataStore
from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.records import Record, build_batch
from moldau.replication.partition import Partition

BROKER = Path(__file__).resolve().parents[2] / "src" / "moldau" / "broker"
PARTS = (
    "assignment.py",
    "groups.py",
    "internal_topics.py",
    "metadata_saving.py",
    "producer_ids.py",
    "purgatory.py",
    "replica_manager.py",
    "topics.py",
)


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


@pytest.mark.parametrize("part", PARTS)
def test_no_part_imports_the_composition_root(part: str) -> None:
    assert ".core" not in _imported_modules(BROKER / part)


def test_the_partition_reads_the_high_watermark_the_log_keeps(tmp_path: Path) -> None:
    log = PartitionLog.open(str(tmp_path / "t-0"), "t", 0, uuid.uuid4(), LogConfig(), lambda: 0)
    partition = Partition("t", 0, log.topic_id, log, broker_id=0, replicas=[0])
    partition.become_leader(epoch=0, isr=[0])
    for _ in range(3):
        partition.append_as_leader(build_batch([Record(0, 0, None, b"v")], base_timestamp=0))
    assert partition.high_watermark == log.high_watermark == 3
    log.truncate_to(1)
    assert partition.high_watermark == 1


def test_single_node_placement_puts_every_replica_on_the_node(tmp_path: Path) -> None:
    config = BrokerConfig({"log.dirs": [str(tmp_path)], "broker.id": 7})
    store = LocalMetadataStore(str(tmp_path), {"PLAINTEXT": BrokerInfo(7, "h", 1)})
    assigner = ReplicaAssigner(config, store)
    for start in (0, 1, 13):
        assert assigner.assign(4, 1, start) == [[7]] * 4
    assert assigner.automatic(-1, -1, 5) == [[7]]
    with pytest.raises(KafkaError) as caught:
        assigner.assign(1, 2, 0)
    assert caught.value.code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert caught.value.message == "Replication factor: 2 larger than available brokers: 1."
