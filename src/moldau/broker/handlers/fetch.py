"""Fetch (key 1): read record batches, waiting for data when asked to.

v0-v3 (deprecated in Kafka 3.9, gone in 4.0): the client reads message
format v0 (v0-v1) or v1 (v2-v3) only, so ``_old_versions`` down-converts our
v2 batches for it (no zero copy there). v3: max_bytes.
v4: isolation level, last stable offset, aborted transactions (a
read_committed fetch reads up to the last stable offset and gets the aborted
transactions overlapping what it returns, Kafka's
collectAbortedTransactions; it waits in the purgatory like any fetch, woken
by the appends and high-watermark moves that are the only things moving the
last stable offset). v5: log start
offset. v7: fetch sessions (KIP-227), for followers only
(``fetch_sessions.py``: an incremental fetch reads every partition of the
session, recording the follower's fetch offsets, and answers only those with
something new); a consumer is answered session id 0, so it keeps sending
full requests, which Kafka allows. v9: current leader epoch.
v11: rack id, preferred read replica. v12: flexible, diverging epoch,
current leader. v13: topics by id. v15: replica state instead of replica id.
v16: node endpoints. v17: replica directory id.

The current leader epoch (v9+) is checked before anything is read
(FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH, KIP-320); a partition answering
NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH names the current leader
(v12+) and the response that leader's endpoint (v16+), KIP-951
(``routing.py``). A fetcher that names the epoch of its last batch
(``last_fetched_epoch``, v12+) whose log has left this one gets no records
but ``diverging_epoch``, where to truncate to (``Partition.diverging_epoch``),
at once.

A follower's fetch (replica_id >= 0) reads to the log end, not the high
watermark, from the same files and with the same sendfile path as a
consumer's; its fetch offset is the follower's log end, which the leader
records (``ReplicaManager.record_follower_fetch``) once per request, on its
first read, for every partition of its fetch session (named or not): that
moves the high watermark, which wakes the consumers' fetches and the acks=all
produces waiting on it. A session partition the follower did not name and
that has nothing past its fetch offset is only recorded, not read again. An
answer with a diverging epoch records nothing (Kafka's
``Partition.fetchRecords``).

A fetch that finds fewer than min_bytes waits up to max_wait_ms, but answers
as soon as an append to one of its partitions brings enough: a consumer
waiting on an idle topic sees a new record within a millisecond or two, not
after the wait expires. Log data goes to the socket as file slices (sendfile).

Replication throttles (KIP-73, ``replication/quota.py``): a follower out of
the ISR gets no records of a partition in ``leader.replication.throttled.replicas``
while the leader's rate is over ``leader.replication.throttled.rate``, and such
a partition's bytes do not count towards min_bytes (Kafka's ReplicaManager and
DelayedFetch); what followers fetch of throttled partitions is counted. Each
read counts: a follower asking for more than one byte (moldau's ask for
``replica.fetch.min.bytes``, 1 by default) may have a read counted that a
later one replaced while it waited.
"""

from __future__ import annotations

import uuid
from typing import Any

from ...log.errors import LogError
from ...log.partition_log import ReadResult
from ...protocol.api_keys import ApiKey
from ...protocol.errors import ErrorCode, KafkaError
from ...protocol.messages import Message
from ...replication.partition import Partition
from ..core import BrokerCore
from ..dispatch import HandlerResult, RequestContext, handles
from ..fetch_sessions import UNNAMED
from ..routing import LEADER_ERRORS, leader_entry, node_endpoints
from ._old_versions import fetch_v0_to_v3

_NO_ID = uuid.UUID(int=0)
_THROTTLED = ReadResult([], 0)


@handles(ApiKey.FETCH, range(0, 18))
def fetch(context: RequestContext, request: Message) -> HandlerResult:
    core = context.core
    if context.version < 4:
        if request.get("session_id", 0) != 0:
            return {"error_code": ErrorCode.FETCH_SESSION_ID_NOT_FOUND, "responses": []}
        return fetch_v0_to_v3(core, request, context.version)
    by_id = context.version >= 13
    session = core.replicas.fetch_sessions.context(request, _replica_id(request), by_id)
    if session.error:
        return {"error_code": session.error, "session_id": 0, "responses": []}
    wanted = _wanted_partitions(core, session.topics, by_id)
    listener = context.listener
    response, size, errors = _read_all(core, request, wanted, by_id, listener, record_follower=True)
    max_wait_ms = request["max_wait_ms"]
    if size >= request["min_bytes"] or max_wait_ms <= 0 or errors:
        return session.finish(response)
    keys = [(name, p["partition"]) for _, name, p in wanted if name is not None]

    def read() -> tuple[Message, bool]:
        response, size, errors = _read_all(core, request, wanted, by_id, listener)
        return response, size >= request["min_bytes"] or errors

    async def wait() -> Message:
        return session.finish(await core.purgatory.read_when_ready(keys, read, max_wait_ms))

    return wait()


def _wanted_partitions(
    core: BrokerCore, topics: list[Message], by_id: bool
) -> list[tuple[Message, str | None, Message]]:
    """(topic entry, resolved topic name, partition entry) for each partition asked."""
    wanted = []
    for topic in topics:
        if by_id:
            info = core.metadata.topic_by_id(topic.get("topic_id") or _NO_ID)
            name = info.name if info is not None else None
        else:
            name = topic["topic"]
        for partition in topic["partitions"]:
            wanted.append((topic, name, partition))
    return wanted


