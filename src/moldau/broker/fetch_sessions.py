"""Incremental fetch sessions for followers (KIP-227), the leader's side: pure.

A follower names every partition it follows from a leader in each Fetch;
most of them (``__consumer_offsets``, idle topics) have nothing new, and
decoding, reading and answering them costs the leader and the follower on
every round trip. With a session the leader caches the partitions and
their fetch parameters; the follower then names only what changed (and
what it forgets), and the leader answers only the partitions with
something to say. Kafka's FetchSession.scala and FetchContext:

- ``session_id`` 0, ``session_epoch`` 0 (a full fetch) from a follower
  creates a session (a new random id, replacing that follower's previous
  one): every partition is read and answered, and the answer carries the
  id. With no slot (``max.incremental.fetch.session.cache.slots`` = 0) the
  answer carries id 0 and the follower keeps sending full fetches.
- ``session_epoch`` -1 (FINAL): no session; a named session is closed.
- An id with the epoch the session expects (1 after its creation, then one
  more each time, wrapping to 1): the named partitions are added or
  updated, ``forgotten_topics_data`` removed, and the fetch reads EVERY
  partition of the session (so the leader records each follower's fetch
  offset, the cached one for those not named, and moves the high
  watermark); the answer holds only the partitions that were named, have
  records, an error or a diverging epoch, or whose high watermark, last
  stable offset or log start offset changed since last answered (Kafka's
  CachedPartition.maybeUpdateResponseData; moldau always answers a named
  partition too, so a follower that re-names one after a discarded answer
  learns its offsets again).
- An unknown id: FETCH_SESSION_ID_NOT_FOUND; a wrong epoch:
  INVALID_FETCH_SESSION_EPOCH (the follower starts over with a full fetch).

The cache holds at most ``max_slots`` sessions and evicts the least
recently used; a follower has at most one (a new full fetch from it
replaces the old, which is how the session of a dead connection goes).

Where moldau departs from Kafka: sessions are for followers only. A
consumer's fetch (replica_id < 0) is always answered with session id 0
(a broker may decline sessions; clients then send full fetches), and a
consumer naming a session gets FETCH_SESSION_ID_NOT_FOUND: consumer
sessions are for another day. No idle-time eviction
(``min.incremental.fetch.session.eviction.ms``): replacement by follower
and LRU are enough when only followers hold sessions.

Topics are keyed as the request names them: by name up to v12, by topic id
from v13 (the handler resolves ids, as for a session-less fetch).
"""

from __future__ import annotations

import random
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol.errors import ErrorCode
from ..replication.fetch_state import FINAL_EPOCH, INITIAL_EPOCH, NO_SESSION, next_epoch

_INT32_MAX = 0x7FFFFFFF

#: Marks a partition entry the request did not name: its fetch parameters
#: are those of an earlier fetch, already checked for a diverging epoch.
UNNAMED = "_unnamed"

TopicKey = str | uuid.UUID
PartitionKey = tuple[TopicKey, int]
#: The fetch parameters a request gives per partition (cached as given).
_PARAMS = (
    "current_leader_epoch",
    "fetch_offset",
    "last_fetched_epoch",
    "log_start_offset",
    "partition_max_bytes",
)


@dataclass
class CachedPartition:
    """One partition of a session: what the follower asked, and the
    offsets it was last told (-1: never)."""

    params: dict[str, int]
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1

    def must_answer(self, answer: dict[str, Any], named: bool) -> bool:
        """Whether ``answer`` goes into an incremental response; the offsets
        it carries are remembered as told if so."""
        must = (
            named
            or bool(answer.get("records"))
            or answer.get("error_code", 0) != 0
            or bool(answer.get("diverging_epoch"))
            or answer.get("high_watermark", -1) != self.high_watermark
            or answer.get("last_stable_offset", -1) != self.last_stable_offset
            or answer.get("log_start_offset", -1) != self.log_start_offset
        )
        if must:
            self.told(answer)
        return must

    def told(self, answer: dict[str, Any]) -> None:
        self.high_watermark = answer.get("high_watermark", -1)
        self.last_stable_offset = answer.get("last_stable_offset", -1)
        self.log_start_offset = answer.get("log_start_offset", -1)


