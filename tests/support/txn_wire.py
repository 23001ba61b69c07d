"""Transactions spoken by hand over a raw connection: what a transactional
producer and the transaction coordinator send to partition leaders, for
tests of the partition side (``tests/integration/test_txn_partitions.py``,
``tests/cluster/test_txn_replication.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from conftest import RawConnection
from moldau.protocol.records import Record, build_batch, decode_batch

PRODUCE, FETCH, LIST_OFFSETS, INIT_PRODUCER_ID, WRITE_TXN_MARKERS = 0, 1, 2, 22, 27
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
TRANSACTION_COORDINATOR_FENCED = 52
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


class TxnProducer:
    """An idempotent producer id writing transactional batches by hand."""

    def __init__(self, conn: RawConnection, epoch: int = 0) -> None:
        answer = conn.request(
            INIT_PRODUCER_ID, 4, {"transactional_id": None, "transaction_timeout_ms": 60_000,
                                  "producer_id": -1, "producer_epoch": -1},
        )  # fmt: skip
        assert answer["error_code"] == 0
        self.conn = conn
        self.pid = answer["producer_id"]
        self.epoch = epoch
        self.sequences: dict[tuple[str, int], int] = {}

    def send(
        self,
        topic: str,
        partition: int,
        values: Iterable[bytes],
        *,
        transactional_id: str | None = "txn",
        transactional: bool = True,
        epoch: int | None = None,
    ) -> dict[str, Any]:
        """Produce one batch (acks=all); the partition's answer."""
        values = list(values)
        seq = self.sequences.get((topic, partition), 0)
        batch = build_batch(
            [Record(i, 0, b"k", value) for i, value in enumerate(values)],
            base_timestamp=int(time.time() * 1000),
            producer_id=self.pid,
            producer_epoch=self.epoch if epoch is None else epoch,
            base_sequence=seq,
            is_transactional=transactional,
        )
        request = {
            "transactional_id": transactional_id,
            "acks": -1,
            "timeout_ms": 5000,
            "topic_data": [
                {"name": topic, "partition_data": [{"index": partition, "records": batch}]}
            ],
        }
        [answer] = self.conn.request(PRODUCE, 9, request)["responses"][0]["partition_responses"]
        if answer["error_code"] == 0:
            self.sequences[topic, partition] = seq + len(values)
        return answer

    def end(
        self,
        commit: bool,
        partitions: dict[str, list[int]],
        *,
        epoch: int | None = None,
        coordinator_epoch: int = 0,
    ) -> dict[tuple[str, int], int]:
        """WriteTxnMarkers for this producer; error code per partition."""
        return write_markers(
            self.conn, self.pid, self.epoch if epoch is None else epoch, commit, partitions,
            coordinator_epoch,
        )  # fmt: skip


def write_markers(
    conn: RawConnection,
    pid: int,
    epoch: int,
    commit: bool,
    partitions: dict[str, list[int]],
    coordinator_epoch: int = 0,
) -> dict[tuple[str, int], int]:
    marker = {
        "producer_id": pid,
        "producer_epoch": epoch,
        "transaction_result": commit,
        "topics": [{"name": t, "partition_indexes": ps} for t, ps in partitions.items()],
        "coordinator_epoch": coordinator_epoch,
    }
    [result] = conn.request(WRITE_TXN_MARKERS, 1, {"markers": [marker]})["markers"]
    assert result["producer_id"] == pid
    return {
        (topic["name"], p["partition_index"]): p["error_code"]
        for topic in result["topics"]
        for p in topic["partitions"]
    }


def data_values(records: bytes | None) -> list[bytes | None]:
    """Values of the data records of a fetched partition (markers left out)."""
    values: list[bytes | None] = []
    position = 0
    while records and position < len(records):
        header, decoded = decode_batch(records[position:])
        if not header.is_control:
            values += [record.value for record in decoded]
        position += header.size
    return values


def committed_fetch(
    topic: str, partitions: dict[int, int], max_wait_ms: int = 0, min_bytes: int = 0
) -> dict[str, Any]:
    """A read_committed Fetch v12 body: ``partitions`` maps partition -> offset."""
    return {
        "cluster_id": None, "replica_id": -1, "max_wait_ms": max_wait_ms,
        "min_bytes": min_bytes, "max_bytes": 1 << 20, "isolation_level": 1,
        "session_id": 0, "session_epoch": -1, "forgotten_topics_data": [], "rack_id": "",
        "topics": [{"topic": topic, "partitions": [
            {"partition": p, "current_leader_epoch": -1, "fetch_offset": offset,
             "last_fetched_epoch": -1, "log_start_offset": -1, "partition_max_bytes": 1 << 20}
            for p, offset in partitions.items()
        ]}],
    }  # fmt: skip


def list_latest(conn: RawConnection, topic: str, isolation: int, partition: int = 0) -> int:
    request = {
        "replica_id": -1,
        "isolation_level": isolation,
        "topics": [
            {
                "name": topic,
                "partitions": [
                    {"partition_index": partition, "current_leader_epoch": -1, "timestamp": -1}
                ],
            }
        ],
    }
    [answer] = conn.request(LIST_OFFSETS, 7, request)["topics"][0]["partitions"]
    assert answer["error_code"] == 0
    return int(answer["offset"])
