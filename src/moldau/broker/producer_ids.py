"""Producer ids handed out in blocks reserved from the cluster's metadata.

InitProducerId needs an id no other producer of the cluster has had, also
after a restart. Reserving one at a time would write the metadata on every
InitProducerId, so the broker reserves ``PRODUCER_ID_BLOCK`` at once (as
Kafka's ProducerIdManager takes blocks from /latest_producer_id_block) and
hands them out from memory; ids left in a block when the broker stops are
never used. Where a block comes from is the mode's: a single node's own
metadata file, or /latest_producer_id_block in ZooKeeper with a conditional
write, so that blocks of different brokers never overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ..cluster.metadata import LocalMetadataStore
from .metadata_saving import saving

#: Producer ids are reserved from the metadata store this many at a time, so
#: that InitProducerId rarely writes metadata.
PRODUCER_ID_BLOCK = 1000

#: Reserves ``count`` ids and returns the first.
Allocator = Callable[[int], Awaitable[int]]


def local_allocator(store: LocalMetadataStore) -> Allocator:
    """Blocks from a single node's metadata file."""

    async def allocate(count: int) -> int:
        with saving("reserve producer ids"):
            return store.allocate_producer_ids(count)

    return allocate


class ProducerIdBlocks:
    """The unused rest of this broker's block of producer ids."""

    def __init__(self, allocate: Allocator) -> None:
        self._allocate = allocate
        #: [next, end) of the current block, or None before the first.
        self._block: list[int] | None = None
        #: One reservation at a time: concurrent requests wait for it.
        self._lock = asyncio.Lock()

    async def new_producer_id(self) -> int:
        """A producer id no other producer of this cluster has had."""
        async with self._lock:
            if self._block is None or self._block[0] >= self._block[1]:
                first = await self._allocate(PRODUCER_ID_BLOCK)
                self._block = [first, first + PRODUCER_ID_BLOCK]
            producer_id = self._block[0]
            self._block[0] += 1
            return producer_id
