"""Load generator: one confluent-kafka (librdkafka) workload per process.

Run by bench/run.py as `python bench/load.py '<json spec>'`. Each phase runs
in its own process so that a wedged client can always be killed, the
client's CPU never mixes with the harness's, and librdkafka starts clean.

Line protocol on stdout, so the harness can read the broker's CPU counters
exactly around the measured part:
    READY                 connected, topic exists; waiting for a line on stdin
    RESULT {json}         the measurement
    ERROR message         the phase could not run
librdkafka's own log lines go to stderr.

Optional spec keys, for bench/cluster.py (run.py leaves them out):
    replication_factor    of the topic the phase creates (default 1)
    topic_config          its configs, e.g. {"min.insync.replicas": "2"}
    producer_config       overrides of PRODUCER_CONFIG, e.g. {"acks": "all"}
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
import sys
import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# The producer settings every workload uses: librdkafka defaults plus these.
PRODUCER_CONFIG: dict[str, Any] = {"linger.ms": 5, "acks": 1}
CONSUMER_CONFIG: dict[str, Any] = {
    # librdkafka pauses fetching for fetch.queue.backoff.ms (default 1 s)
    # whenever its prefetch queue is full. A broker fast enough to outrun the
    # Python loop would be charged whole idle seconds for the client's
    # slowness; 10 ms lets fetching resume as soon as there is room.
    "fetch.queue.backoff.ms": 10,
    "group.id": "moldau-bench",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
}
_BATCH = 1000
_LATENCY_HEADER = struct.Struct(">qq")  # sequence number, send time (monotonic ns)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _ready_and_wait_for_go() -> None:
    _say("READY")
    if not sys.stdin.readline():
        raise SystemExit("harness went away")


def _create_topic(
    bootstrap: str, topic: str, partitions: int, deadline: float, spec: dict[str, Any]
) -> None:
    """Create `topic` and wait until metadata shows a leader for every partition."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new_topic = NewTopic(
        topic, partitions, spec.get("replication_factor", 1), config=spec.get("topic_config", {})
    )
    futures = admin.create_topics([new_topic], operation_timeout=_remaining(deadline))
    try:
        futures[topic].result(timeout=_remaining(deadline))
    except TimeoutError as exc:  # concurrent.futures raises it without a message
        raise TimeoutError(f"CreateTopics for {topic} got no answer in time") from exc
    while True:
        meta = admin.list_topics(topic, timeout=max(0.1, _remaining(deadline)))
        found = meta.topics.get(topic)
        if (
            found is not None
            and found.error is None
            and len(found.partitions) == partitions
            and all(p.leader >= 0 for p in found.partitions.values())
        ):
            return
        if _remaining(deadline) <= 0:
            raise TimeoutError(f"topic {topic} has no leaders for all partitions")
        time.sleep(0.05)


def _settle_group_coordinator(consumer: Consumer, topic: str, deadline: float) -> None:
    """Let the one-off group coordinator lookup finish before measuring.

    A consumer with a group.id (which confluent-kafka requires) looks up its
    coordinator in the background, and on a fresh broker that lookup creates
    `__consumer_offsets`. Asking for committed offsets waits for the
    coordinator, so that work lands before READY instead of inside the
    measured phase.
    """
    with contextlib.suppress(KafkaException):  # only a warm-up
        consumer.committed([TopicPartition(topic, 0)], timeout=max(0.1, _remaining(deadline)))


def _new_producer(bootstrap: str, errors: list[str], spec: dict[str, Any]) -> Producer:
    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    return Producer(
        {
            "bootstrap.servers": bootstrap,
            **PRODUCER_CONFIG,
            **spec.get("producer_config", {}),
            # Only failures call back, so a million successes cost no Python calls.
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
        }
    )


def _enqueue(producer: Producer, topic: str, value: bytes, n: int, deadline: float) -> int:
    """Queue up to n records, waiting for room while librdkafka's queue is full.

    Returns how many were queued before `deadline`.
    """
    pending = [{"value": value} for _ in range(n)]
    while pending and time.monotonic() < deadline:
        try:
            producer.produce_batch(topic, pending)
        except BufferError:
            producer.poll(0.005)
            continue
        failed = [m for m in pending if "_error" in m]
        for m in failed:
            err = m.pop("_error")
            if getattr(err, "code", lambda: None)() != KafkaError._QUEUE_FULL:
                raise KafkaException(err)
        if failed:
            producer.poll(0.005)
        pending = failed
    return n - len(pending)