@dataclass
class FetchSession:
    """A follower's session: its partitions in the order first named."""

    session_id: int
    replica_id: int
    by_id: bool
    #: The epoch the next request must carry.
    epoch: int = 1
    partitions: dict[PartitionKey, CachedPartition] = field(default_factory=dict)
    #: Topic key -> (name, topic id) as the request gave them.
    topics: dict[TopicKey, tuple[str | None, uuid.UUID | None]] = field(default_factory=dict)

    def update(
        self, topics: Iterable[dict[str, Any]], forgotten: Iterable[dict[str, Any]]
    ) -> set[PartitionKey]:
        """Add or update the named partitions, drop the forgotten ones; the named keys."""
        named: set[PartitionKey] = set()
        for topic in topics:
            key = self._key(topic)
            self.topics[key] = (topic.get("topic"), topic.get("topic_id"))
            for want in topic["partitions"]:
                pkey = (key, want["partition"])
                params = {name: want.get(name, -1) for name in _PARAMS}
                cached = self.partitions.get(pkey)
                if cached is None:
                    self.partitions[pkey] = CachedPartition(params)
                else:
                    cached.params = params
                named.add(pkey)
        for topic in forgotten:
            key = self._key(topic)
            for index in topic["partitions"]:
                self.partitions.pop((key, index), None)
        return named

    def request_topics(self, named: set[PartitionKey] | None = None) -> list[dict[str, Any]]:
        """Every partition of the session as a request's ``topics``; with
        ``named`` (an incremental fetch) the others are marked ``UNNAMED``."""
        topics: dict[TopicKey, dict[str, Any]] = {}
        for pkey, cached in self.partitions.items():
            key, index = pkey
            entry = topics.get(key)
            if entry is None:
                name, topic_id = self.topics[key]
                entry = topics[key] = {"topic": name, "topic_id": topic_id, "partitions": []}
            want = {"partition": index, **cached.params}
            if named is not None and pkey not in named:
                want[UNNAMED] = True
            entry["partitions"].append(want)
        return list(topics.values())

    def _key(self, topic: dict[str, Any]) -> TopicKey:
        return topic["topic_id"] if self.by_id else topic["topic"]


@dataclass
class FetchContext:
    """How the handler answers one Fetch (Kafka's FetchContext)."""

    #: A session error: answer it alone (no partitions).
    error: ErrorCode = ErrorCode.NONE
    #: The topics to read: the request's, or every partition of the session.
    topics: list[dict[str, Any]] = field(default_factory=list)
    session: FetchSession | None = None
    #: None for a full answer; else the partitions this request named.
    named: set[PartitionKey] | None = None

    def finish(self, response: dict[str, Any]) -> dict[str, Any]:
        """The response as the session answers it: its id, and for an
        incremental fetch only the partitions with something to say."""
        session = self.session
        if session is None:
            return response
        response["session_id"] = session.session_id
        named = self.named
        kept = []
        for topic in response["responses"]:
            key = topic["topic_id"] if session.by_id else topic["topic"]
            answers = []
            for answer in topic["partitions"]:
                cached = session.partitions.get((key, answer["partition_index"]))
                if cached is None:
                    answers.append(answer)  # forgotten meanwhile by a later request
                elif named is None:
                    cached.told(answer)
                    answers.append(answer)
                elif cached.must_answer(answer, (key, answer["partition_index"]) in named):
                    answers.append(answer)
            if answers:
                topic["partitions"] = answers
                kept.append(topic)
        response["responses"] = kept
        return response


class FetchSessionCache:
    """The leader's sessions, at most ``max_slots``, least recently used evicted."""

    def __init__(self, max_slots: int = 1000, rng: Callable[[], int] | None = None) -> None:
        self.max_slots = max_slots
        self._rng = rng or (lambda: random.randint(1, _INT32_MAX))
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self._by_replica: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: int) -> FetchSession | None:
        return self._sessions.get(session_id)

    def context(self, request: dict[str, Any], replica_id: int, by_id: bool) -> FetchContext:
        """The context of a Fetch from ``replica_id`` (< 0: a consumer)."""
        session_id = request.get("session_id", NO_SESSION)
        epoch = request.get("session_epoch", FINAL_EPOCH)
        topics = request["topics"]
        if replica_id < 0:  # no sessions for consumers (see the module doc)
            if session_id != NO_SESSION:
                return FetchContext(ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
            return FetchContext(topics=topics)
        if epoch in (INITIAL_EPOCH, FINAL_EPOCH):
            if session_id != NO_SESSION:
                self._remove(session_id)
            if epoch == FINAL_EPOCH:
                return FetchContext(topics=topics)
            session = self._create(replica_id, by_id)
            if session is None:
                return FetchContext(topics=topics)
            session.update(topics, ())
            return FetchContext(topics=session.request_topics(), session=session)
        session = self._sessions.get(session_id)
        if session is None or session.replica_id != replica_id or session.by_id != by_id:
            return FetchContext(ErrorCode.FETCH_SESSION_ID_NOT_FOUND)
        if epoch != session.epoch:
            return FetchContext(ErrorCode.INVALID_FETCH_SESSION_EPOCH)
        session.epoch = next_epoch(epoch)
        self._sessions.move_to_end(session_id)
        named = session.update(topics, request.get("forgotten_topics_data") or ())
        return FetchContext(topics=session.request_topics(named), session=session, named=named)

    def _create(self, replica_id: int, by_id: bool) -> FetchSession | None:
        old = self._by_replica.get(replica_id)
        if old is not None:
            self._remove(old)
        if self.max_slots <= 0:
            return None
        while len(self._sessions) >= self.max_slots:
            self._remove(next(iter(self._sessions)))
        session_id = self._rng()
        while session_id == NO_SESSION or session_id in self._sessions:
            session_id = self._rng()
        session = self._sessions[session_id] = FetchSession(session_id, replica_id, by_id)
        self._by_replica[replica_id] = session_id
        return session

    def _remove(self, session_id: int) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None and self._by_replica.get(session.replica_id) == session_id:
            del self._by_replica[session.replica_id]
