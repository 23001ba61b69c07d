"""Errors the client raises: always a ``KafkaError`` with a Kafka error code.

One exception type for broker answers and local failures alike (a refused
connection is NETWORK_EXCEPTION, a request without answer REQUEST_TIMED_OUT),
so callers decide with ``exc.code.retriable`` and the CLI prints one line.
"""

from __future__ import annotations

from moldau.protocol.errors import ErrorCode, KafkaError

__all__ = ["ErrorCode", "KafkaError", "check", "error_code", "make_error", "topic_error"]


def error_code(code: int) -> ErrorCode:
    """The ``ErrorCode`` of a wire value; codes newer than ours count as unknown."""
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.UNKNOWN_SERVER_ERROR


def make_error(code: int, message: str | None = None, *, context: str | None = None) -> KafkaError:
    """A ``KafkaError`` whose text says what failed, then the broker's words."""
    parts = [p for p in (context, message) if p]
    return KafkaError(error_code(code), ": ".join(parts) or None)


def check(code: int, message: str | None = None, *, context: str | None = None) -> None:
    """Raise unless ``code`` is NONE."""
    if code:
        raise make_error(code, message, context=context)


_TOPIC_TEXT = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: "does not exist",
    ErrorCode.TOPIC_ALREADY_EXISTS: "already exists",
}


def topic_error(topic: str, code: int, message: str | None = None) -> KafkaError:
    """An error about one topic, worded for a person (``topic 'x' does not
    exist``) where Kafka's code says it all, else with the broker's text."""
    known = _TOPIC_TEXT.get(error_code(code))
    if known is not None:
        return KafkaError(error_code(code), f"topic '{topic}' {known}")
    return make_error(code, message, context=f"topic '{topic}'")