def produce(spec: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + spec["setup_timeout"]
    bootstrap, topic = spec["bootstrap"], spec["topic"]
    _create_topic(bootstrap, topic, spec["partitions"], deadline, spec)
    errors: list[str] = []
    producer = _new_producer(bootstrap, errors, spec)
    producer.list_topics(topic, timeout=_remaining(deadline))
    _ready_and_wait_for_go()

    value = b"\x5a" * spec["size"]
    count = spec["count"]
    deadline = time.monotonic() + spec["timeout"]
    start, cpu_start = time.monotonic(), time.process_time()
    sent = 0
    while sent < count and time.monotonic() < deadline:
        sent += _enqueue(producer, topic, value, min(_BATCH, count - sent), deadline)
        producer.poll(0)
    undelivered = producer.flush(max(0.1, _remaining(deadline)))
    elapsed = time.monotonic() - start
    delivered = sent - undelivered - len(errors)
    return {
        "elapsed": elapsed,
        "client_cpu": time.process_time() - cpu_start,
        "records": delivered,
        "bytes": delivered * spec["size"],
        "timed_out": delivered < count and not errors,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }


def consume(spec: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + spec["setup_timeout"]
    bootstrap, topic = spec["bootstrap"], spec["topic"]
    consumer = Consumer({"bootstrap.servers": bootstrap, **CONSUMER_CONFIG})
    consumer.list_topics(topic, timeout=_remaining(deadline))
    _settle_group_coordinator(consumer, topic, deadline)
    _ready_and_wait_for_go()

    count = spec["count"]
    deadline = time.monotonic() + spec["timeout"]
    start, cpu_start = time.monotonic(), time.process_time()
    consumer.assign([TopicPartition(topic, p, 0) for p in range(spec["partitions"])])
    received = nbytes = errors = 0
    first_error = None
    last = start
    while received < count and time.monotonic() < deadline:
        # Never ask for more than is left: consume() waits until it has
        # num_messages or the timeout passes, which would pad the last batch.
        wanted = min(10_000, count - received)
        for message in consumer.consume(wanted, min(0.5, _remaining(deadline))):
            if message.error() is not None:
                errors += 1
                first_error = first_error or str(message.error())
                continue
            received += 1
            nbytes += len(message)
        last = time.monotonic()
    return {
        "elapsed": last - start,
        "client_cpu": time.process_time() - cpu_start,
        "records": received,
        "bytes": nbytes,
        "timed_out": received < count,
        "errors": errors,
        "first_error": first_error,
    }


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def latency(spec: dict[str, Any]) -> dict[str, Any]:
    """Paced producer thread and a consumer in the same process (one clock).

    A warm-up of `warmup` seconds lets connections and the first fetches
    settle; its records carry negative sequence numbers and are not counted.
    """
    deadline = time.monotonic() + spec["setup_timeout"]
    bootstrap, topic = spec["bootstrap"], spec["topic"]
    _create_topic(bootstrap, topic, 1, deadline, spec)
    errors: list[str] = []
    producer = _new_producer(bootstrap, errors, spec)
    producer.list_topics(topic, timeout=_remaining(deadline))
    consumer = Consumer({"bootstrap.servers": bootstrap, **CONSUMER_CONFIG})
    consumer.list_topics(topic, timeout=_remaining(deadline))
    _settle_group_coordinator(consumer, topic, deadline)
    _ready_and_wait_for_go()

    rate, size = spec["rate"], spec["size"]
    warm = round(spec["warmup"] * rate)
    measured = round(spec["duration"] * rate)
    padding = b"\x00" * (size - _LATENCY_HEADER.size)

    def paced_producer() -> None:
        start = time.monotonic()
        for i in range(warm + measured):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamp = _LATENCY_HEADER.pack(i - warm, time.monotonic_ns())
            producer.produce(topic, stamp + padding, partition=0)
            producer.poll(0)
        producer.flush(10)

    sender = threading.Thread(target=paced_producer, daemon=True)
    consumer.assign([TopicPartition(topic, 0, 0)])
    sender.start()
    stop_at = time.monotonic() + spec["warmup"] + spec["duration"] + spec["drain"]
    latencies_ms: list[float] = []
    while len(latencies_ms) < measured and time.monotonic() < stop_at:
        # One message at a time: consume(n) would hold early arrivals back.
        message = consumer.poll(0.1)
        now = time.monotonic_ns()
        if message is None:
            continue
        if message.error() is not None:
            errors.append(str(message.error()))
            continue
        seq, sent_ns = _LATENCY_HEADER.unpack_from(message.value() or b"")
        if seq >= 0:
            latencies_ms.append((now - sent_ns) / 1e6)
    sender.join(timeout=15)
    latencies_ms.sort()
    summary: dict[str, Any] = {
        "sent": measured,
        "received": len(latencies_ms),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
    }
    if latencies_ms:
        summary |= {
            "p50_ms": _percentile(latencies_ms, 0.50),
            "p99_ms": _percentile(latencies_ms, 0.99),
            "max_ms": latencies_ms[-1],
        }
    return summary


MODES = {"produce": produce, "consume": consume, "latency": latency}


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        result = MODES[spec["mode"]](spec)
    except Exception as exc:  # report any failure as one line the harness can show
        _say(f"ERROR {type(exc).__name__}: {exc}")
        os._exit(1)
    _say("RESULT " + json.dumps(result))
    # Skip librdkafka's destructors: a consumer's close may wait on a broker
    # that is misbehaving, and the measurement is already reported.
    os._exit(0)


if __name__ == "__main__":
    main()
