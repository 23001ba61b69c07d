"""Offsets committed inside transactions, over real sockets: TxnOffsetCommit
stages them in the group's offsets partition, the transaction's marker there
(WriteTxnMarkers, sent by hand as the coordinator would) applies or drops
them, OffsetFetch with require_stable waits them out, and a restart rebuilds
it all from the log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from conftest import BrokerProcess, RawConnection, create_topic, wait_for
from moldau.group.placement import partition_for_group
from moldau.protocol.errors import ErrorCode
from support.txn_wire import TxnProducer, write_markers

TXN_OFFSET_COMMIT, OFFSET_FETCH = 28, 9
OFFSETS_TOPIC = "__consumer_offsets"


def txn_commit(conn: RawConnection, producer: TxnProducer, group: str, offset: int) -> int:
    answer = conn.request(
        TXN_OFFSET_COMMIT,
        3,
        {
            "transactional_id": "txn",
            "group_id": group,
            "producer_id": producer.pid,
            "producer_epoch": producer.epoch,
            "generation_id": -1,
            "member_id": "",
            "group_instance_id": None,
            "topics": [
                {
                    "name": "orders",
                    "partitions": [
                        {
                            "partition_index": 0,
                            "committed_offset": offset,
                            "committed_leader_epoch": -1,
                            "committed_metadata": "",
                        }
                    ],
                }
            ],
        },
    )
    [partition] = answer["topics"][0]["partitions"]
    return int(partition["error_code"])


def fetch(conn: RawConnection, group: str, require_stable: bool) -> tuple[int, int]:
    """(error, offset) of orders-0 for ``group``, as OffsetFetch v7 answers."""
    body: dict[str, Any] = {
        "group_id": group,
        "topics": [{"name": "orders", "partition_indexes": [0]}],
        "require_stable": require_stable,
    }
    answer = conn.request(OFFSET_FETCH, 7, body)
    [partition] = answer["topics"][0]["partitions"]
    return partition["error_code"], partition["committed_offset"]


def end(conn: RawConnection, producer: TxnProducer, group: str, commit: bool) -> None:
    index = partition_for_group(group, 50)
    assert write_markers(conn, producer.pid, producer.epoch, commit, {OFFSETS_TOPIC: [index]}) == {
        (OFFSETS_TOPIC, index): 0
    }


def test_offsets_apply_when_the_transaction_commits_and_survive_a_restart(
    broker_factory: Callable[..., BrokerProcess],
) -> None:
    broker = broker_factory()
    create_topic(broker.bootstrap, "orders", 1)
    with RawConnection(broker.port) as conn:
        producer = TxnProducer(conn)
        assert txn_commit(conn, producer, "g", 10) == 0
        assert fetch(conn, "g", require_stable=False) == (0, -1)
        assert fetch(conn, "g", require_stable=True) == (ErrorCode.UNSTABLE_OFFSET_COMMIT, -1)
        end(conn, producer, "g", commit=True)
        assert fetch(conn, "g", require_stable=True) == (0, 10)

        # A second transaction of the same producer, aborted: nothing changes.
        assert txn_commit(conn, producer, "g", 20) == 0
        end(conn, producer, "g", commit=False)
        assert fetch(conn, "g", require_stable=True) == (0, 10)

        # A third left open when the broker dies.
        assert txn_commit(conn, producer, "g", 30) == 0
    broker.kill()
    broker.start()
    with RawConnection(broker.port) as conn:
        wait_for(
            lambda: fetch(conn, "g", require_stable=False) == (0, 10), 10, what="groups loaded"
        )
        assert fetch(conn, "g", require_stable=True) == (ErrorCode.UNSTABLE_OFFSET_COMMIT, -1)
        end(conn, producer, "g", commit=True)
        assert fetch(conn, "g", require_stable=True) == (0, 30)


def test_a_fenced_producer_epoch_cannot_commit_offsets(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, "orders", 1)
    with RawConnection(broker.port) as conn:
        producer = TxnProducer(conn, epoch=1)
        assert txn_commit(conn, producer, "g", 10) == 0
        end(conn, producer, "g", commit=True)
        producer.epoch = 0  # the zombie of an older incarnation
        assert txn_commit(conn, producer, "g", 99) == ErrorCode.INVALID_PRODUCER_EPOCH
        assert fetch(conn, "g", require_stable=True) == (0, 10)
