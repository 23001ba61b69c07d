"""Property: any interleaving of transactional writes, commits and aborts
of a few producers, with rolls, clean restarts and kills, leaves the log's
open transactions, last stable offset and aborted-transaction list equal to
a plain model of Kafka's rules, on the leader and on a follower fed the
leader's bytes."""

from __future__ import annotations

import tempfile
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_txn_log import txn

from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog

PIDS = (1, 2, 3)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.sampled_from(PIDS)),
        st.tuples(st.just("write"), st.sampled_from(PIDS)),
        st.tuples(st.just("end"), st.sampled_from(PIDS), st.booleans()),
        st.tuples(st.just("restart"), st.booleans()),
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, segment_bytes=st.integers(150, 800))
def test_transactions_match_the_model(ops: list[tuple[object, ...]], segment_bytes: int) -> None:
    config = LogConfig(segment_bytes=segment_bytes)
    with tempfile.TemporaryDirectory() as tmp:

        def open_log(name: str, clean: bool = False) -> PartitionLog:
            return PartitionLog.open(
                f"{tmp}/{name}", "t", 0, uuid.UUID(int=1), config, lambda: 0, clean_shutdown=clean
            )

        log = open_log("leader")
        sequences = dict.fromkeys(PIDS, 0)
        open_txns: dict[int, int] = {}  # pid -> first offset
        aborted: list[tuple[int, int]] = []
        for op in ops:
            if op[0] == "write":
                pid = int(op[1])  # type: ignore[call-overload]
                result = log.append(txn(pid, sequences[pid]))
                sequences[pid] += 2
                open_txns.setdefault(pid, result.base_offset)
            elif op[0] == "end":
                pid, commit = int(op[1]), bool(op[2])  # type: ignore[call-overload]
                log.append_control(pid, 0, commit, 0, leader_epoch=0)
                first = open_txns.pop(pid, None)
                if first is not None and not commit:
                    aborted.append((pid, first))
            else:
                clean = bool(op[1])
                if clean:
                    log.flush()
                    log.close()
                log = open_log("leader", clean=clean)
            end = log.log_end_offset
            log.high_watermark = end
            assert log.producer_state.ongoing == open_txns
            assert log.last_stable_offset(end) == min(open_txns.values(), default=end)
            assert sorted(log.aborted_transactions(0, end)) == sorted(aborted)
        follower = open_log("follower")
        raw = b"".join(s.read() for s in log.read(0, 1 << 30).slices)
        if raw:
            follower.append_as_follower(raw)
        follower.high_watermark = end = follower.log_end_offset
        assert follower.producer_state.ongoing == open_txns
        assert follower.last_stable_offset(end) == log.last_stable_offset(end)
        assert sorted(follower.aborted_transactions(0, end)) == sorted(aborted)
