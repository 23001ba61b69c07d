"""From a request frame to a response frame: decode, route, encode.

Each API lives in its own module under ``handlers/`` and registers itself
with ``@handles(ApiKey.X, versions)``. A handler receives the decoded body
and returns the response body (a dict), an awaitable of one (a fetch waiting
for data), or None for a request that gets no response (Produce acks=0).

What we cannot serve still gets an answer a client understands: an
ApiVersions of a version we do not know gets a v0 UNSUPPORTED_VERSION
response listing our ranges; any other API we can encode but do not serve is
answered with UNSUPPORTED_VERSION in its error fields. Only a frame we cannot
even parse closes the connection, as Kafka does.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..protocol.api_keys import ApiKey
from ..protocol.errors import ErrorCode
from ..protocol.messages import (
    Message,
    RequestHeader,
    decode_request,
    decode_request_header,
    encode_response,
    supported_versions,
)
from ..protocol.schema import message_spec

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

    @property
    def version(self) -> int:
        return self.header.api_version


HandlerFunc = Callable[[RequestContext, Message], HandlerResult]


@dataclass(frozen=True)
class Handler:
    api_key: ApiKey
    versions: range
    func: HandlerFunc


HANDLERS: dict[int, Handler] = {}


def handles(api_key: ApiKey, versions: range) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register a handler for ``versions`` (a range) of one API."""

    def register(func: HandlerFunc) -> HandlerFunc:
        codable = supported_versions(api_key)
        assert codable is not None and versions.start in codable and versions[-1] in codable
        HANDLERS[api_key] = Handler(api_key, versions, func)
        return func

    return register


def handle_frame(
    core: BrokerCore, connection: Connection, frame: bytes | bytearray
) -> Parts | Any | None:
    """Serve one frame; the connection closes on DecodeError or any exception."""
    header, pos = decode_request_header(frame)
    handler = HANDLERS.get(header.api_key)
    if handler is None or header.api_version not in handler.versions:
        return _unsupported(header)
    body = decode_request(header, frame, pos)
    context = RequestContext(core, header, connection.client_host)
    result = handler.func(context, body)
    if inspect.isawaitable(result):
        return _encode_later(header, result)
    return _encode(header, result)


def _encode(header: RequestHeader, body: Message | None) -> Parts | None:
    if body is None:
        return None
    return encode_response(header.api_key, header.api_version, header.correlation_id, body)


async def _encode_later(header: RequestHeader, pending: Awaitable[Message | None]) -> Parts | None:
    return _encode(header, await pending)


def _unsupported(header: RequestHeader) -> Parts:
    """Answer a request we do not serve with the error code its API carries."""
    if header.api_key == ApiKey.API_VERSIONS:
        versions_body = {
            "error_code": ErrorCode.UNSUPPORTED_VERSION,
            "api_keys": api_version_ranges(),
        }
        return encode_response(ApiKey.API_VERSIONS, 0, header.correlation_id, versions_body)
    versions = supported_versions(header.api_key)
    if versions is None or header.api_version not in versions:
        raise ValueError(f"API {header.api_key} v{header.api_version} cannot be decoded; closing")
    spec = message_spec(header.api_key, header.api_version, "response")
    body: dict[str, Any] = {}
    for field in spec.fields:
        if field.name == "error_code":
            body["error_code"] = ErrorCode.UNSUPPORTED_VERSION
        elif field.name == "error_message":
            body["error_message"] = f"moldau does not serve {ApiKey(header.api_key).name}"
    log.info(
        "answered unsupported %s v%d with UNSUPPORTED_VERSION",
        ApiKey(header.api_key).name,
        header.api_version,
    )
    return encode_response(header.api_key, header.api_version, header.correlation_id, body)


def api_version_ranges() -> list[dict[str, int]]:
    """Our ApiVersions answer: every served API with its version range."""
    return [
        {"api_key": h.api_key, "min_version": h.versions.start, "max_version": h.versions[-1]}
        for h in sorted(HANDLERS.values(), key=lambda h: h.api_key)
    ]
