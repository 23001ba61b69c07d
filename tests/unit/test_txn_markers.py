"""The marker sender: a completing transaction's markers go to each partition
until written (retried after a retriable refusal), a deleted topic's are
skipped, and nothing goes out before the decision is replicated. The
partitions are led here, so the sender calls the local writer (the
WriteTxnMarkers handler's contract) with a real metadata store and a real
coordinator core."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path

from moldau.broker.peer_links import PeerLinks
from moldau.broker.txn_markers import MarkerSender
from moldau.cluster.metadata import BrokerInfo, LocalMetadataStore, TopicInfo
from moldau.protocol.errors import ErrorCode
from moldau.protocol.messages import Message
from moldau.txn.coordinator import TxnConfig, TxnCoordinator
from moldau.txn.state import TxnState

TX = "tx"


class LocalWriter:
    """Answers each marker's partitions with the next code of ``script``
    (then NONE), and keeps what it was asked."""

    def __init__(self, script: dict[tuple[str, int], list[ErrorCode]]) -> None:
        self.script = script
        self.calls: list[Message] = []

    async def __call__(self, markers: Sequence[Message]) -> list[Message]:
        self.calls.extend(markers)
        results = []
        for marker in markers:
            topics = []
            for topic in marker["topics"]:
                parts = []
                for index in topic["partition_indexes"]:
                    codes = self.script.get((topic["name"], index), [])
                    code = codes.pop(0) if codes else ErrorCode.NONE
                    parts.append({"partition_index": index, "error_code": code})
                topics.append({"name": topic["name"], "partitions": parts})
            results.append({"producer_id": marker["producer_id"], "topics": topics})
        return results


def setup(tmp_path: Path, writer: LocalWriter) -> tuple[TxnCoordinator, MarkerSender]:
    store = LocalMetadataStore(str(tmp_path), {"PLAINTEXT": BrokerInfo(0, "127.0.0.1", 9)})
    store.create_topic(TopicInfo("t", uuid.uuid4(), [[0], [0]]))
    ids = iter(range(100, 200))
    coordinator = TxnCoordinator(
        TxnConfig(num_partitions=1), lambda: 0, lambda *_: None, lambda: next(ids), lambda _: 3
    )
    coordinator.mark_loading(0)
    coordinator.finish_loading(0)
    return coordinator, MarkerSender(0, coordinator, store, PeerLinks("test", store.broker), writer)


def start(coordinator: TxnCoordinator, partitions: list[tuple[str, int]]) -> None:
    init = coordinator.init_producer_id(TX, 60_000)
    assert coordinator.add_partitions(TX, init.producer_id, 0, partitions) == ErrorCode.NONE
    assert coordinator.end_txn(TX, init.producer_id, 0, True) == ErrorCode.NONE


def run_to_completion(coordinator: TxnCoordinator, sender: MarkerSender) -> None:
    """Send the queued job's markers until the transaction is complete."""

    async def run() -> None:
        [job] = coordinator.take_marker_jobs()
        async with asyncio.timeout(5):
            await sender.submit(job, replicated)
        assert coordinator.transactions[TX].state is TxnState.COMPLETE_COMMIT

    asyncio.run(run())


async def replicated() -> ErrorCode:
    return ErrorCode.NONE


def test_markers_are_retried_until_written_and_deleted_topics_skipped(tmp_path: Path) -> None:
    writer = LocalWriter({("t", 1): [ErrorCode.NOT_LEADER_OR_FOLLOWER]})
    coordinator, sender = setup(tmp_path, writer)
    start(coordinator, [("t", 0), ("t", 1), ("deleted", 0)])
    run_to_completion(coordinator, sender)
    first, second = writer.calls
    assert first["transaction_result"] is True
    assert first["coordinator_epoch"] == 3
    assert first["topics"] == [{"name": "t", "partition_indexes": [0, 1]}]
    assert second["topics"] == [{"name": "t", "partition_indexes": [1]}]


def test_a_fenced_partition_counts_as_done(tmp_path: Path) -> None:
    writer = LocalWriter({("t", 0): [ErrorCode.TRANSACTION_COORDINATOR_FENCED]})
    coordinator, sender = setup(tmp_path, writer)
    start(coordinator, [("t", 0)])
    run_to_completion(coordinator, sender)
    assert len(writer.calls) == 1


def test_nothing_is_sent_when_the_decision_was_not_replicated(tmp_path: Path) -> None:
    writer = LocalWriter({})
    coordinator, sender = setup(tmp_path, writer)
    start(coordinator, [("t", 0)])

    async def lost() -> ErrorCode:
        return ErrorCode.NOT_COORDINATOR

    async def run() -> None:
        [job] = coordinator.take_marker_jobs()
        async with asyncio.timeout(5):
            await sender.submit(job, lost)

    asyncio.run(run())
    assert writer.calls == []
    assert coordinator.transactions[TX].state is TxnState.PREPARE_COMMIT
