"""Which old segments retention removes, as Kafka decides it.

Pure decisions over a segment list; :class:`PartitionLog` does the deleting.
A segment is deletable only whole, only from the front of the log, and only
when every offset in it is below the high watermark (consumers may not have
seen the rest). The three Kafka rules, each a prefix of the log:

- time (``retention.ms``, ``cleanup.policy`` containing ``delete``): the
  segment's largest timestamp is older than ``now - retention.ms``;
- size (``retention.bytes``, same policy): the log minus the segment is
  still at least ``retention.bytes`` long;
- log start (always): the whole segment lies below the log start offset
  (moved by DeleteRecords).

The active segment may be deletable too (everything in it expired); the log
then rolls a fresh empty segment first, as Kafka does, so an idle partition's
old data does not stay forever.
"""

from __future__ import annotations

from collections.abc import Sequence

from moldau.log.config import LogConfig
from moldau.log.segment import LogSegment

__all__ = ["deletable_prefix"]


def deletable_prefix(
    segments: Sequence[LogSegment],
    config: LogConfig,
    *,
    now: int,
    log_start_offset: int,
    high_watermark: int,
) -> int:
    """How many segments from the front retention removes now."""
    deletes = "delete" in config.cleanup_policy
    excess = sum(s.size for s in segments) - config.retention_bytes
    count = 0
    for i, segment in enumerate(segments):
        upper = segments[i + 1].base_offset if i + 1 < len(segments) else segment.next_offset
        if upper > high_watermark or (i + 1 == len(segments) and segment.size == 0):
            break
        below_start = i + 1 < len(segments) and upper <= log_start_offset
        expired = deletes and 0 <= config.retention_ms < now - segment.largest_timestamp()
        oversized = deletes and config.retention_bytes >= 0 and excess >= segment.size
        if not (below_start or expired or oversized):
            break
        excess -= segment.size
        count += 1
    return count
