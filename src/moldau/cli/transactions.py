"""``moldau transactions``: list and describe transactional ids.

In the spirit of Kafka's ``kafka-transactions.sh``: ``list`` shows every
transactional id with its coordinator, producer id and state (filtered by
state, producer id, or how long its transaction has been open); ``describe``
one id's state, producer id and epoch, timeout, the partitions of its open
transaction and how long it has been open; with ``--history``, its timeline:
every state change ``__transaction_state`` still holds (read in Kafka's
record format, so it shows a Kafka cluster's too), with when it happened and
the producer epoch and partitions of each, so a fenced producer or a
transaction aborted on its timeout can be seen for what it was.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from moldau.txn.records import TRANSACTION_STATE_TOPIC

from .common import add_bootstrap, admin_command

if TYPE_CHECKING:
    from moldau.client.admin import Admin
    from moldau.client.transactions_admin import TransactionChange, TransactionsAdmin

#: States in which a transaction is open or completing: it has an age.
_OPEN = ("Ongoing", "PrepareCommit", "PrepareAbort", "PrepareEpochFence")


def register(commands: Any) -> None:
    parser = commands.add_parser("transactions", help="list and describe transactional ids")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    listing = actions.add_parser("list", help="list transactional ids")
    listing.add_argument(
        "--state",
        action="append",
        default=[],
        metavar="STATE",
        help="only ids in this state, e.g. Ongoing or CompleteCommit (repeatable)",
    )
    listing.add_argument(
        "--producer-id", action="append", type=int, default=[], help="only this producer id"
    )
    listing.add_argument(
        "--min-duration-ms",
        type=int,
        default=-1,
        metavar="MS",
        help="only transactions open longer than MS",
    )
    listing.set_defaults(run=_runner(_list))

    describe = actions.add_parser("describe", help="state, producer, partitions of an id")
    describe.add_argument("transactional_id", metavar="ID")
    describe.add_argument(
        "--history", action="store_true", help="also show the id's recent state changes"
    )
    describe.set_defaults(run=_runner(_describe))

    for sub in (listing, describe):
        add_bootstrap(sub)


def _runner(action: Any) -> Any:
    """Wrap ``action(transactions_admin, args)`` into a command that connects first."""

    async def with_transactions(admin: Admin, args: argparse.Namespace) -> int:
        from moldau.client.transactions_admin import TransactionsAdmin

        result: int = await action(TransactionsAdmin(admin.cluster), args)
        return result

    return admin_command(with_transactions)


async def _list(admin: TransactionsAdmin, args: argparse.Namespace) -> int:
    found = await admin.list_transactions(args.state, args.producer_id, args.min_duration_ms)
    rows = [("TRANSACTIONAL-ID", "COORDINATOR", "PRODUCER-ID", "STATE")]
    rows += [(t.transactional_id, str(t.coordinator), str(t.producer_id), t.state) for t in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def _describe(admin: TransactionsAdmin, args: argparse.Namespace) -> int:
    txn = await admin.describe_transaction(args.transactional_id)
    print(f"Transactional id: {txn.transactional_id}  Coordinator: {txn.coordinator}")
    print(f"State: {txn.state}")
    print(f"Producer id: {txn.producer_id}  Epoch: {txn.producer_epoch}")
    print(f"Timeout: {txn.timeout_ms} ms")
    if txn.start_ms >= 0 and txn.state in _OPEN:
        age = max(int(time.time() * 1000) - txn.start_ms, 0)
        print(f"Open for: {age} ms (since {_iso(txn.start_ms)})")
    by_topic: dict[str, list[int]] = {}
    for tp in txn.partitions:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    listed = " ".join(f"{t}:{','.join(map(str, p))}" for t, p in sorted(by_topic.items()))
    print(f"Partitions: {listed or '-'}")
    if args.history:
        _history(await admin.history(args.transactional_id))
    return 0


def _history(changes: Sequence[TransactionChange]) -> None:
    """One line per state change: when, the state, producer id and epoch,
    partitions; an epoch bump (a new producer fencing the last, or a
    timeout's abort) is called out."""
    print(f"\nHistory ({len(changes)} state changes in {TRANSACTION_STATE_TOPIC}):")
    last_epoch: tuple[int, int] | None = None
    for change in changes:
        record = change.record
        if record is None:
            print(f"  offset {change.offset}: removed (transactional.id.expiration.ms)")
            continue
        epoch = (record.producer_id, record.producer_epoch)
        bumped = "  <- new epoch" if last_epoch is not None and epoch != last_epoch else ""
        last_epoch = epoch
        partitions = ",".join(f"{t}-{p}" for t, p in sorted(record.partitions)) or "-"
        print(
            f"  {_iso(record.last_update_ms)}  {record.state.kafka_name:<17} "
            f"producer {record.producer_id} epoch {record.producer_epoch}  "
            f"partitions {partitions}{bumped}"
        )


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
