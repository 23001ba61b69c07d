"""Raw Kafka requests over a plain socket, for timing a broker's start.

The start-up measurement must not include a client library's own connect
and bootstrap logic, so it speaks the two simplest requests directly:
ApiVersions v0 (any broker answers it, even one that knows no other API)
and Metadata v0 (to touch the broker's metadata path before idle RSS is read).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

API_VERSIONS = 18
METADATA = 3
_CLIENT_ID = b"moldau-bench"


class BrokerExited(RuntimeError):
    """The broker process ended while we were waiting for it to answer."""


def _encode_request(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def roundtrip(
    host: str, port: int, api_key: int, version: int, body: bytes, timeout: float
) -> bytes:
    """Send one request on a fresh connection; return the response body after the header."""
    correlation_id = 7
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_encode_request(api_key, version, correlation_id, body))
        (size,) = struct.unpack(">i", _read_exact(sock, 4))
        frame = _read_exact(sock, size)
    (answered_id,) = struct.unpack(">i", frame[:4])
    if answered_id != correlation_id:
        raise ConnectionError(f"correlation id {answered_id} != {correlation_id}")
    return frame[4:]


def api_versions(host: str, port: int, timeout: float) -> bytes:
    return roundtrip(host, port, API_VERSIONS, 0, b"", timeout)


def metadata_all_topics(host: str, port: int, timeout: float) -> bytes:
    # Metadata v0: an empty topic array means "all topics".
    return roundtrip(host, port, METADATA, 0, struct.pack(">i", 0), timeout)


def wait_until_answering(
    host: str, port: int, deadline: float, is_alive: Callable[[], bool]
) -> None:
    """Poll ApiVersions v0 as fast as possible until it is answered.

    Connection refusals are retried after a millisecond; a connection that
    accepts but stays silent is given 200 ms before the next attempt.
    Raises TimeoutError at `deadline` (time.monotonic()) and BrokerExited
    if the process dies first.
    """
    while True:
        if not is_alive():
            raise BrokerExited("broker exited before answering ApiVersions")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("broker did not answer ApiVersions in time")
        try:
            api_versions(host, port, timeout=min(0.2, remaining))
            return
        except (OSError, struct.error):
            time.sleep(0.001)
