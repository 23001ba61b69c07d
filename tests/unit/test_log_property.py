"""Property: whatever the appends, rolls, truncations and restarts, every
offset reads back the exact bytes of the batch that holds it."""

from __future__ import annotations

import tempfile
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.protocol import batch as b
from moldau.protocol.records import Record, build_batch

appends = st.tuples(
    st.just("append"),
    st.lists(st.tuples(st.integers(1, 4), st.integers(0, 200)), min_size=1, max_size=3),
)
restarts = st.tuples(st.just("restart"), st.booleans(), st.floats(0, 1))
truncations = st.tuples(st.just("truncate"), st.floats(0, 1))
operations = st.lists(st.one_of(appends, appends, appends, restarts, truncations), max_size=40)


def make_batch(records: int, value_size: int) -> bytes:
    return build_batch(
        [Record(i, i, None, bytes([value_size % 251]) * value_size) for i in range(records)],
        base_timestamp=value_size,
    )


def open_partition(
    directory: str,
    config: LogConfig,
    *,
    log_start_offset: int = 0,
    recovery_point: int = 0,
    clean: bool = False,
) -> PartitionLog:
    """Partition t-0 under ``directory`` as a (re)starting broker opens it: the
    property tests restart it many times from the checkpointed state given."""
    return PartitionLog.open(
        f"{directory}/t-0",
        "t",
        0,
        uuid.UUID(int=1),
        config,
        lambda: 0,
        log_start_offset=log_start_offset,
        recovery_point=recovery_point,
        clean_shutdown=clean,
    )


class Model:
    """Expected stored batches: (base offset, last offset, bytes)."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, bytes]] = []
        self.end = 0

    def append(self, raw: bytes, epoch: int) -> None:
        stored = bytearray(raw)
        b.patch_base_offset(stored, 0, self.end)
        b.patch_leader_epoch(stored, 0, epoch)
        last = self.end + b.read_header(raw).last_offset_delta
        self.batches.append((self.end, last, bytes(stored)))
        self.end = last + 1

    def truncate_to(self, offset: int) -> None:
        self.batches = [x for x in self.batches if x[1] < offset]
        self.end = self.batches[-1][1] + 1 if self.batches else offset


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    ops=operations,
    segment_bytes=st.integers(3000, 8000),
    interval=st.integers(1, 600),
)
def test_every_offset_reads_back(
    ops: list[tuple[object, ...]], segment_bytes: int, interval: int
) -> None:
    config = LogConfig(segment_bytes=segment_bytes, index_interval_bytes=interval)
    with tempfile.TemporaryDirectory() as tmp:

        def open_log(recovery_point: int = 0, clean: bool = False) -> PartitionLog:
            return open_partition(tmp, config, recovery_point=recovery_point, clean=clean)

        log = open_log()
        model = Model()
        for epoch, op in enumerate(ops):
            if op[0] == "append":
                payload = b""
                for records, size in op[1]:  # type: ignore[attr-defined]
                    raw = make_batch(records, size)
                    model.append(raw, epoch)
                    payload += raw
                log.append(payload, leader_epoch=epoch)
            elif op[0] == "restart":
                clean, fraction = op[1], op[2]
                if clean:
                    log.flush()
                    log.close()
                    log = open_log(log.recovery_point, clean=True)
                else:  # killed: nothing flushed or closed, any older recovery point
                    log = open_log(int(log.recovery_point * fraction))  # type: ignore[operator]
            elif model.batches:
                fraction = op[1]
                target = model.batches[int(fraction * (len(model.batches) - 1))][0]  # type: ignore[operator]
                log.truncate_to(target)
                model.truncate_to(target)
            assert log.log_end_offset == model.end

        log = open_log()  # a final unclean restart, recovering everything
        assert log.log_end_offset == model.end
        whole = b"".join(s.read() for s in log.read(log.log_start_offset, 1 << 30).slices)
        assert whole == b"".join(raw for _, _, raw in model.batches)
        for base, last, raw in model.batches:
            for offset in {base, last}:
                result = log.read(offset, 1)
                assert b"".join(s.read() for s in result.slices) == raw
        assert log.read(model.end, 100).size == 0
        log.close()
