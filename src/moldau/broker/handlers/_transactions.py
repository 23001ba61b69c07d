"""What the transaction handlers share: the service, and the error a client
of an older version understands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...protocol.errors import ErrorCode
from ..dispatch import RequestContext

if TYPE_CHECKING:
    from ..transactions import TransactionService


def transaction_service(context: RequestContext) -> TransactionService:
    """The broker's transaction coordinator, started by the first request
    that needs it on a single node that never had one (``BrokerCore``)."""
    return context.core.transactions or context.core.start_transactions()


def for_version(code: ErrorCode, version: int, fenced_since: int) -> ErrorCode:
    """PRODUCER_FENCED (KIP-588) for clients that know it, INVALID_PRODUCER_EPOCH
    for older versions of the API (before ``fenced_since``), as Kafka answers."""
    if code == ErrorCode.PRODUCER_FENCED and version < fenced_since:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code


def partition_exists(context: RequestContext, topic: str, index: int) -> bool:
    info = context.core.metadata.topic(topic)
    return info is not None and 0 <= index < info.partition_count
