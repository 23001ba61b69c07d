"""What the transaction handlers share: the service, and the error a client
of an older version understands."""

from __future__ import annotations

from ...protocol.errors import ErrorCode
from ..dispatch import RequestContext
from ..transactions import TransactionService


def transaction_service(context: RequestContext) -> TransactionService:
    service = context.core.transactions
    assert service is not None, "the broker starts its transaction service before serving"
    return service


def for_version(code: ErrorCode, version: int, fenced_since: int) -> ErrorCode:
    """PRODUCER_FENCED (KIP-588) for clients that know it, INVALID_PRODUCER_EPOCH
    for older versions of the API (before ``fenced_since``), as Kafka answers."""
    if code == ErrorCode.PRODUCER_FENCED and version < fenced_since:
        return ErrorCode.INVALID_PRODUCER_EPOCH
    return code


def partition_exists(context: RequestContext, topic: str, index: int) -> bool:
    info = context.core.metadata.topic(topic)
    return info is not None and 0 <= index < info.partition_count
