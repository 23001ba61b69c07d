"""The workload ``moldau verify`` runs against any Kafka-compatible cluster,
recording a ``History``.

librdkafka (confluent-kafka) does the talking, so the cluster under test is
judged by the client most applications use, not by moldau's own. Threads, not
asyncio: librdkafka's calls block and call back on the calling thread.

1. A fresh topic (``partitions``, ``replication_factor``,
   ``min.insync.replicas``).
2. A group of ``consumers`` members (eager rebalancing, manual commits after
   every batch) subscribes; each records its reads, commits and assignments.
3. One idempotent acks=all producer sends the unique values ``v0, v1, ...``
   round-robin over the partitions at ``rate`` per second for ``duration``
   seconds, inside the ``nemesis`` context (faults start and, on exit, are
   undone). What is still unanswered ``drain`` seconds later is ``unknown``.
4. The group reads on until it has read every partition up to its high
   watermark (or ``drain`` seconds pass), then leaves.
5. A fresh consumer outside the group reads every partition from offset 0 to
   the high watermark: the final full read.

With ``transactional``, the producer sends its values in transactions of
``txn_size`` (over every partition), aborting every ``abort_every``-th, and
every consumer reads committed records only (librdkafka's default
isolation.level): the checker then also proves that aborted values are never
read and that every transaction is seen whole or not at all. A transaction
whose end the producer could not learn (its commit failed without a clear
answer) has outcome ``failed``; the producer is then replaced under the same
transactional.id, which fences the old one, as an application would.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .history import FINAL_READER, Assignment, Commit, FinalRead, History, Outcome, Read, Send

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

Clock = Callable[[], float]


class WorkloadError(RuntimeError):
    """The workload could not run (topic creation failed, nothing answered)."""


@dataclass
class WorkloadConfig:
    bootstrap_servers: str
    topic: str = field(default_factory=lambda: f"verify-{uuid.uuid4().hex[:10]}")
    partitions: int = 6
    replication_factor: int = 3
    min_insync_replicas: int = 2
    consumers: int = 2
    duration: float = 30.0
    #: values per second; 0: as fast as the producer takes them
    rate: float = 1000.0
    #: at most this long, after producing, for answers, the group and the final read
    drain: float = 30.0
    #: librdkafka's message.timeout.ms: a send unanswered this long fails
    message_timeout_ms: int = 30_000
    #: extra librdkafka settings for every client (security, debug)
    client_config: dict[str, str] = field(default_factory=dict)
    #: send in transactions (see the module doc)
    transactional: bool = False
    #: values per transaction
    txn_size: int = 10
    #: abort every this many transactions (0: commit them all)
    abort_every: int = 5

    @property
    def group(self) -> str:
        return f"{self.topic}-group"

    @property
    def transactional_id(self) -> str:
        return f"{self.topic}-producer"


class _Recorder:
    """The events of a run, appended from several threads."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.sends: list[dict[str, Any]] = []
        self.reads: list[Read] = []
        self.commits: list[Commit] = []
        self.assignments: list[Assignment] = []
        self.errors: list[str] = []
        #: partition -> the next offset the group has yet to read
        self.group_position: dict[int, int] = {}

    def reads_of(
        self, consumer: str, messages: list[Message], now: float, ends: dict[int, int]
    ) -> list[Read]:
        """The records among ``messages`` as reads (errors are noted). Where
        a partition's end was reached, ``ends`` gets the offset: a
        read_committed consumer reaches the end without a record at the
        offset before it when that holds a transaction marker."""
        from confluent_kafka import KafkaError

        reads = []
        for message in messages:
            partition, offset = message.partition(), message.offset()
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                if partition is not None and offset is not None:
                    ends[partition] = max(ends.get(partition, 0), offset)
                continue
            if error is not None or partition is None or offset is None:
                self.error(consumer, error)
                continue
            value = (message.value() or b"").decode(errors="replace")
            reads.append(Read(consumer, partition, offset, value, now))
        return reads

    def error(self, where: str, error: object) -> None:
        with self.lock:
            if len(self.errors) < 1000:
                self.errors.append(f"{self.clock():.3f} {where}: {error}")


