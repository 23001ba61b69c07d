"""The leader-epoch cache of one partition (Kafka's LeaderEpochFileCache), pure.

Every leader epoch that wrote to the log is remembered with the offset its
first batch got: ``[(epoch, start_offset), ...]``, both strictly increasing.
It answers "where did epoch N end?" (OffsetForLeaderEpoch, KIP-101/KIP-279),
which is what lets a follower truncate exactly where its log and a new
leader's diverge, and a consumer (KIP-320) check its position after a
leader change.

The rules are Kafka 3.9's:

- ``assign(epoch, start)``: nothing changes when ``epoch`` is already the
  latest and ``start`` not earlier than its start; otherwise every entry with
  an epoch >= ``epoch`` or a start >= ``start`` is dropped (a log that went
  back: truncation, a new leader) and the new entry appended.
- ``end_offset_for(epoch, log_end)`` (``endOffsetFor``): for the latest
  epoch, the log end; for an older one, the largest epoch <= it and the start
  of the epoch after it; for one older than every entry, that epoch itself and
  the first entry's start (the data before it is gone, and a follower should
  start from there); UNDEFINED (-1, -1) for -1, an empty cache, or an epoch
  newer than the latest.
- ``truncate_from_end(end)``: entries starting at or past ``end`` go.
- ``truncate_from_start(start)``: entries starting at or before ``start``
  collapse into one, the last of them, moved to ``start``.

No I/O here: ``PartitionLog`` persists the entries as ``leader-epoch-checkpoint``
(``checkpoint.py``) and feeds the cache from the batches it appends.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["UNDEFINED", "UNDEFINED_EPOCH", "UNDEFINED_EPOCH_OFFSET", "LeaderEpochCache"]

UNDEFINED_EPOCH = -1
UNDEFINED_EPOCH_OFFSET = -1
UNDEFINED = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)

EpochEntry = tuple[int, int]


class LeaderEpochCache:
    """(epoch, start offset) entries, both strictly increasing."""

    __slots__ = ("_entries", "latest_epoch")

    def __init__(self, entries: Iterable[EpochEntry] = ()) -> None:
        self._entries: list[EpochEntry] = []
        #: The latest epoch, or -1 when empty: the log's append path compares
        #: each batch's epoch with it, and does nothing more when they match.
        self.latest_epoch = UNDEFINED_EPOCH
        for epoch, start in entries:
            self.assign(epoch, start)

    @property
    def entries(self) -> list[EpochEntry]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LeaderEpochCache) and self._entries == other._entries

    def __repr__(self) -> str:
        return f"LeaderEpochCache({self._entries})"

    def assign(self, epoch: int, start_offset: int) -> bool:
        """Record that ``epoch`` starts at ``start_offset``; whether anything changed.

        Negative values (a batch of an old client without epoch) are ignored.
        """
        if epoch < 0 or start_offset < 0:
            return False
        if self._entries:
            latest, latest_start = self._entries[-1]
            if latest == epoch and start_offset >= latest_start:
                return False
        while self._entries and (
            self._entries[-1][0] >= epoch or self._entries[-1][1] >= start_offset
        ):
            self._entries.pop()
        self._entries.append((epoch, start_offset))
        self.latest_epoch = epoch
        return True

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(epoch, end offset) as Kafka's ``endOffsetFor`` (see the module doc)."""
        if epoch == UNDEFINED_EPOCH or not self._entries:
            return UNDEFINED
        if epoch == self.latest_epoch:
            return epoch, log_end_offset
        floor: EpochEntry | None = None
        for entry in self._entries:
            if entry[0] > epoch:
                return (floor[0] if floor is not None else epoch), entry[1]
            floor = entry
        return UNDEFINED  # newer than the latest epoch

    def epoch_for_offset(self, offset: int) -> int:
        """The epoch that wrote ``offset``: the last entry starting at or
        before it (Kafka's ``epochForOffset``), or -1."""
        found = UNDEFINED_EPOCH
        for epoch, start_offset in self._entries:
            if start_offset > offset:
                break
            found = epoch
        return found

    def truncate_from_end(self, end_offset: int) -> bool:
        """Drop the entries starting at or past ``end_offset``; whether any went."""
        if end_offset < 0 or not self._entries or self._entries[-1][1] < end_offset:
            return False
        while self._entries and self._entries[-1][1] >= end_offset:
            self._entries.pop()
        self._set_latest()
        return True

    def truncate_from_start(self, start_offset: int) -> bool:
        """The log now starts at ``start_offset``: entries starting at or before
        it become one, the last, starting there. Whether anything changed."""
        before = [entry for entry in self._entries if entry[1] <= start_offset]
        if not before or (len(before) == 1 and before[0][1] == start_offset):
            return False
        self._entries[: len(before)] = [(before[-1][0], start_offset)]
        return True

    def clear(self) -> bool:
        """Forget everything (the log was emptied); whether anything was there."""
        had = bool(self._entries)
        self._entries.clear()
        self.latest_epoch = UNDEFINED_EPOCH
        return had

    def _set_latest(self) -> None:
        self.latest_epoch = self._entries[-1][0] if self._entries else UNDEFINED_EPOCH
