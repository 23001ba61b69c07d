"""From a request frame to a response frame: decode, route, encode.

Each API lives in its own module under ``handlers/`` and registers itself
with ``@handles(ApiKey.X, versions)``. A handler receives the decoded body
and returns the response body (a dict), an awaitable of one (a fetch waiting
for data), or None for a request that gets no response (Produce acks=0).

What we cannot serve still gets an answer a client understands: an
ApiVersions of a version we do not know gets a v0 UNSUPPORTED_VERSION
response listing our ranges; any other API we can encode but do not serve is
answered with UNSUPPORTED_VERSION in its error fields. A request that decodes
but breaks the schema (a null where Kafka forbids one) or makes its handler
raise is answered with INVALID_REQUEST the same way (``error_response``).
Only a frame we cannot even parse closes the connection, as Kafka does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol.api_keys import ApiKey
from ..protocol.errors import ErrorCode, KafkaError
from ..protocol.messages import (
    Message,
    RequestHeader,
    decode_request,
    decode_request_header,
    encode_response,
    supported_versions,
)
from .error_response import error_body
from .log_limit import RateLimitedLog
from .request_check import forbidden_null

if TYPE_CHECKING:
    from .connection import Connection, Parts
    from .core import BrokerCore

log = logging.getLogger(__name__)

HandlerResult = Message | None | Awaitable[Message | None]


@dataclass(frozen=True)
class RequestContext:
    """What a handler knows about the request beyond its body."""

    core: BrokerCore
    header: RequestHeader
    client_host: str
    #: The listener the request came in on, whose addresses the client is
    #: given (None: the first listener).
    listener: str | None = None

    @property
    def version(self) -> int:
        return self.header.api_version


HandlerFunc = Callable[[RequestContext, Message], HandlerResult]


@dataclass(frozen=True)
class Handler:
    api_key: ApiKey
    versions: range
    func: HandlerFunc
    #: Served (and advertised) only in cluster mode: the controller's
    #: requests between brokers.
    cluster_only: bool = False


HANDLERS: dict[int, Handler] = {}


def handles(
    api_key: ApiKey, versions: range, *, cluster_only: bool = False
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register a handler for ``versions`` (a range) of one API."""

    def register(func: HandlerFunc) -> HandlerFunc:
        codable = supported_versions(api_key)
        assert codable is not None and versions.start in codable and versions[-1] in codable
        HANDLERS[api_key] = Handler(api_key, versions, func, cluster_only)
        return func

    return register


class CloseConnection(Exception):
    """A request that cannot be answered closes its connection, as in Kafka.

    A frame that cannot be parsed at all, and a failed Produce with acks=0
    (its client reads no answer, so closing is how it learns of the error).
    """


class Dispatcher:
    """Serves the frames of every connection of one broker.

    Whatever a request holds, it gets an answer in its API's error fields or
    (if not even its body can be read) closes its own connection; nothing a
    handler raises reaches the connection. Each such request logs one
    WARNING line through a per-broker rate limit, its traceback at DEBUG.
    """

    def __init__(self, core: BrokerCore, warnings: RateLimitedLog) -> None:
        self.core = core
        self.warnings = warnings

    def __call__(self, connection: Connection, frame: bytes | bytearray) -> Any:
        """Response parts, None (no response), or an awaitable of either."""
        try:
            header, pos = decode_request_header(frame)
        except Exception as exc:
            self.warnings.warning(f"closing {connection.peer}: unreadable request header: {exc}")
            raise CloseConnection from None
        what = f"{_name(header.api_key)} v{header.api_version} from {connection.peer}"
        handler = HANDLERS.get(header.api_key)
        if (
            handler is None
            or header.api_version not in handler.versions
            or (handler.cluster_only and self.core.cluster is None)
        ):
            return self._unsupported(header, what)
        try:
            body = decode_request(header, frame, pos)
        except Exception as exc:
            self.warnings.warning(f"closing {what}: {exc}", exc)
            raise CloseConnection from None
        null = forbidden_null(header.api_key, header.api_version, body)
        if null is not None:
            reason = f"{null} is null where Kafka's schema forbids it"
            self.warnings.warning(f"answered {what} with INVALID_REQUEST: {reason}")
            return _error(header, body, ErrorCode.INVALID_REQUEST, reason)
        context = RequestContext(self.core, header, connection.client_host, connection.listener)
        try:
            result = handler.func(context, body)
        except Exception as exc:
            return self._failed(header, body, what, exc)
        if inspect.isawaitable(result):
            return self._encode_later(header, body, what, result)
        return self._encode(header, body, what, result)

    def _encode(
        self, header: RequestHeader, body: Message, what: str, response: Message | None
    ) -> Parts | None:
        if response is None:
            return None
        try:
            return encode_response(
                header.api_key, header.api_version, header.correlation_id, response
            )
        except Exception as exc:
            return self._failed(header, body, what, exc)

    async def _encode_later(
        self, header: RequestHeader, body: Message, what: str, pending: Awaitable[Message | None]
    ) -> Parts | None:
        try:
            response = await pending
        except Exception as exc:
            return self._failed(header, body, what, exc)
        return self._encode(header, body, what, response)

    def _failed(self, header: RequestHeader, body: Message, what: str, exc: Exception) -> Parts:
        """A handler raised: its error code if it is a KafkaError, else INVALID_REQUEST."""
        if isinstance(exc, KafkaError):
            return _error(header, body, exc.code, exc.message or exc.code.name)
        reason = f"{type(exc).__name__}: {exc}"
        self.warnings.warning(f"answered {what} with INVALID_REQUEST: {reason}", exc)
        return _error(header, body, ErrorCode.INVALID_REQUEST, reason)

    def _unsupported(self, header: RequestHeader, what: str) -> Parts:
        """Answer a request we do not serve with the error code its API carries."""
        if header.api_key == ApiKey.API_VERSIONS:
            versions_body = {
                "error_code": ErrorCode.UNSUPPORTED_VERSION,
                "api_keys": api_version_ranges(self.core.cluster is not None),
            }
            return encode_response(ApiKey.API_VERSIONS, 0, header.correlation_id, versions_body)
        versions = supported_versions(header.api_key)
        if versions is None or header.api_version not in versions:
            self.warnings.warning(f"closing {what}: no codec for this API and version")
            raise CloseConnection
        log.info("answered unsupported %s with UNSUPPORTED_VERSION", what)
        reason = f"moldau does not serve {_name(header.api_key)} v{header.api_version}"
        return _error(header, None, ErrorCode.UNSUPPORTED_VERSION, reason)


def _error(header: RequestHeader, body: Message | None, code: int, message: str) -> Parts:
    """The error answer; a Produce with acks=0 expects none, so Kafka closes instead."""
    if header.api_key == ApiKey.PRODUCE and body is not None and body.get("acks") == 0:
        raise CloseConnection
    response = error_body(header.api_key, header.api_version, body, code, message)
    return encode_response(header.api_key, header.api_version, header.correlation_id, response)


def _name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return f"API {api_key}"


def api_version_ranges(cluster: bool) -> list[dict[str, int]]:
    """Our ApiVersions answer: every served API with its version range (the
    inter-broker ones only in cluster mode, as Kafka's ZooKeeper-mode
    brokers list them)."""
    return [
        {"api_key": h.api_key, "min_version": h.versions.start, "max_version": h.versions[-1]}
        for h in sorted(HANDLERS.values(), key=lambda h: h.api_key)
        if cluster or not h.cluster_only
    ]
