"""Property: through appends, DeleteRecords, size retention and restarts
(clean or killed), the log start offset never goes back, every offset from
it to the log end reads back the batch that holds it, and reads below it are
refused."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_log_property import Model, make_batch, open_partition

from moldau.log.config import LogConfig
from moldau.log.errors import OffsetOutOfRangeError
from moldau.log.partition_log import PartitionLog

appends = st.tuples(st.just("append"), st.integers(1, 4), st.integers(0, 200))
deletes = st.tuples(st.just("delete_records"), st.floats(0, 1))
retention = st.tuples(st.just("retention"), st.integers(0, 6000))
restarts = st.tuples(st.just("restart"), st.booleans())
operations = st.lists(
    st.one_of(appends, appends, appends, deletes, retention, restarts), max_size=50
)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=operations, segment_bytes=st.integers(1000, 3000))
def test_log_start_offset_and_reads(ops: list[tuple[object, ...]], segment_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = LogConfig(segment_bytes=segment_bytes)

        def open_log(start: int, clean: bool = False, recovery_point: int = 0) -> PartitionLog:
            opened = open_partition(
                tmp, config, log_start_offset=start, recovery_point=recovery_point, clean=clean
            )
            opened.high_watermark = opened.log_end_offset
            return opened

        log = open_log(0)
        model = Model()
        start = 0  # what the manager would have checkpointed
        for op in ops:
            if op[0] == "append":
                raw = make_batch(op[1], op[2])  # type: ignore[arg-type]
                model.append(raw, 0)
                log.append(raw)
                log.high_watermark = log.log_end_offset
            elif op[0] == "delete_records":
                target = int(op[1] * log.log_end_offset)  # type: ignore[operator]
                start = log.delete_records_before(target)
            elif op[0] == "retention":
                log.config = LogConfig(segment_bytes=segment_bytes, retention_bytes=op[1])  # type: ignore[arg-type]
                log.delete_old_segments()
                log.config = config
            else:
                clean = bool(op[1])
                if clean:
                    log.flush()
                    log.close()
                log = open_log(
                    start, clean=clean, recovery_point=log.recovery_point if clean else 0
                )
            assert log.log_start_offset >= start
            start = log.log_start_offset
            assert log.log_end_offset == model.end

        if start > 0:
            with pytest.raises(OffsetOutOfRangeError):
                log.read(start - 1, 100)
        for base, last, raw in model.batches:
            if last < start:
                continue
            for offset in {max(base, start), last}:
                data = b"".join(s.read() for s in log.read(offset, 1).slices)
                assert data[17:] == raw[17:] and data[:8] == raw[:8]
        log.close()
