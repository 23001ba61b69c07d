"""Property: whichever file operation fails, and however, no acknowledged
record is lost or doubled and no offset is handed out twice.

A PartitionLog takes random appends (plain batches and an idempotent
producer's, one or several batches per append) while one operation of the
``fileops`` seam (open, write, fsync, truncate, rename, unlink; of any file or
of one kind of file) fails at a random call, once or a few times in a row,
with ENOSPC, EROFS or EIO, possibly after writing half of its bytes. The
producer retries what failed, as clients do. Then the broker stops: kill -9
(the log dropped unflushed) or SIGTERM (flush and close, still under the
fault), and the log is reopened from disk with the fault gone, as after the
operator freed space and restarted.

Checked: while the partition is online it serves exactly the acknowledged
records (a refused append left nothing visible); once offline it serves
nothing; after the restart every acknowledged record is at its offset once;
a record that was refused may be there only if the partition went offline
(Kafka's rule too: an error is not a promise that nothing was stored); the
idempotent producer's retries after the restart are recognised.
"""

from __future__ import annotations

import errno
import tempfile
import uuid
from dataclasses import dataclass, field
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moldau.log import fileops, index
from moldau.log.config import LogConfig
from moldau.log.errors import KafkaStorageError
from moldau.log.partition_log import AppendResult, PartitionLog
from moldau.protocol.records import Record, build_batch, decode_batch

PRODUCER_ID = 7

appends = st.lists(
    st.tuples(st.integers(1, 3), st.integers(0, 120), st.booleans()), min_size=1, max_size=3
)  # a request of plain batches, or (when the first is idempotent) the producer's next batch
plans = st.builds(
    fileops.FaultPlan,
    fail_at=st.integers(1, 30),
    error=st.sampled_from([errno.ENOSPC, errno.EROFS, errno.EIO]),
    kinds=st.one_of(
        st.just(frozenset(fileops.KINDS.values())),
        st.sampled_from(sorted(frozenset([k]) for k in set(fileops.KINDS.values()))),
    ),
    suffixes=st.one_of(
        st.just(()), st.sampled_from([(".log",), (".index",), (".timeindex",), (".tmp",)])
    ),
    repeat=st.integers(1, 4),
    partial=st.booleans(),
)


@dataclass
class Producers:
    """What the clients know: acknowledged records and refused ones."""

    acked: dict[int, bytes] = field(default_factory=dict)  # offset -> value
    refused: set[bytes] = field(default_factory=set)
    sequence: int = 0
    #: The idempotent batch to send again (a refused one), as (values, raw).
    retry: tuple[list[bytes], bytes] | None = None
    counter: int = 0

    def values(self, count: int, size: int) -> list[bytes]:
        self.counter += 1
        return [b"%d.%d:" % (self.counter, i) + b"x" * size for i in range(count)]

    def ack(self, result: AppendResult, values: list[bytes]) -> None:
        offsets = range(result.base_offset, result.last_offset + 1)
        assert len(offsets) == len(values)
        for offset, value in zip(offsets, values, strict=True):
            if result.duplicate:
                assert self.acked.get(offset, value) == value
            else:
                assert offset not in self.acked, f"offset {offset} handed out twice"
            self.acked[offset] = value
            self.refused.discard(value)


def build(values: list[bytes], *, sequence: int | None) -> bytes:
    records = [Record(i, i, None, v) for i, v in enumerate(values)]
    if sequence is None:
        return build_batch(records, base_timestamp=1000)
    return build_batch(
        records, base_timestamp=1000, producer_id=PRODUCER_ID, producer_epoch=0,
        base_sequence=sequence,
    )  # fmt: skip


def served(log: PartitionLog) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    raw = b"".join(s.read() for s in log.read(log.log_start_offset, 1 << 30).slices)
    position = 0
    while position < len(raw):
        header, records = decode_batch(memoryview(raw)[position:])
        for record in records:
            offset = header.base_offset + record.offset_delta
            assert offset not in found, f"offset {offset} stored twice"
            found[offset] = bytes(record.value or b"")
        position += header.size
    return found


