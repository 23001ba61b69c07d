"""Are the replicas of a ``moldau cluster up`` byte-identical below the high
watermark? Read straight from the segment files.

Each broker keeps partition P of topic T under ``DIR/broker-N/data/T-P/`` in
Kafka's layout: ``<base offset, 20 digits>.log`` segments of v2 record
batches. A follower appends the leader's batches byte for byte, so, batch by
batch, every replica's log must be the same up to the high watermark; above
it a replica may hold what the others do not yet (or will truncate). Only the
batches wholly below the high watermark are compared; a replica with fewer of
them is reported as behind (a follower out of the ISR may be), not as
diverged. The files are read while the brokers run: a batch being appended at
the tail is above the high watermark, so never compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: baseOffset int64, batchLength int32: the batch is 12 + batchLength bytes.
_LENGTH_END = 12
#: lastOffsetDelta int32 sits after partitionLeaderEpoch, magic, crc, attributes.
_DELTA_AT = 8 + 4 + 4 + 1 + 4 + 2


def batches(data: bytes) -> list[tuple[int, bytes]]:
    """The (last offset, bytes) of each whole batch in a log's bytes; a torn
    tail is left out."""
    found = []
    position = 0
    while position + _DELTA_AT + 4 <= len(data):
        base = int.from_bytes(data[position : position + 8], "big", signed=True)
        length = int.from_bytes(data[position + 8 : position + _LENGTH_END], "big", signed=True)
        end = position + _LENGTH_END + length
        if length <= 0 or end > len(data):
            break
        delta = int.from_bytes(data[position + _DELTA_AT : position + _DELTA_AT + 4], "big")
        found.append((base + delta, data[position:end]))
        position = end
    return found


def replica_log(partition_dir: Path) -> bytes:
    """A replica's whole log: its segments in offset order."""
    return b"".join(path.read_bytes() for path in sorted(partition_dir.glob("*.log")))


@dataclass
class ReplicaReport:
    """Per partition: the replicas compared and how many batches below the
    high watermark each holds; the divergences and the replicas behind."""

    compared: dict[int, dict[int, int]] = field(default_factory=dict)
    diverged: list[dict[str, Any]] = field(default_factory=list)
    behind: list[dict[str, Any]] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.diverged

    def to_json(self) -> dict[str, Any]:
        return {
            "compared": {str(p): v for p, v in self.compared.items()},
            "diverged": self.diverged,
            "behind": self.behind,
        }


def compare_replicas(directory: Path, topic: str, high_watermarks: dict[int, int]) -> ReplicaReport:
    """Compare, for each partition, every broker's replica below its high watermark."""
    report = ReplicaReport()
    for partition, high in sorted(high_watermarks.items()):
        replicas: dict[int, list[tuple[int, bytes]]] = {}
        for data_dir in sorted(directory.glob("broker-*/data")):
            broker = int(data_dir.parent.name.removeprefix("broker-"))
            partition_dir = data_dir / f"{topic}-{partition}"
            if partition_dir.is_dir():
                below = [b for b in batches(replica_log(partition_dir)) if b[0] < high]
                replicas[broker] = below
        report.compared[partition] = {b: len(found) for b, found in replicas.items()}
        if not replicas:
            continue
        reference_broker, reference = max(replicas.items(), key=lambda item: len(item[1]))
        longest = len(reference)
        for broker, found in sorted(replicas.items()):
            if len(found) < longest:
                report.behind.append(
                    {"partition": partition, "broker": broker, "batches": len(found), "of": longest}
                )
            for index, ((last, data), (_, expected)) in enumerate(
                zip(found, reference, strict=False)
            ):
                if data != expected:
                    report.diverged.append(
                        {
                            "partition": partition,
                            "brokers": [reference_broker, broker],
                            "batch": index,
                            "last_offset": last,
                        }
                    )
                    break
    return report
