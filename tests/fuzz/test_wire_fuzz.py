"""A seeded mutator over real requests of every served API and version.

For each (API, version) the broker advertises, a valid request is built from
the message spec (names of a real topic and group where names are asked),
then mutated: a field set to null, to an extreme integer, to a long string or
a long list; or the encoded bytes flipped, overwritten with extreme lengths,
truncated or extended, with the size prefix kept consistent so that the
broker has to parse what follows. The requests go to a ``moldau broker``
subprocess over raw sockets, a few connections at a time, mostly one request
at a time and now and then a pipelined burst; a connection that gets no
answer within a short wait (a mutated fetch may wait for days) is dropped
and replaced, which also tests that its waiting request is freed.

Throughout, and at the end: the broker process is alive, its RSS stays
bounded, its log holds no traceback and no ERROR, and a normal client
(confluent-kafka) on other connections still produces and consumes.

The run is bounded by time (``MOLDAU_FUZZ_SECONDS``, default 20) and seeded
(``MOLDAU_FUZZ_SEED``, default fixed), so a failure can be replayed.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import socket
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from conftest import (
    BrokerProcess,
    RawConnection,
    Rec,
    confluent_produce,
    confluent_read_all,
    create_topic,
    wait_for,
)
from moldau.broker import handlers  # noqa: F401  (registers the handlers)
from moldau.broker.dispatch import HANDLERS
from moldau.broker.log_limit import DEFAULT_PERIOD_S
from moldau.protocol.messages import encode_request
from moldau.protocol.records import Record, build_batch
from moldau.protocol.schema import FieldSpec, StructSpec, message_spec

SECONDS = float(os.environ.get("MOLDAU_FUZZ_SECONDS", "20"))
SEED = int(os.environ.get("MOLDAU_FUZZ_SEED", "20261130"))
#: RSS the broker may reach while fuzzed (it idles around 40 MB).
MAX_RSS = 400 << 20
CONNECTIONS = 4
ANSWER_WAIT_S = 0.25

TOPIC = "fuzzed"
GROUP = "fuzz-group"


def served() -> list[tuple[int, int]]:
    return [(key, v) for key, handler in sorted(HANDLERS.items()) for v in handler.versions]


# -- valid requests from the specs ---------------------------------------------------


def valid_body(spec: StructSpec, rng: random.Random) -> dict[str, Any]:
    return {f.name: valid_value(f, rng) for f in spec.fields}


def valid_value(field: FieldSpec, rng: random.Random) -> Any:
    if field.array:
        one = valid_item(field, rng)
        return [one] if one is not None else []
    return valid_item(field, rng)


def valid_item(field: FieldSpec, rng: random.Random) -> Any:
    if field.struct is not None:
        return valid_body(field.struct, rng)
    kind = field.type
    if kind == "string":
        if "group" in field.name:
            return GROUP
        if "member" in field.name or "instance" in field.name:
            return None if field.nullable else ""
        if field.name in ("protocol_type",):
            return "consumer"
        return TOPIC if "name" in field.name or "topic" in field.name else "fuzz"
    if kind == "bytes":
        return b"\x00\x01"
    if kind == "records":
        now = int(time.time() * 1000)
        return build_batch([Record(0, 0, b"k", b"fuzz", [])], base_timestamp=now)
    if kind == "uuid":
        return uuid.UUID(int=0)
    if kind == "bool":
        return False
    if kind == "float64":
        return 0.0
    if field.name in ("max_wait_ms", "timeout_ms"):
        return 0
    if field.name == "acks":
        return -1  # acks=0 has no answer to wait for
    if "timeout" in field.name:
        return 10_000
    if field.name in ("num_partitions", "count", "replication_factor"):
        return 1
    return 0


# -- mutations ------------------------------------------------------------------------


def paths(body: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a body a mutation can replace."""
    if isinstance(body, dict):
        for key, value in body.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            yield (*prefix, index)
            yield from paths(value, (*prefix, index))


