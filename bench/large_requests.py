"""Broker CPU per GB of large produce requests, received over a raw socket.

The receive path of a large frame (its own buffer, reserved from the
request memory, see ``broker/connection.py``) is what a change to it can
slow down; librdkafka's batching hides it in the full benchmark. This sends
``--requests`` Produce v8 requests of about 1 MB (1,000 records of 1 KiB, the
clients' default request limit), five in flight as librdkafka keeps them,
and prints requests/s and the broker's CPU seconds per GB of request bytes.

The machine is shared and noisy: compare two source trees interleaved, e.g.

    for i in 1 2 3 4 5; do
      .venv/bin/python bench/large_requests.py
      PYTHONPATH=/tmp/old/src .venv/bin/python bench/large_requests.py
    done

(``git archive <commit> src | tar -x -C /tmp/old`` gives the old tree; the
broker subprocess inherits PYTHONPATH.)
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from brokers import free_port
from moldau.protocol.messages import decode_response, encode_request
from moldau.protocol.records import Record, build_batch
from probe import wait_until_answering
from procstat import cpu_seconds

PRODUCE = 0
METADATA = 3
TOPIC = "large-requests"
IN_FLIGHT = 5


def produce_frame(topic: str) -> bytes:
    records = [Record(i, i, None, os.urandom(1024), []) for i in range(1000)]
    batch = build_batch(records, base_timestamp=int(time.time() * 1000))
    partition = {"index": 0, "records": batch}
    topic_data = [{"name": topic, "partition_data": [partition]}]
    body = {"acks": 1, "timeout_ms": 5000, "topic_data": topic_data}
    return encode_request(PRODUCE, 8, 1, "bench", body)


def read_frame(sock: socket.socket) -> bytes:
    size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
    frame = sock.recv(size, socket.MSG_WAITALL)
    if len(frame) != size:
        raise ConnectionError("broker closed the connection")
    return frame


def check_stored(frame: bytes) -> None:
    _, body = decode_response(PRODUCE, 8, frame)
    code = body["responses"][0]["partition_responses"][0]["error_code"]
    if code != 0:
        raise RuntimeError(f"the broker refused the produce request: error {code}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    port = free_port()
    moldau = str(Path(sys.executable).parent / "moldau")
    with tempfile.TemporaryDirectory() as data:
        listener = f"listeners=PLAINTEXT://127.0.0.1:{port}"
        broker = subprocess.Popen(
            [moldau, "broker", "--override", listener, "--override", f"log.dirs={data}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            alive = lambda: broker.poll() is None  # noqa: E731
            wait_until_answering("127.0.0.1", port, time.monotonic() + 30, alive)
            frame = produce_frame(TOPIC)
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(encode_request(METADATA, 1, 0, "bench", {"topics": [{"name": TOPIC}]}))
                read_frame(sock)  # creates the topic (auto.create.topics.enable)
                for _ in range(20):  # warm-up
                    sock.sendall(frame)
                    check_stored(read_frame(sock))
                cpu_before, started = cpu_seconds(broker.pid), time.monotonic()
                in_flight = 0
                for _ in range(args.requests):
                    sock.sendall(frame)
                    in_flight += 1
                    if in_flight == IN_FLIGHT:
                        read_frame(sock)
                        in_flight -= 1
                for _ in range(in_flight):
                    read_frame(sock)
                elapsed = time.monotonic() - started
                cpu = cpu_seconds(broker.pid) - cpu_before
        finally:
            broker.kill()
            broker.wait(10)
    gigabytes = args.requests * len(frame) / 1e9
    print(
        f"{args.requests} produce requests of {len(frame):,} B: {args.requests / elapsed:.0f}/s, "
        f"broker CPU {cpu / gigabytes:.2f} s/GB"
    )


if __name__ == "__main__":
    main()