def _read_all(
    core: BrokerCore,
    request: Message,
    wanted: list[tuple[Message, str | None, Message]],
    by_id: bool,
    listener: str | None,
    record_follower: bool = False,
) -> tuple[Message, int, bool]:
    """Read every partition once: (response, bytes of records, whether to
    answer now: an error or a divergence, as in Kafka). ``record_follower``:
    a follower's fetch offsets are its log ends (the request's first read).
    ``listener``: the one the request came on, whose addresses it is given."""
    budget = request.get("max_bytes", 0x7FFFFFFF)
    replica_id = _replica_id(request)
    follower = replica_id >= 0
    read_committed = request.get("isolation_level", 0) == 1
    total = 0
    errors = False
    leaders: list[int] = []
    responses: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for topic, name, want in wanted:
        if current is None or current["_topic"] is not topic:
            current = {
                "_topic": topic,
                "topic": name,
                "topic_id": topic.get("topic_id"),
                "partitions": [],
            }
            responses.append(current)
        index = want["partition"]
        if name is None:
            current["partitions"].append(_error(index, ErrorCode.UNKNOWN_TOPIC_ID))
            errors = True
            continue
        try:
            partition = core.replicas.leader_partition(
                name, index, want.get("current_leader_epoch", -1)
            )
            if want.get(UNNAMED) and want["fetch_offset"] == partition.log_end_offset:
                # A caught-up session partition the follower did not name:
                # nothing to read or check, only its fetch to record.
                if record_follower:
                    core.replicas.record_follower_fetch(
                        partition, replica_id, want["fetch_offset"], want["fetch_offset"]
                    )
                current["partitions"].append(_offsets(partition, index))
                continue
            last_epoch = want.get("last_fetched_epoch", -1)
            if last_epoch >= 0:
                diverging = partition.diverging_epoch(want["fetch_offset"], last_epoch)
                if diverging is not None:
                    current["partitions"].append(_diverged(partition, index, *diverging))
                    errors = True
                    continue
            limit = min(want["partition_max_bytes"], max(budget - total, 0))
            leader_end = partition.log_end_offset
            result = partition.read(
                want["fetch_offset"],
                limit,
                committed_only=not follower,
                min_one_batch=total == 0,
                read_committed=read_committed and not follower,
            )
            quota = core.replicas.quotas.leader
            if follower and quota.holds_back(name, index, replica_id, partition.isr):
                result = _THROTTLED  # as Kafka: read, and nothing sent this time
            aborted = _aborted(partition, want["fetch_offset"], result) if read_committed else None
            if follower and record_follower:
                core.replicas.record_follower_fetch(
                    partition, replica_id, want["fetch_offset"], leader_end
                )
        except KafkaError as exc:
            answer = _error(index, exc.code)
            if exc.code in LEADER_ERRORS:
                answer["current_leader"] = leader = leader_entry(core, name, index)
                leaders.append(leader["leader_id"])
            current["partitions"].append(answer)
            errors = True
            continue
        except LogError as exc:  # an offset outside the log: OFFSET_OUT_OF_RANGE
            current["partitions"].append(_error(index, ErrorCode(exc.error_code)))
            errors = True
            continue
        total += result.size
        if follower:
            quota.record(name, index, result.size)
        answer = _offsets(partition, index)
        answer["aborted_transactions"] = aborted
        if result.size:
            answer["records"] = result.slices
        current["partitions"].append(answer)
    for entry in responses:
        del entry["_topic"]
    response = {"throttle_time_ms": 0, "error_code": 0, "session_id": 0, "responses": responses}
    if leaders:
        response["node_endpoints"] = node_endpoints(core, leaders, listener)
    return response, total, errors


def _offsets(partition: Partition, index: int) -> dict[str, Any]:
    """A partition's answer without records: its offsets."""
    return {
        "partition_index": index,
        "error_code": 0,
        "high_watermark": partition.high_watermark,
        "last_stable_offset": partition.last_stable_offset,
        "log_start_offset": partition.log_start_offset,
        "preferred_read_replica": -1,
        "records": b"",
    }


def _diverged(partition: Partition, index: int, epoch: int, end_offset: int) -> dict[str, Any]:
    answer = _offsets(partition, index)
    answer["diverging_epoch"] = {"epoch": epoch, "end_offset": end_offset}
    return answer


def _aborted(partition: Partition, fetch_offset: int, result: ReadResult) -> list[Message]:
    """The aborted transactions overlapping what a read_committed fetch
    returns, from its fetch offset to the offset after its last batch."""
    if not result.size:
        return []
    log = partition.log
    upper = log.read_end_offset(result)
    return [
        {"producer_id": producer_id, "first_offset": first_offset}
        for producer_id, first_offset in log.aborted_transactions(fetch_offset, upper)
    ]


def _replica_id(request: Message) -> int:
    state = request.get("replica_state")
    if state:
        return int(state.get("replica_id", -1))
    return int(request.get("replica_id", -1))


def _error(index: int, code: ErrorCode) -> dict[str, Any]:
    return {
        "partition_index": index,
        "error_code": code,
        "high_watermark": -1,
        "last_stable_offset": -1,
        "log_start_offset": -1,
        "preferred_read_replica": -1,
        "records": b"",
    }