def replaced(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    holder: Any = changed
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = value
    return changed


def extreme(rng: random.Random, current: Any) -> Any:
    """A value at an edge of what the wire allows, or of a different kind."""
    choices: list[Any] = [None, -1, 0, 1, 2**31 - 1, -(2**31), 2**15 - 1, -(2**15)]
    if isinstance(current, str):
        choices += ["", "x" * 300, "\u00e9" * 50, "a/b", "..", "__consumer_offsets"]
    if isinstance(current, list):
        choices += [[], current * 200]
    if isinstance(current, bytes | bytearray):
        choices += [b"", os.urandom(64)]
    return rng.choice(choices)


def structural(rng: random.Random, api_key: int, version: int, body: dict[str, Any]) -> bytes:
    places = list(paths(body))
    for _ in range(rng.randint(1, 3)):
        if not places:
            break
        path = rng.choice(places)
        holder: Any = body
        for step in path:
            holder = holder[step]
        value = extreme(rng, holder)
        body = replaced(body, path, value)
        places = list(paths(body))
    return encode_request(api_key, version, rng.randint(0, 2**31 - 1), "fuzz", body)


def byte_level(rng: random.Random, frame: bytes) -> bytes:
    data = bytearray(frame[4:])
    for _ in range(rng.randint(1, 4)):
        where = rng.randrange(len(data)) if data else 0
        action = rng.randrange(5)
        if action == 0 and data:
            data[where] ^= 1 << rng.randrange(8)
        elif action == 1:
            data[where : where + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff"])
        elif action == 2:
            data[where : where + 2] = rng.choice([b"\xff\xff", b"\x7f\xff", b"\x00\x00"])
        elif action == 3:
            del data[where:]
        else:
            data[where:where] = os.urandom(rng.randint(1, 16))
    if rng.random() < 0.02:  # now and then a size prefix that lies
        return struct.pack(">i", rng.choice([-1, 0, 7, 2**31 - 1, len(data) + 1])) + bytes(data)
    return struct.pack(">i", len(data)) + bytes(data)


def mutants(rng: random.Random) -> Iterator[tuple[str, bytes]]:
    apis = served()
    while True:
        api_key, version = rng.choice(apis)
        body = valid_body(message_spec(api_key, version, "request"), rng)
        label = f"{api_key}v{version}"
        try:
            if rng.random() < 0.5:
                yield label, structural(rng, api_key, version, body)
                continue
        except Exception:  # an extreme value of a kind this field cannot encode
            pass
        frame = encode_request(api_key, version, rng.randint(0, 2**31 - 1), "fuzz", body)
        yield label, byte_level(rng, frame)


# -- the run ---------------------------------------------------------------------------


def open_sockets(broker: BrokerProcess) -> int:
    assert broker.process is not None
    fds = f"/proc/{broker.process.pid}/fd"
    count = 0
    for fd in os.listdir(fds):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"{fds}/{fd}").startswith("socket:")
    return count


def answered(sock: socket.socket) -> bool:
    """True if one response frame arrives soon; False if none, or the broker closed."""
    sock.settimeout(ANSWER_WAIT_S)
    try:
        head = sock.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return False
        size = struct.unpack(">i", head)[0]
        sock.settimeout(5)
        return len(sock.recv(size, socket.MSG_WAITALL)) == size
    except OSError:
        return False


def check_alive(broker: BrokerProcess, stats: dict[str, int]) -> None:
    assert broker.process is not None and broker.process.poll() is None, broker.output()
    used = broker.memory()
    stats["max_rss"] = max(stats["max_rss"], used)
    assert used < MAX_RSS, f"RSS {used >> 20} MB"
    with RawConnection(broker.port, timeout=5) as probe:
        body = {"client_software_name": "probe", "client_software_version": "1"}
        assert probe.request(18, 3, body)["error_code"] == 0


def test_wire_fuzz_keeps_the_broker_up(broker_factory: Callable[..., BrokerProcess]) -> None:
    broker = broker_factory(group_initial_rebalance_delay_ms="0")
    create_topic(broker.bootstrap, TOPIC, 2)
    create_topic(broker.bootstrap, "bystander", 1)
    sockets_before = open_sockets(broker)
    rng = random.Random(SEED)
    stats = {"sent": 0, "answered": 0, "dropped": 0, "max_rss": 0}
    pool: list[socket.socket] = []
    produced: list[Rec] = []
    deadline = time.monotonic() + SECONDS
    next_check = time.monotonic() + 5
    generator = mutants(rng)
    try:
        while time.monotonic() < deadline:
            while len(pool) < CONNECTIONS:
                pool.append(socket.create_connection(("127.0.0.1", broker.port), timeout=5))
            sock = rng.choice(pool)
            # Mostly one request at a time; now and then a pipelined burst.
            burst = 1 if rng.random() < 0.9 else rng.randint(2, 8)
            frames = b"".join(next(generator)[1] for _ in range(burst))
            with contextlib.suppress(OSError):
                sock.sendall(frames)
            stats["sent"] += burst
            for _ in range(burst):
                if not answered(sock):
                    stats["dropped"] += 1
                    pool.remove(sock)
                    sock.close()
                    break
                stats["answered"] += 1
            if time.monotonic() >= next_check:
                check_alive(broker, stats)
                value = f"during {stats['sent']}".encode()
                produced += confluent_produce(broker.bootstrap, "bystander", [Rec(b"k", value)])
                next_check = time.monotonic() + 5
    finally:
        for sock in pool:
            sock.close()
    check_alive(broker, stats)
    # Every dropped connection is closed by the broker too, with what it waited for.
    wait_for(lambda: open_sockets(broker) <= sockets_before, what="the fuzzer's sockets to close")
    produced += confluent_produce(broker.bootstrap, "bystander", [Rec(b"k", b"after")])
    got = confluent_read_all(broker.bootstrap, "bystander")
    assert sorted(r.value for r in got) == sorted(r.value for r in produced)
    log = broker.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert " ERROR " not in log, log[-3000:]
    warnings = [line for line in log.splitlines() if "WARNING moldau.broker.requests" in line]
    assert len(warnings) <= SECONDS / DEFAULT_PERIOD_S + 2, "malformed requests flood the log"
    print(f"wire fuzz (seed {SEED}, {SECONDS:.0f} s): {stats}")
    assert stats["answered"] > 100, stats
