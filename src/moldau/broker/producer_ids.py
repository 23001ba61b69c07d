"""Producer ids handed out in blocks reserved from the metadata store.

InitProducerId needs an id no other producer of the cluster has had, also
after a restart. Reserving one at a time would write the metadata on every
InitProducerId, so the broker reserves ``PRODUCER_ID_BLOCK`` at once (as
Kafka's ProducerIdManager takes blocks from /latest_producer_id_block) and
hands them out from memory; ids left in a block when the broker stops are
never used.
"""

from __future__ import annotations

from ..cluster.metadata import MetadataStore
from .metadata_saving import saving

#: Producer ids are reserved from the metadata store this many at a time, so
#: that InitProducerId rarely writes metadata.
PRODUCER_ID_BLOCK = 1000


class ProducerIdBlocks:
    """The unused rest of this broker's block of producer ids."""

    def __init__(self, metadata: MetadataStore) -> None:
        self._metadata = metadata
        #: [next, end) of the current block, or None before the first.
        self._block: list[int] | None = None

    def new_producer_id(self) -> int:
        """A producer id no other producer of this cluster has had."""
        if self._block is None or self._block[0] >= self._block[1]:
            with saving("reserve producer ids"):
                first = self._metadata.allocate_producer_ids(PRODUCER_ID_BLOCK)
            self._block = [first, first + PRODUCER_ID_BLOCK]
        producer_id = self._block[0]
        self._block[0] += 1
        return producer_id
