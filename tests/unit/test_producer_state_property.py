"""Property: an idempotent producer's sends, retries and epoch bumps,
through clean restarts and kills, leave each batch in the log exactly once,
in order; a retry of any of the last five batches of the current epoch gets
the original offsets, an older one OUT_OF_ORDER_SEQUENCE_NUMBER, a batch of
a fenced epoch INVALID_PRODUCER_EPOCH."""

from __future__ import annotations

import tempfile
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_producer_state import idem

from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog
from moldau.log.producer_state import (
    BATCHES_TO_RETAIN,
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
)
from moldau.protocol import batch as b

operations = st.lists(
    st.one_of(
        st.just(("send",)),
        st.just(("send",)),
        st.just(("send",)),
        st.tuples(st.just("retry"), st.integers(1, 7)),
        st.tuples(st.just("restart"), st.booleans()),
        st.just(("bump",)),
        st.just(("zombie",)),
    ),
    max_size=60,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, segment_bytes=st.integers(200, 1000))
def test_each_batch_is_written_once(ops: list[tuple[object, ...]], segment_bytes: int) -> None:
    config = LogConfig(segment_bytes=segment_bytes)
    with tempfile.TemporaryDirectory() as tmp:

        def open_log(clean: bool = False, recovery_point: int = 0) -> PartitionLog:
            return PartitionLog.open(
                f"{tmp}/t-0",
                "t",
                0,
                uuid.UUID(int=1),
                config,
                lambda: 0,
                recovery_point=recovery_point,
                clean_shutdown=clean,
            )

        log = open_log()
        epoch = 0
        sent: list[tuple[int, int, int]] = []  # (epoch, sequence, first offset)
        for op in ops:
            if op[0] == "send":
                seq = sent[-1][1] + 2 if sent and sent[-1][0] == epoch else 0
                result = log.append(idem(seq, epoch=epoch))
                assert not result.duplicate and result.base_offset == 2 * len(sent)
                sent.append((epoch, seq, result.base_offset))
            elif op[0] == "retry" and sent:
                current = [s for s in sent if s[0] == epoch]
                back = op[1]
                if not current or back > len(current):  # type: ignore[operator]
                    continue
                _, seq, offset = current[-back]  # type: ignore[index]
                if back <= BATCHES_TO_RETAIN:  # type: ignore[operator]
                    result = log.append(idem(seq, epoch=epoch))
                    assert result.duplicate and result.base_offset == offset
                else:
                    with pytest.raises(OutOfOrderSequenceError):
                        log.append(idem(seq, epoch=epoch))
            elif op[0] == "restart":
                if op[1]:
                    log.flush()
                    log.close()
                    log = open_log(clean=True, recovery_point=log.recovery_point)
                else:
                    log = open_log()
            elif op[0] == "bump":
                epoch += 1
            elif op[0] == "zombie" and epoch > 0 and any(s[0] == epoch for s in sent):
                with pytest.raises(InvalidProducerEpochError):
                    log.append(idem(999, epoch=epoch - 1))
        data = b"".join(s.read() for s in log.read(0, 1 << 30).slices)
        stored = [
            (h.producer_epoch, h.base_sequence, h.base_offset) for h, _ in b.iter_batches(data)
        ]
        assert stored == sent
        log.close()
