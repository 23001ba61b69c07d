"""What the coordinator's parts share: groups, clock, timers, the record sink,
and the queue of answers owed to waiting requests.

Answers to waiting JoinGroup/SyncGroup calls are queued while a request is
being handled and delivered only once the state change is complete (and its
records persisted), so a callback that immediately calls back into the
coordinator, as a client rejoining at once would, always sees a consistent
group.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, TypeVar

from moldau.group.config import GroupConfig
from moldau.group.history import RebalanceRecord
from moldau.group.model import Group, GroupState, Member
from moldau.group.placement import partition_for_group
from moldau.group.timers import Timers

R = TypeVar("R")

Record = tuple[bytes, bytes | None]


class TxnProducer(NamedTuple):
    """The transactional producer a TxnOffsetCommit writes for: its records
    go into the offsets log inside that producer's transaction."""

    producer_id: int
    producer_epoch: int


class TransactionalRecord(NamedTuple):
    """A record of the offsets log written inside a transaction."""

    key: bytes
    value: bytes | None
    producer_id: int


class TxnEnd(NamedTuple):
    """A transaction's end in the offsets log (its commit or abort marker)."""

    producer_id: int
    committed: bool


#: What loading an offsets partition replays, in log order.
LoggedRecord = Record | TransactionalRecord | TxnEnd


class Persist(Protocol):
    """Appends records to an offsets partition (inside ``producer``'s
    transaction when given); raises the write's KafkaError."""

    def __call__(
        self, partition: int, records: list[Record], producer: TxnProducer | None = None, /
    ) -> None: ...


#: Told (group id, record) when a rebalance has ended, however it ended.
RebalanceListener = Callable[[str, RebalanceRecord], None]


class Deadline(StrEnum):
    """What a timer waits for."""

    #: The join phase ends: the initial delay or the rebalance timeout is over.
    JOIN = "join"
    #: Members given a generation must have sent SyncGroup by now.
    SYNC = "sync"
    #: A member must have been heard from by now.
    SESSION = "session"
    #: An id handed out with MEMBER_ID_REQUIRED must have been used by now.
    PENDING = "pending"
    #: Time for the periodic check for expired offsets.
    EXPIRE_OFFSETS = "expire-offsets"


class TimerKey(NamedTuple):
    deadline: Deadline
    group_id: str = ""
    member_id: str = ""


class Runtime:
    def __init__(
        self,
        config: GroupConfig,
        clock: Callable[[], int],
        persist: Persist,
        on_rebalance_end: RebalanceListener | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.groups: dict[str, Group] = {}
        self.timers: Timers[TimerKey] = Timers()
        #: Partitions of __consumer_offsets this coordinator serves, and those
        #: it is still reading.
        self.owned: set[int] = set()
        self.loading: set[int] = set()
        self._persist = persist
        self._on_rebalance_end = on_rebalance_end
        self._outbox: deque[tuple[Callable[[Any], None], object]] = deque()

    def partition_of(self, group_id: str) -> int:
        return partition_for_group(group_id, self.config.offsets_topic_num_partitions)

    def new_group(self, group_id: str) -> Group:
        """A group object, not yet registered (a failed request leaves no trace)."""
        return Group(group_id, history=deque(maxlen=self.config.rebalance_history_size))

    def write(
        self, group_id: str, records: list[Record], producer: TxnProducer | None = None
    ) -> None:
        """Appends records to the group's partition; returns once they are handed over."""
        if records:
            self._persist(self.partition_of(group_id), records, producer)

    def end_rebalance(self, group: Group, record: RebalanceRecord) -> None:
        """Keeps an ended rebalance in the group's history and tells the listener."""
        group.history.append(record)
        group.rebalance = None
        if self._on_rebalance_end is not None:
            self._on_rebalance_end(group.group_id, record)

    def respond(self, callback: Callable[[R], None], result: R) -> None:
        """Queues an answer to a waiting request; :meth:`flush` delivers it."""
        self._outbox.append((callback, result))

    def flush(self) -> None:
        while self._outbox:
            callback, result = self._outbox.popleft()
            callback(result)

    # --- timers ---------------------------------------------------------------

    def start_timer(
        self, deadline: Deadline, delay_ms: int, group_id: str = "", member_id: str = ""
    ) -> None:
        """Starts (or restarts) a timer that falls due ``delay_ms`` from now."""
        key = TimerKey(deadline, group_id, member_id)
        self.timers.schedule(key, self.clock() + delay_ms)

    def stop_timer(self, deadline: Deadline, group_id: str = "", member_id: str = "") -> None:
        self.timers.cancel(TimerKey(deadline, group_id, member_id))

    def schedule_session(self, group: Group, member: Member, timeout_ms: int | None = None) -> None:
        """(Re)starts a member's session: it must be heard from within the timeout."""
        timeout = member.session_timeout_ms if timeout_ms is None else timeout_ms
        self.start_timer(Deadline.SESSION, timeout, group.group_id, member.member_id)

    def drop_group(self, group: Group) -> None:
        """Forgets a group and all its timers; the caller has answered its waiters."""
        gid = group.group_id
        self.stop_timer(Deadline.JOIN, gid)
        self.stop_timer(Deadline.SYNC, gid)
        for member_id in group.members:
            self.stop_timer(Deadline.SESSION, gid, member_id)
        for member_id in group.pending_members:
            self.stop_timer(Deadline.PENDING, gid, member_id)
        group.state = GroupState.DEAD
        del self.groups[gid]
