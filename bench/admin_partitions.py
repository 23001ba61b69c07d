"""What many partitions cost a moldau broker: create, restart, delete, and
how long other requests wait meanwhile.

    .venv/bin/python bench/admin_partitions.py 3000

Starts ``moldau broker`` on a temporary data dir, creates one topic of N
partitions while a second connection sends ApiVersions every 10 ms (the
worst round trip is how long the event loop was held), restarts the broker,
deletes the topic, and asks for 2^31-1 partitions (refused at once).
"""

from __future__ import annotations

import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from moldau.protocol.messages import decode_response, encode_request
from probe import wait_until_answering

MOLDAU = str(Path(sys.executable).parent / "moldau")
CREATE_TOPICS, DELETE_TOPICS, API_VERSIONS = 19, 20, 18


class Raw:
    """One blocking connection speaking exact requests."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=900)
        self.correlation = 0

    def send(self, api_key: int, version: int, body: dict[str, Any]) -> None:
        self.correlation += 1
        self.sock.sendall(encode_request(api_key, version, self.correlation, "bench", body))

    def receive(self, api_key: int, version: int) -> dict[str, Any]:
        size = struct.unpack(">i", self._exactly(4))[0]
        _, body = decode_response(api_key, version, self._exactly(size))
        return body

    def _exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            MOLDAU,
            "broker",
            "--override",
            f"listeners=PLAINTEXT://127.0.0.1:{port}",
            "--override",
            f"log.dirs={data_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until_answering("127.0.0.1", port, time.monotonic() + 300, lambda: process.poll() is None)
    return process


def create_request(name: str, partitions: int) -> dict[str, Any]:
    topic = {"name": name, "num_partitions": partitions, "replication_factor": 1}
    return {
        "topics": [{**topic, "assignments": [], "configs": []}],
        "timeout_ms": 900000,
        "validate_only": False,
    }


def main(partitions: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data_dir = Path(tempfile.mkdtemp(prefix="moldau-bench-"))
    process = start(data_dir, port)
    try:
        creator, pinger = Raw(port), Raw(port)
        started = time.monotonic()
        creator.send(CREATE_TOPICS, 5, create_request("many", partitions))
        creator.sock.setblocking(False)
        worst, pings = 0.0, 0
        while True:
            sent = time.monotonic()
            pinger.send(API_VERSIONS, 0, {})
            pinger.receive(API_VERSIONS, 0)
            worst, pings = max(worst, time.monotonic() - sent), pings + 1
            try:
                if creator.sock.recv(1, socket.MSG_PEEK):
                    break
            except BlockingIOError:
                time.sleep(0.01)
        created = time.monotonic() - started
        print(f"create {partitions}: {created:.1f} s; {pings} ApiVersions answered meanwhile,")
        print(f"  worst round trip {worst * 1000:.0f} ms")
        process.send_signal(signal.SIGTERM)
        process.wait(300)
        started = time.monotonic()
        process = start(data_dir, port)
        print(f"restart with {partitions} partitions: {time.monotonic() - started:.1f} s")
        conn = Raw(port)
        started = time.monotonic()
        conn.send(DELETE_TOPICS, 5, {"topic_names": ["many"], "timeout_ms": 900000})
        conn.receive(DELETE_TOPICS, 5)
        print(f"delete {partitions}: {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        conn.send(CREATE_TOPICS, 5, create_request("huge", 2**31 - 1))
        answer = conn.receive(CREATE_TOPICS, 5)["topics"][0]
        print(
            f"2^31-1 partitions: error {answer['error_code']} after "
            f"{(time.monotonic() - started) * 1000:.1f} ms"
        )
    finally:
        process.kill()
        process.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