class Workload:
    """One run of the workload; ``run`` returns its history."""

    def __init__(self, config: WorkloadConfig, clock: Clock = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self._recorder = _Recorder(clock)
        self._stop_group = threading.Event()

    def _client(self, **settings: Any) -> dict[str, Any]:
        """librdkafka settings: its own log only for the critical (errors
        reach ``error_cb`` and the history's ``client_errors``)."""
        return {
            "bootstrap.servers": self.config.bootstrap_servers,
            "log_level": 2,
            **self.config.client_config,
            **settings,
        }

    # -- the run -------------------------------------------------------------

    def run(self, nemesis: contextlib.AbstractContextManager[object] | None = None) -> History:
        config = self.config
        self.create_topic()
        started = self.clock()
        members = [
            threading.Thread(target=self._member, args=(f"c{i}",), daemon=True)
            for i in range(config.consumers)
        ]
        for member in members:
            member.start()
        try:
            with nemesis if nemesis is not None else contextlib.nullcontext():
                if config.transactional:
                    produce_end, unknown = self._produce_transactions()
                else:
                    produce_end, unknown = self._produce()
            self._wait_group_caught_up(self.clock() + config.drain)
        finally:
            self._stop_group.set()
            for member in members:
                member.join(timeout=config.drain)
        final = self._final_read(self.clock() + config.drain)
        return self._history(started, produce_end, unknown, final)

    def create_topic(self) -> None:
        """Create the fresh topic and wait until every partition has a leader."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient, NewTopic

        config = self.config
        admin = AdminClient(self._client())
        topic = NewTopic(
            config.topic,
            num_partitions=config.partitions,
            replication_factor=config.replication_factor,
            config={"min.insync.replicas": str(config.min_insync_replicas)},
        )
        try:
            admin.create_topics([topic], request_timeout=30)[config.topic].result(timeout=60)
        except KafkaException as exc:
            raise WorkloadError(f"cannot create topic {config.topic}: {exc.args[0]}") from None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metadata = admin.list_topics(config.topic, timeout=10).topics.get(config.topic)
            if metadata is not None and metadata.error is None:
                leaders = [p.leader for p in metadata.partitions.values()]
                if len(leaders) == config.partitions and all(leader >= 0 for leader in leaders):
                    return
            time.sleep(0.1)
        raise WorkloadError(f"topic {config.topic} has no leader for every partition after 30s")

    # -- the producer ----------------------------------------------------------

    def _produce(self) -> tuple[float, int]:
        """Send for ``duration`` seconds; the time sending stopped and how
        many sends were left unanswered."""
        from confluent_kafka import KafkaException, Producer

        config, recorder = self.config, self._recorder
        producer = Producer(
            self._client(
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "message.timeout.ms": config.message_timeout_ms,
                    "error_cb": lambda error: recorder.error("producer", error),
                }
            )
        )

        def delivered(seq: int) -> Callable[[KafkaError | None, Message], None]:
            def callback(error: KafkaError | None, message: Message) -> None:
                send = recorder.sends[seq]
                send["done"] = self.clock()
                if error is None:
                    send.update(outcome="ok", offset=message.offset())
                else:
                    send.update(outcome="failed", error=str(error))

            return callback

        start = self.clock()
        end = start + config.duration
        seq = 0
        while (now := self.clock()) < end:
            if config.rate and seq >= (now - start) * config.rate:
                producer.poll(min(0.01, end - now))
                continue
            partition = seq % config.partitions
            value = f"v{seq}"
            with recorder.lock:
                recorder.sends.append(
                    {"seq": seq, "value": value, "partition": partition, "sent": now}
                )
            while True:
                try:
                    producer.produce(
                        config.topic,
                        value.encode(),
                        partition=partition,
                        on_delivery=delivered(seq),
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
                except KafkaException as exc:  # fatal: the producer is unusable
                    recorder.error("produce", exc.args[0])
                    recorder.sends[seq].update(outcome="failed", error=str(exc.args[0]))
                    end = now
                    break
            seq += 1
            producer.poll(0)
        produce_end = self.clock()
        unknown = producer.flush(config.drain)
        return produce_end, unknown

    def _produce_transactions(self) -> tuple[float, int]:
        """Send in transactions for ``duration`` seconds; the time sending
        stopped (every transaction is ended, so none is left unanswered)."""
        config, recorder = self.config, self._recorder
        producer = self._transactional_producer()

        def delivered(seq: int) -> Callable[[KafkaError | None, Message], None]:
            def callback(error: KafkaError | None, message: Message) -> None:
                send = recorder.sends[seq]
                send["done"] = self.clock()
                if error is None:
                    send["offset"] = message.offset()
                else:
                    send["error"] = str(error)

            return callback

        start = self.clock()
        end = start + config.duration
        seq = txn = 0
        while self.clock() < end:
            first = seq
            producer.begin_transaction()
            for _ in range(config.txn_size):
                while config.rate and seq >= (self.clock() - start) * config.rate:
                    producer.poll(0.01)
                partition = seq % config.partitions
                value = f"v{seq}"
                with recorder.lock:
                    recorder.sends.append(
                        {
                            "seq": seq,
                            "value": value,
                            "partition": partition,
                            "sent": self.clock(),
                            "txn": txn,
                        }
                    )
                self._produce_one(producer, value.encode(), partition, delivered(seq))
                seq += 1
            abort = config.abort_every > 0 and txn % config.abort_every == config.abort_every - 1
            outcome = self._end_transaction(producer, abort)
            with recorder.lock:
                for send in recorder.sends[first:seq]:
                    send["outcome"] = outcome
            if outcome == "failed":  # the producer is unusable: a new one fences it
                producer = self._transactional_producer()
            txn += 1
        return self.clock(), 0

    def _transactional_producer(self) -> Producer:
        from confluent_kafka import KafkaException, Producer

        config, recorder = self.config, self._recorder
        producer = Producer(
            self._client(
                **{
                    "transactional.id": config.transactional_id,
                    "acks": "all",
                    "linger.ms": 5,
                    "message.timeout.ms": config.message_timeout_ms,
                    "error_cb": lambda error: recorder.error("producer", error),
                }
            )
        )
        try:
            producer.init_transactions(config.drain)
        except KafkaException as exc:
            raise WorkloadError(f"cannot start a transactional producer: {exc.args[0]}") from None
        return producer

    def _produce_one(
        self,
        producer: Producer,
        value: bytes,
        partition: int,
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> None:
        """Hands one value to the producer, waiting while its queue is full."""
        topic = self.config.topic
        while True:
            try:
                producer.produce(topic, value, partition=partition, on_delivery=on_delivery)
                return
            except BufferError:
                producer.poll(0.05)

    def _end_transaction(self, producer: Producer, abort: bool) -> Outcome:
        """Commit (or abort) the open transaction: ``ok``, ``aborted``, or
        ``failed`` when its outcome could not be learnt. A retriable error is
        retried; one that requires an abort aborts, as librdkafka asks."""
        from confluent_kafka import KafkaException

        deadline = self.clock() + self.config.drain
        while True:
            remaining = max(0.1, deadline - self.clock())
            try:
                if abort:
                    producer.abort_transaction(remaining)
                    return "aborted"
                producer.commit_transaction(remaining)
                return "ok"
            except KafkaException as exc:
                error = exc.args[0]
                self._recorder.error("transaction", error)
                if self.clock() >= deadline or error.fatal():
                    return "failed"
                if error.txn_requires_abort():
                    abort = True
                elif not error.retriable():
                    return "failed"

    # -- the group -------------------------------------------------------------

    def _member(self, name: str) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        config, recorder = self.config, self._recorder
        held: set[int] = set()

        def changed(partitions: list[TopicPartition], assigned: bool) -> None:
            numbers = {tp.partition for tp in partitions}
            if assigned:
                held.update(numbers)
            else:
                held.difference_update(numbers)
            with recorder.lock:
                recorder.assignments.append(Assignment(name, self.clock(), tuple(sorted(held))))

        consumer = Consumer(
            self._client(
                **{
                    "group.id": config.group,
                    "client.id": name,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "partition.assignment.strategy": "range",
                    "enable.partition.eof": True,
                    "error_cb": lambda error: recorder.error(name, error),
                }
            )
        )
        try:
            consumer.subscribe(
                [config.topic],
                on_assign=lambda _, partitions: changed(partitions, True),
                on_revoke=lambda _, partitions: changed(partitions, False),
                on_lost=lambda _, partitions: changed(partitions, False),
            )
            while not self._stop_group.is_set():
                messages = consumer.consume(num_messages=500, timeout=0.2)
                now = self.clock()
                ends: dict[int, int] = {}
                reads = recorder.reads_of(name, messages, now, ends)
                next_offsets = {read.partition: read.offset + 1 for read in reads}
                with recorder.lock:
                    recorder.reads += reads
                    for partition, offset in (next_offsets | ends).items():
                        position = recorder.group_position.get(partition, 0)
                        recorder.group_position[partition] = max(position, offset)
                if not next_offsets:
                    continue
                offsets = [TopicPartition(config.topic, p, o) for p, o in next_offsets.items()]
                started = self.clock()
                try:
                    answer = consumer.commit(offsets=offsets, asynchronous=False)
                    errors = {tp.partition: tp.error for tp in answer or []}
                except KafkaException as exc:
                    errors = dict.fromkeys(next_offsets, exc.args[0])
                done = self.clock()
                with recorder.lock:
                    for partition, offset in next_offsets.items():
                        error = errors.get(partition)
                        recorder.commits.append(
                            Commit(
                                name,
                                partition,
                                offset,
                                started,
                                done,
                                error is None,
                                None if error is None else str(error),
                            )
                        )
        except Exception as exc:  # recorded: the verdict shows a member that died
            recorder.error(name, repr(exc))
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def _wait_group_caught_up(self, deadline: float) -> None:
        """Until the group has read every partition to its high watermark."""
        while self.clock() < deadline:
            ends = self.high_watermarks()
            with self._recorder.lock:
                position = dict(self._recorder.group_position)
            if ends is not None and all(position.get(p, 0) >= e for p, e in ends.items()):
                return
            time.sleep(0.2)

    def high_watermarks(self) -> dict[int, int] | None:
        """Each partition's high watermark (ListOffsets latest); None if one
        cannot be had now."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        watcher = Consumer(self._client(**{"group.id": f"{self.config.topic}-watcher"}))
        try:
            return {
                p: watcher.get_watermark_offsets(TopicPartition(self.config.topic, p), timeout=5)[1]
                for p in range(self.config.partitions)
            }
        except KafkaException:
            return None
        finally:
            watcher.close()

    # -- the final read ----------------------------------------------------------

    def _final_read(self, deadline: float) -> list[FinalRead]:
        from confluent_kafka import Consumer, TopicPartition

        config, recorder = self.config, self._recorder
        ends = None
        while ends is None and self.clock() < deadline:
            ends = self.high_watermarks()
        if ends is None:
            recorder.error(FINAL_READER, "no high watermarks: no final read")
            return []
        reader = Consumer(
            self._client(
                **{
                    "group.id": f"{config.topic}-final",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "error_cb": lambda error: recorder.error(FINAL_READER, error),
                }
            )
        )
        position = dict.fromkeys(ends, 0)
        try:
            reader.assign([TopicPartition(config.topic, p, 0) for p in ends])
            while self.clock() < deadline and any(position[p] < e for p, e in ends.items()):
                messages = reader.consume(num_messages=1000, timeout=0.2)
                reached: dict[int, int] = {}
                reads = recorder.reads_of(FINAL_READER, messages, self.clock(), reached)
                for read in reads:
                    position[read.partition] = max(position[read.partition], read.offset + 1)
                for partition, offset in reached.items():
                    position[partition] = max(position[partition], offset)
                with recorder.lock:
                    recorder.reads += reads
        finally:
            reader.close()
        return [FinalRead(p, e, position[p] >= e) for p, e in sorted(ends.items())]

    # -- the history ---------------------------------------------------------------

    def _history(
        self, started: float, produce_end: float, unknown: int, final: list[FinalRead]
    ) -> History:
        config, recorder = self.config, self._recorder
        history = History(topic=config.topic, partitions=config.partitions, idempotent=True)
        history.sends = [
            Send(
                producer="producer",
                seq=s["seq"],
                value=s["value"],
                partition=s["partition"],
                key=None,
                sent=s["sent"],
                outcome=s.get("outcome", "unknown"),
                offset=s.get("offset"),
                done=s.get("done"),
                error=s.get("error"),
                txn=s.get("txn"),
            )
            for s in recorder.sends
        ]
        history.reads = recorder.reads
        history.commits = recorder.commits
        history.assignments = recorder.assignments
        history.final = final
        history.info = {
            "bootstrap_servers": config.bootstrap_servers,
            "replication_factor": config.replication_factor,
            "min_insync_replicas": config.min_insync_replicas,
            "consumers": config.consumers,
            "rate": config.rate,
            "transactional": config.transactional,
            "started": started,
            "produce_seconds": produce_end - started,
            "ended": self.clock(),
            "unanswered_at_end": unknown,
            "client_errors": recorder.errors,
        }
        return history
