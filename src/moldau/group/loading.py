"""Loading an offsets partition in slices, so the broker keeps serving meanwhile.

A broker that becomes leader of a ``__consumer_offsets`` partition must
replay it before it answers for its groups (Kafka's
``GroupMetadataManager.loadGroupsAndOffsets``, run on a scheduler thread).
moldau has one event loop, so the replay runs in slices: each
:meth:`PartitionLoad.run_slice` replays records until ``slice_ms`` have
passed on the injected clock and returns, and the shell lets the loop run
before the next slice. Meanwhile the partition's groups get
COORDINATOR_LOAD_IN_PROGRESS. Pure: no event loop, the clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Set
from typing import Protocol

from moldau.group._codec import DecodeError
from moldau.group.runtime import LoggedRecord


class Replayer(Protocol):
    """A coordinator that rebuilds its state from a partition's records."""

    def mark_loading(self, partition: int) -> None: ...

    def replay(self, partition: int, record: LoggedRecord) -> None:
        """Apply one entry of ``partition``; raises DecodeError for one it
        cannot read."""

    def finish_loading(self, partition: int) -> None: ...

    def unload_partition(self, partition: int) -> None: ...

    @property
    def owned_partitions(self) -> Set[int]: ...

    @property
    def loading_partitions(self) -> Set[int]: ...


#: How long one slice may hold the event loop (as topic creation's slices).
SLICE_MS = 20


class PartitionLoad:
    """The replay of one partition, from :meth:`start` to its last slice."""

    def __init__(
        self,
        coordinator: Replayer,
        partition: int,
        records: Iterator[LoggedRecord],
        clock: Callable[[], int],
        slice_ms: int = SLICE_MS,
    ) -> None:
        self.coordinator = coordinator
        self.partition = partition
        self.records = records
        self.clock = clock
        self.slice_ms = slice_ms
        #: Records skipped as unreadable so far.
        self.skipped = 0
        self.replayed = 0
        self.done = False

    def start(self) -> None:
        """The partition's groups now wait for the load."""
        self.coordinator.mark_loading(self.partition)

    def run_slice(self) -> bool:
        """Replay records for up to ``slice_ms`` (at least one); whether the
        load is complete, in which case the partition is served."""
        if self.done:
            return True
        deadline = self.clock() + self.slice_ms
        for record in self.records:
            try:
                self.coordinator.replay(self.partition, record)
            except DecodeError:
                self.skipped += 1
            self.replayed += 1
            if self.clock() >= deadline:
                return False
        self.coordinator.finish_loading(self.partition)
        self.done = True
        return True

    def abandon(self) -> None:
        """Leadership went away mid-load: forget what was read (its requests
        now get NOT_COORDINATOR)."""
        self.done = True
        self.coordinator.unload_partition(self.partition)
