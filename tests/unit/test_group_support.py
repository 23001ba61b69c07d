"""Shared driver for the group coordinator tests: a fake clock, a record sink,
and helpers that play the client's side of JoinGroup/SyncGroup.

No tests here; the test_group_*.py modules import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from moldau.group import GroupConfig, GroupCoordinator, errors
from moldau.group.consumer_protocol import Subscription, encode_subscription
from moldau.group.history import RebalanceRecord
from moldau.group.results import JoinResult, LeavingMember, SyncResult
from moldau.group.runtime import LoggedRecord, TransactionalRecord, TxnEnd, TxnProducer

T = TypeVar("T")

START_MS = 1_700_000_000_000


class Clock:
    def __init__(self, now: int = START_MS) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class Answer(Generic[T]):
    """Catches the one answer to a waiting request."""

    def __init__(self) -> None:
        self.results: list[T] = []

    def __call__(self, result: T) -> None:
        self.results.append(result)

    @property
    def done(self) -> bool:
        return bool(self.results)

    @property
    def result(self) -> T:
        assert len(self.results) == 1, f"expected exactly one answer, got {self.results}"
        return self.results[0]


def subscription(*topics: str) -> bytes:
    return encode_subscription(Subscription(tuple(topics)))


RANGE = [("range", subscription("orders"))]


@dataclass(frozen=True)
class Joined:
    """A member as its client sees it after a successful JoinGroup."""

    member_id: str
    generation: int
    leader: str
    members: tuple[str, ...]  # what the leader was sent; empty for followers

    @property
    def is_leader(self) -> bool:
        return self.member_id == self.leader


class Harness:
    """A coordinator owning every partition, with a clock the test moves."""

    def __init__(self, **config: int) -> None:
        self.clock = Clock()
        self.config = GroupConfig(**config)
        #: The plain records written, as (partition, key, value).
        self.records: list[tuple[int, bytes, bytes | None]] = []
        #: Everything written, in log order: plain records, records of
        #: transactions and their markers (what a restart replays).
        self.log: list[tuple[int, LoggedRecord]] = []
        #: (group id, record) as the coordinator's rebalance listener heard them.
        self.ended: list[tuple[str, RebalanceRecord]] = []
        self.coord = self.new_coordinator()
        for p in range(self.config.offsets_topic_num_partitions):
            self.coord.load_partition(p, [])

    def new_coordinator(self) -> GroupCoordinator:
        def persist(
            partition: int,
            records: list[tuple[bytes, bytes | None]],
            producer: TxnProducer | None = None,
        ) -> None:
            if producer is None:
                self.records.extend((partition, k, v) for k, v in records)
                self.log.extend((partition, (k, v)) for k, v in records)
            else:
                pid = producer.producer_id
                self.log.extend((partition, TransactionalRecord(k, v, pid)) for k, v in records)

        def on_rebalance_end(group_id: str, record: RebalanceRecord) -> None:
            self.ended.append((group_id, record))

        return GroupCoordinator(self.config, self.clock, persist, on_rebalance_end)

    def restart_coordinator(self) -> None:
        """A broker restart: a new coordinator that knows only what was persisted."""
        self.coord = self.new_coordinator()
        for p in range(self.config.offsets_topic_num_partitions):
            self.coord.load_partition(p, self.records_of(p))

    def records_of(self, partition: int) -> list[LoggedRecord]:
        return [record for p, record in self.log if p == partition]

    def end_transaction(self, partition: int, producer_id: int, committed: bool) -> None:
        """The transaction coordinator's marker lands in offsets partition
        ``partition``: logged, and told to the coordinator."""
        self.log.append((partition, TxnEnd(producer_id, committed)))
        self.coord.complete_transaction(partition, producer_id, committed)

    def advance(self, ms: int) -> None:
        """Moves time on by ``ms``, stopping at every deadline on the way to run
        what is due, as a shell that sleeps until ``next_deadline()`` would."""
        target = self.clock.now + ms
        while (deadline := self.coord.next_deadline()) is not None and deadline <= target:
            self.clock.now = max(self.clock.now, deadline)
            self.coord.tick()
        self.clock.now = target

    def finish_initial_delay(self) -> None:
        """Waits out the first rebalance of members that all joined at once:
        the others arrived during the first member's delay, which extends it once."""
        self.advance(2 * self.config.group_initial_rebalance_delay_ms)

    # --- the client's side ----------------------------------------------------

    def join(
        self,
        group: str,
        member_id: str = "",
        *,
        instance: str | None = None,
        client_id: str = "client",
        protocols: list[tuple[str, bytes]] | None = None,
        protocol_type: str = "consumer",
        session_ms: int = 10_000,
        rebalance_ms: int = 60_000,
        require_known_member_id: bool = True,
        reason: str | None = None,
    ) -> Answer[JoinResult]:
        answer: Answer[JoinResult] = Answer()
        self.coord.join_group(
            group,
            member_id,
            instance,
            client_id,
            "/127.0.0.1",
            session_ms,
            rebalance_ms,
            protocol_type,
            RANGE if protocols is None else protocols,
            reason,
            require_known_member_id=require_known_member_id,
            on_done=answer,
        )
        return answer

    def join_new(self, group: str, **kwargs: object) -> Answer[JoinResult]:
        """A new member's JoinGroup, after the MEMBER_ID_REQUIRED round when it has one."""
        first = self.join(group, **kwargs)  # type: ignore[arg-type]
        if kwargs.get("instance") is not None:
            return first
        assert first.result.error_code == errors.MEMBER_ID_REQUIRED
        return self.join(group, first.result.member_id, **kwargs)  # type: ignore[arg-type]

    def sync(
        self,
        group: str,
        joined: Joined,
        assignments: dict[str, bytes] | None = None,
        *,
        instance: str | None = None,
        generation: int | None = None,
        protocol_type: str = "consumer",
    ) -> Answer[SyncResult]:
        answer: Answer[SyncResult] = Answer()
        self.coord.sync_group(
            group,
            joined.generation if generation is None else generation,
            joined.member_id,
            instance,
            protocol_type,
            None,
            list((assignments or {}).items()),
            on_done=answer,
        )
        return answer

    def heartbeat(self, group: str, joined: Joined, instance: str | None = None) -> int:
        result = self.coord.heartbeat(group, joined.generation, joined.member_id, instance)
        return result.error_code

    def leave(self, group: str, *members: LeavingMember) -> list[int]:
        result = self.coord.leave_group(group, list(members))
        assert result.error_code == errors.NONE
        return [m.error_code for m in result.members]

    def form_group(self, group: str, n: int, **kwargs: object) -> list[Joined]:
        """n members join within the initial delay and sync: a Stable group.

        The leader assigns b"assignment-of-<member id>" to every member.
        """
        answers = [self.join_new(group, client_id=f"client-{i}", **kwargs) for i in range(n)]
        self.finish_initial_delay()
        joined = [joined_from(a) for a in answers]
        return self.sync_all(group, joined)

    def rejoin_all(self, group: str, members: list[Joined], **kwargs: object) -> list[Joined]:
        """Every member rejoins with its id (as after REBALANCE_IN_PROGRESS) and syncs."""
        answers = [
            self.join(group, m.member_id, client_id=f"client-{i}", **kwargs)  # type: ignore[arg-type]
            for i, m in enumerate(members)
        ]
        return self.sync_all(group, [joined_from(a) for a in answers])

    def sync_all(self, group: str, joined: list[Joined]) -> list[Joined]:
        leader = next(j for j in joined if j.is_leader)
        assignment = {m: f"assignment-of-{m}".encode() for m in leader.members}
        followers = [self.sync(group, j) for j in joined if not j.is_leader]
        assert self.sync(group, leader, assignment).result.error_code == errors.NONE
        assert all(f.result.error_code == errors.NONE for f in followers)
        return joined


def joined_from(answer: Answer[JoinResult]) -> Joined:
    r = answer.result
    assert r.error_code == errors.NONE, r
    return Joined(r.member_id, r.generation_id, r.leader, tuple(m.member_id for m in r.members))


def state(h: Harness, group: str) -> str:
    return h.coord.describe_groups([group])[0].state
