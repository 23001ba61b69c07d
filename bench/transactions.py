"""Transactional produce against plain idempotent produce, in one run.

    .venv/bin/python bench/transactions.py [--records 100000] [--repeat 3] [--size 100,1000]

One moldau broker (the embedded default, as `moldau broker` starts it) and
one topic of 6 partitions. Each round sends ``--records`` values of 100 bytes
with confluent-kafka (acks=all, linger.ms 5), once per mode, in an order that
rotates between rounds:

- ``idempotent``: an idempotent producer, flushed at the end;
- ``txn-N``: a transactional producer committing every N values (each
  commit is AddPartitionsToTxn for the partitions it wrote, EndTxn, the
  markers written to those partitions, and the coordinator's two state
  writes; librdkafka waits for all of it before the next begins).

Figures: records per second (wall time from the first send to the last
acknowledgement or commit) and the broker's CPU seconds per million records
(/proc), the median of ``--repeat`` rounds, and each mode's ratio to
idempotent produce in the same round. Markdown goes to stdout.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import procstat
from brokers import launched, moldau_kind

PARTITIONS = 6
VALUE = b"x" * 100
PRODUCER = {"acks": "all", "linger.ms": 5, "log_level": 2}


def _create_topic(bootstrap: str) -> str:
    topic = f"txn-bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    return topic


def _idempotent(bootstrap: str, topic: str, records: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **PRODUCER})
    for i in range(records):
        _send(producer, topic, i)
    if producer.flush(120):
        raise RuntimeError("idempotent produce: records left unacknowledged")


def _transactional(bootstrap: str, topic: str, records: int, size: int) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"{topic}-{size}-{uuid.uuid4().hex[:6]}",
            **PRODUCER,
        }
    )
    producer.init_transactions(30)
    for start in range(0, records, size):
        producer.begin_transaction()
        for i in range(start, min(start + size, records)):
            _send(producer, topic, i)
        producer.commit_transaction(60)


def _send(producer: Producer, topic: str, i: int) -> None:
    while True:
        try:
            producer.produce(topic, VALUE, partition=i % PARTITIONS)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.05)


def _measure(bootstrap: str, pid: int, mode: str, records: int) -> tuple[float, float]:
    """(records per second, broker CPU seconds per million records) of one mode."""
    topic = _create_topic(bootstrap)
    cpu = procstat.cpu_seconds(pid)
    started = time.monotonic()
    if mode == "idempotent":
        _idempotent(bootstrap, topic, records)
    else:
        _transactional(bootstrap, topic, records, int(mode.removeprefix("txn-")))
    elapsed = time.monotonic() - started
    used = procstat.cpu_seconds(pid) - cpu
    return records / elapsed, used / records * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000, help="values per mode and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--size", default="100,1000", help="values per transaction, a list")
    args = parser.parse_args()
    modes = ["idempotent", *(f"txn-{n}" for n in args.size.split(","))]
    moldau = Path(sys.executable).parent / "moldau"
    rates: dict[str, list[float]] = {m: [] for m in modes}
    cpus: dict[str, list[float]] = {m: [] for m in modes}
    ratios: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="moldau-txn-bench-") as tmp:
        root = Path(tmp)
        with launched(moldau_kind(moldau), root / "broker.log", root, 30) as broker:
            for round_number in range(args.repeat):
                order = modes[round_number % len(modes) :] + modes[: round_number % len(modes)]
                measured = {}
                for mode in order:
                    measured[mode] = _measure(broker.bootstrap, broker.pid, mode, args.records)
                    print(f"round {round_number + 1} {mode}: {measured[mode][0]:,.0f}/s",
                          file=sys.stderr)  # fmt: skip
                for mode, (rate, cpu) in measured.items():
                    rates[mode].append(rate)
                    cpus[mode].append(cpu)
                    ratios[mode].append(rate / measured["idempotent"][0])
    print(
        f"{args.records:,} values of 100 B per mode and round, acks=all, {PARTITIONS} "
        f"partitions, one moldau broker; median of {args.repeat} rounds\n"
    )
    print("| mode | records/s | ratio to idempotent | broker CPU s per million records |")
    print("|---|---:|---:|---:|")
    for mode in modes:
        print(
            f"| {mode} | {statistics.median(rates[mode]):,.0f} | "
            f"{statistics.median(ratios[mode]):.2f}x | {statistics.median(cpus[mode]):.2f} |"
        )


if __name__ == "__main__":
    main()
