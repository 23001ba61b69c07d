"""How a failed metadata write reaches the client.

Topic admin and producer-id blocks both write the metadata store; a write
that failed leaves the store unchanged (it writes a new file and renames
it), so the client gets KAFKA_STORAGE_ERROR and may retry, and the broker
logs what it could not do.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ..protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def saving(what: str) -> Iterator[None]:
    """A metadata change that failed to save (the store changed nothing)
    is KAFKA_STORAGE_ERROR to the client."""
    try:
        yield
    except OSError as exc:
        log.error("could not %s, the metadata was not saved: %s", what, exc)
        raise KafkaError(
            ErrorCode.KAFKA_STORAGE_ERROR, f"Could not save the metadata: {exc}"
        ) from None
