"""Framing and codecs of Kafka requests and responses: moldau's wire API.

A Kafka frame is an int32 size followed by a header and a body. The broker
decodes request headers and bodies and encodes responses; the client does the
reverse. Bodies are dicts keyed by Kafka's field names (see ``codegen``);
codecs are compiled on first use of each (API, version), so a broker that only
ever sees Metadata and Produce never pays for the other eighty APIs.

Header versions follow Kafka's rule: flexible versions use request header v2
and response header v1, older ones v1 and v0, and ApiVersions responses always
use header v0 so that a client can read the error of a version it guessed
wrong.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

from . import primitives
from .api_keys import ApiKey
from .codegen import Decoder, Encoder, compile_decoder, compile_encoder
from .primitives import Buffer, DecodeError
from .schema import known_versions, message_spec

_SIZE = struct.Struct(">i")
_RESPONSE_HEADER = struct.Struct(">ii")
_REQUEST_HEADER = struct.Struct(">hhi")

Message = dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


def supported_versions(api_key: int) -> range | None:
    """All versions of ``api_key`` the codecs can handle, or None."""
    return known_versions(api_key)


@functools.cache
def is_flexible(api_key: int, version: int) -> bool:
    """Whether this version uses compact encodings and tagged fields."""
    return message_spec(api_key, version, "request").flexible


@functools.cache
def _request_decoder(api_key: int, version: int) -> Decoder:
    return compile_decoder(message_spec(api_key, version, "request"))


@functools.cache
def _request_encoder(api_key: int, version: int) -> Encoder:
    return compile_encoder(message_spec(api_key, version, "request"))


@functools.cache
def _response_decoder(api_key: int, version: int) -> Decoder:
    return compile_decoder(message_spec(api_key, version, "response"))


@functools.cache
def _response_encoder(api_key: int, version: int) -> Encoder:
    return compile_encoder(message_spec(api_key, version, "response"))


def _can_code(api_key: int, version: int) -> bool:
    versions = known_versions(api_key)
    return versions is not None and version in versions


def decode_request_header(frame: Buffer) -> tuple[RequestHeader, int]:
    """Read a request header (without the size prefix).

    The client id is read for every API and version (all request headers from
    v1 on start the same way), so that even a request we cannot decode can be
    answered with its correlation id.
    """
    try:
        api_key, api_version, correlation_id = _REQUEST_HEADER.unpack_from(frame, 0)
        client_id, pos = primitives.r_string(frame, 8)
        if _can_code(api_key, api_version) and is_flexible(api_key, api_version):
            pos = primitives.skip_tagged_fields(frame, pos)
    except struct.error as exc:
        raise DecodeError(f"truncated request header: {exc}") from None
    return RequestHeader(api_key, api_version, correlation_id, client_id), pos


def decode_request(header: RequestHeader, frame: Buffer, pos: int) -> Message:
    """Decode the body that follows ``header`` in ``frame``."""
    if not _can_code(header.api_key, header.api_version):
        raise DecodeError(f"no codec for API {header.api_key} v{header.api_version}")
    try:
        body, _ = _request_decoder(header.api_key, header.api_version)(frame, pos)
    except struct.error as exc:
        raise DecodeError(f"truncated {_name(header.api_key)} request: {exc}") from None
    return body


def encode_response(api_key: int, version: int, correlation_id: int, body: Message) -> list[Any]:
    """A whole response frame: bytes parts, and file slices to sendfile.

    The first part starts with the frame's size prefix.
    """
    parts: list[Any] = []
    out = bytearray()
    _response_encoder(api_key, version)(out, parts, body)
    parts.append(out)
    head = bytearray(_RESPONSE_HEADER.size)
    if api_key != ApiKey.API_VERSIONS and is_flexible(api_key, version):
        head.append(0)  # empty tagged fields of response header v1
    size = len(head) - 4
    size += sum(len(p) if isinstance(p, bytes | bytearray) else p.length for p in parts)
    _RESPONSE_HEADER.pack_into(head, 0, size, correlation_id)
    parts.insert(0, head)
    return parts


def encode_request(
    api_key: int, version: int, correlation_id: int, client_id: str | None, body: Message
) -> bytes:
    """A whole request frame, size prefix included (the client side)."""
    out = bytearray(4)
    out += _REQUEST_HEADER.pack(api_key, version, correlation_id)
    primitives.w_string(out, client_id)
    if is_flexible(api_key, version):
        out.append(0)
    parts: list[Any] = []
    _request_encoder(api_key, version)(out, parts, body)
    if parts:
        raise ValueError("requests carry records as bytes, not file slices")
    _SIZE.pack_into(out, 0, len(out) - 4)
    return bytes(out)


def decode_response(api_key: int, version: int, frame: Buffer) -> tuple[int, Message]:
    """Decode a response frame (without size prefix): (correlation id, body)."""
    try:
        correlation_id = _SIZE.unpack_from(frame, 0)[0]
        pos = 4
        if api_key != ApiKey.API_VERSIONS and is_flexible(api_key, version):
            pos = primitives.skip_tagged_fields(frame, pos)
        body, _ = _response_decoder(api_key, version)(frame, pos)
    except struct.error as exc:
        raise DecodeError(f"truncated {_name(api_key)} response: {exc}") from None
    return correlation_id, body


def _name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return f"API {api_key}"
