"""Property: whatever is produced, however segments roll, and whenever the
cleaner runs (or the broker restarts or is killed), the log read from the
start folds to the same "latest value per key" as everything produced, holds
only records exactly as produced at their offsets, keeps the newest record
of every live key, and holds one record per key in the cleaned section."""

from __future__ import annotations

import tempfile
import uuid

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_cleaner import contents, fold, keyed

from moldau.log.cleaner import CleanerConfig, LogCleaner
from moldau.log.config import LogConfig
from moldau.log.partition_log import PartitionLog

KEYS = [b"a", b"b", b"c", b"d", b"e", b"f"]
HOUR = 3_600_000

records = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(min_size=1, max_size=30)))
produces = st.tuples(
    st.just("produce"), st.lists(records, min_size=1, max_size=4), st.integers(0, 4)
)
cleans = st.tuples(st.just("clean"), st.integers(0, 3 * HOUR), st.integers(1, 5000))
restarts = st.tuples(st.just("restart"), st.booleans())
operations = st.lists(
    st.one_of(produces, produces, produces, produces, cleans, restarts), min_size=5, max_size=60
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    ops=operations,
    segment_bytes=st.integers(300, 800),
    delete_retention_ms=st.integers(0, 2 * HOUR),
    max_map_keys=st.integers(1, 8),
)
def test_cleaner_keeps_the_latest_value_per_key(
    ops: list[tuple[object, ...]],
    segment_bytes: int,
    delete_retention_ms: int,
    max_map_keys: int,
) -> None:
    config = LogConfig(
        cleanup_policy="compact",
        segment_bytes=segment_bytes,
        delete_retention_ms=delete_retention_ms,
        min_cleanable_dirty_ratio=0.0,
    )
    now = [HOUR]
    cleaner_config = CleanerConfig(dedupe_buffer_size=max_map_keys * 128)
    with tempfile.TemporaryDirectory() as tmp:

        def open_log(clean: bool = False, recovery_point: int = 0) -> PartitionLog:
            opened = PartitionLog.open(
                f"{tmp}/t-0",
                "t",
                0,
                uuid.UUID(int=1),
                config,
                lambda: now[0],
                recovery_point=recovery_point,
                clean_shutdown=clean,
            )
            opened.high_watermark = opened.log_end_offset
            return opened

        log = open_log()
        cleaner = LogCleaner(lambda: [log], lambda: now[0], cleaner_config)
        produced: dict[int, tuple[bytes, bytes | None]] = {}
        for op in ops:
            if op[0] == "produce":
                entries, codec = op[1], op[2]
                result = log.append(keyed(entries, ts=now[0], compression=codec))  # type: ignore[arg-type]
                for i, entry in enumerate(entries):  # type: ignore[arg-type]
                    produced[result.base_offset + i] = entry
                log.high_watermark = log.log_end_offset
            elif op[0] == "clean":
                now[0] += op[1]  # type: ignore[operator]
                cleaner.run_until_clean(budget_bytes=op[2])  # type: ignore[arg-type]
            else:
                cleaner.abort()
                if op[1]:
                    log.flush()
                    log.close()
                    log = open_log(clean=True, recovery_point=log.recovery_point)
                else:
                    log = open_log()

        now[0] += HOUR
        cleaner.run_until_clean()
        rows = contents(log)
        event("records removed" if len(rows) < len(produced) else "nothing removed")
        offsets = [row[0] for row in rows]
        assert offsets == sorted(set(offsets))
        assert log.log_end_offset == len(produced)
        for offset, key, value, _ in rows:
            assert produced[offset] == (key, value)
        model: dict[bytes, bytes] = {}
        latest: dict[bytes, int] = {}
        for offset, (key, value) in sorted(produced.items()):
            latest[key] = offset
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        assert fold(rows) == model
        for offset in latest.values():
            if produced[offset][1] is not None:
                assert offset in offsets
        cleaned_to = cleaner.checkpoints.get(("t", 0), 0)
        cleaned_keys = [key for offset, key, _, _ in rows if offset < cleaned_to]
        assert len(cleaned_keys) == len(set(cleaned_keys))
        log.close()