def send(log: PartitionLog, producers: Producers, batches: list[tuple[int, int, bool]]) -> None:
    """One produce request: the idempotent producer's next batch (its retry
    first, if one is due) when the first batch is idempotent, else plain
    batches (clients never mix the two in one partition's records)."""
    count, size, is_idempotent = batches[0]
    idempotent: tuple[list[bytes], bytes] | None = None
    if is_idempotent:
        idempotent = producers.retry
        if idempotent is None:
            values = producers.values(count, size)
            idempotent = (values, build(values, sequence=producers.sequence))
            producers.sequence += count
        sent, payload = idempotent
    else:
        sent, payload = [], b""
        for count, size, _ in batches:
            values = producers.values(count, size)
            payload += build(values, sequence=None)
            sent += values
    try:
        result = log.append(payload)
    except KafkaStorageError:
        producers.refused.update(sent)
        producers.retry = idempotent or producers.retry
        return
    if idempotent is not None:
        producers.retry = None
    producers.ack(result, sent)


def check_online(log: PartitionLog, producers: Producers) -> None:
    if log.offline is None:
        assert served(log) == producers.acked, "serves other than the acknowledged records"


def config_for(segment_bytes: int, interval: int, flush_messages: int | None) -> LogConfig:
    return LogConfig(
        segment_bytes=segment_bytes,
        index_interval_bytes=interval,
        flush_interval_messages=flush_messages or (1 << 62),
    )


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    ops=st.lists(appends, min_size=1, max_size=25),
    after=st.lists(appends, max_size=4),
    plan=plans,
    segment_bytes=st.integers(1500, 6000),
    interval=st.integers(0, 500),
    flush_messages=st.one_of(st.none(), st.integers(1, 8)),
    killed=st.booleans(),
    keep_recovery_point=st.booleans(),
    spill=st.booleans(),
)
def test_acknowledged_records_survive_any_failing_file_operation(
    ops: list[list[tuple[int, int, bool]]],
    after: list[list[tuple[int, int, bool]]],
    plan: fileops.FaultPlan,
    segment_bytes: int,
    interval: int,
    flush_messages: int | None,
    killed: bool,
    keep_recovery_point: bool,
    spill: bool,
) -> None:
    """``spill``: index entries go to the file every two entries instead of
    every 64 KiB, so that those writes happen in the middle of appends."""
    config = config_for(segment_bytes, interval, flush_messages)
    producers = Producers()
    with tempfile.TemporaryDirectory() as tmp:

        def reopen(recovery_point: int, clean: bool) -> PartitionLog:
            return PartitionLog.open(
                f"{tmp}/t-0", "t", 0, uuid.UUID(int=1), config, lambda: 0,
                recovery_point=recovery_point, clean_shutdown=clean,
            )  # fmt: skip

        log = reopen(0, False)
        limit = 2 * index.OffsetIndex.entry.size if spill else index._PENDING_LIMIT
        with fileops.inject(plan), mock.patch.object(index, "_PENDING_LIMIT", limit):
            for batches in ops:
                send(log, producers, batches)
                check_online(log, producers)
            went_offline = log.offline is not None
            clean = False
            if not killed:  # SIGTERM: flush and close, still under the fault
                try:
                    log.flush()
                    clean = True
                except KafkaStorageError:
                    went_offline = True
                log.close()
        recovery_point = log.recovery_point if keep_recovery_point or clean else 0
        del log

        log = reopen(recovery_point, clean)
        stored = served(log)
        for offset, value in producers.acked.items():
            assert stored.get(offset) == value, f"acknowledged offset {offset} lost"
        extra = {o: v for o, v in stored.items() if o not in producers.acked}
        assert went_offline or not extra, "a refused append is stored"
        assert set(extra.values()) <= producers.refused
        assert log.log_end_offset > max(producers.acked, default=-1)

        producers.refused -= set(extra.values())  # stored after all: found, not acked
        for offset, value in extra.items():
            producers.acked[offset] = value
        for batches in after:  # the producer carries on, its retry first
            send(log, producers, batches)
            assert log.offline is None
        if producers.retry is not None:
            send(log, producers, [(1, 0, True)])
        assert producers.retry is None
        assert served(log) == producers.acked
        log.close()
