"""The meaning of the versions Kafka 4.0 dropped, as Kafka 3.9 gives it.

ListOffsets v0's legacy lookup over segment boundaries (a pure function), and
OffsetCommit v1's commit timestamp, from which offset expiry counts.
"""

from __future__ import annotations

import pytest
from test_group_offsets import expiring_harness, fetch
from test_group_support import START_MS

from moldau.broker.handlers._old_versions import EARLIEST, LATEST, offsets_before
from moldau.group.results import OffsetCommitPartition

# Three segments written at 100, 200, 300 (file times), then the log end "now".
POINTS = [(0, 100), (10, 200), (20, 300), (25, 1000)]


@pytest.mark.parametrize(
    ("timestamp", "max_num", "expected"),
    [
        (LATEST, 1, [25]),
        (LATEST, 3, [25, 20, 10]),
        (LATEST, 100, [25, 20, 10, 0]),
        (EARLIEST, 5, [0]),
        (250, 5, [10, 0]),  # the last point written no later than 250, and back
        (200, 1, [10]),
        (99, 5, []),  # older than every segment
        (5000, 2, [25, 20]),
        (LATEST, 0, []),
    ],
)
def test_offsets_before(timestamp: int, max_num: int, expected: list[int]) -> None:
    assert offsets_before(POINTS, timestamp, max_num) == expected


def test_offsets_before_on_an_empty_log() -> None:
    # One empty segment: only its base offset, no log-end point.
    assert offsets_before([(7, 100)], LATEST, 5) == [7]
    assert offsets_before([(7, 100)], EARLIEST, 5) == [7]


def test_commit_timestamp_of_offset_commit_v1_starts_the_retention() -> None:
    h = expiring_harness()  # offsets kept one minute
    old = OffsetCommitPartition("t", 0, 5, commit_timestamp=START_MS - 50_000)
    now = OffsetCommitPartition("t", 1, 6)  # -1: the commit time is now
    result = h.coord.commit_offsets("solo", "", None, -1, [old, now])
    assert [p.error_code for p in result.partitions] == [0, 0]
    h.advance(11_000)
    assert fetch(h, "solo") == {("t", 1): 6}
