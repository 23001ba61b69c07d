"""Replication throttles (KIP-73): a byte-rate meter and who it applies to.

Pure: no asyncio, no I/O; the clock is passed in. Kafka's
``ReplicationQuotaManager`` in three parts:

- ``RateMeter``: Kafka's ``SimpleRate`` over a ``SampledStat`` of
  ``replication.quota.window.num`` (11) samples of
  ``replication.quota.window.size.seconds`` (1 s): the bytes recorded in the
  samples still alive, divided by the time since the oldest one started
  (at least one window). A sample with no record for ``samples * window``
  is forgotten.
- the topic keys ``leader.replication.throttled.replicas`` and
  ``follower.replication.throttled.replicas``: "" (none), "*" (every replica
  of the topic) or ``partition:broker,...``. A broker throttles the
  partitions listed with *its own* id (Kafka's
  ``TopicConfigHandler.parseThrottledPartitions``): in the leader list, the
  brokers that send (the current replicas of a move); in the follower list,
  the brokers that receive (the new ones).
- ``ReplicationQuota``: one side's meter, its bound
  (``leader.replication.throttled.rate`` or
  ``follower.replication.throttled.rate``, bytes/s) and the topic key naming
  its throttled partitions. ``throttles`` is Kafka's ``shouldLeaderThrottle``
  / ``shouldFollowerThrottle``: a replica is held back only while it is out
  of sync (the leader: not in the ISR; the follower: behind the leader's
  high watermark), its partition is throttled and the rate is above the
  bound, so that throttling never shrinks an ISR. Traffic of in-sync
  replicas of throttled partitions is recorded all the same, so the total
  stays under the bound.

Where moldau departs from Kafka: nothing is recorded while the bound is
unlimited (Kafka records always, for a metric moldau does not have): the
fetch path of an unthrottled broker does no work for throttles. A value
Kafka 3.9's validator lets through but cannot parse (a partition id beyond
an int) is refused when set, as Kafka 4 does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

#: Kafka's QuotaConfig.QUOTA_BYTES_PER_SECOND_DEFAULT (Long.MAX_VALUE): no bound.
UNLIMITED = 2**63 - 1
#: Kafka's defaults of replication.quota.window.num and .size.seconds.
DEFAULT_SAMPLES = 11
DEFAULT_WINDOW_MS = 1000

LEADER_RATE = "leader.replication.throttled.rate"
FOLLOWER_RATE = "follower.replication.throttled.rate"
LEADER_REPLICAS = "leader.replication.throttled.replicas"
FOLLOWER_REPLICAS = "follower.replication.throttled.replicas"


@dataclass
class _Sample:
    start_ms: int
    last_ms: int
    value: float = 0.0

    def reset(self, now_ms: int) -> None:
        self.start_ms = self.last_ms = now_ms
        self.value = 0.0


class RateMeter:
    """Bytes per second over the last ``samples`` windows (Kafka's SimpleRate)."""

    def __init__(self, samples: int = DEFAULT_SAMPLES, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        if samples < 1 or window_ms < 1:
            raise ValueError("a rate needs at least one sample of at least 1 ms")
        self.samples = samples
        self.window_ms = window_ms
        # One more slot than samples: the sample overlapping the window's start.
        self._slots: list[_Sample] = []
        self._current = 0

    def record(self, value: float, now_ms: int) -> None:
        if not self._slots:
            self._slots.append(_Sample(now_ms, now_ms))
        sample = self._slots[self._current]
        if now_ms - sample.start_ms >= self.window_ms:
            self._current = (self._current + 1) % (self.samples + 1)
            if self._current >= len(self._slots):
                self._slots.append(_Sample(now_ms, now_ms))
            else:
                self._slots[self._current].reset(now_ms)
            sample = self._slots[self._current]
        sample.value += value
        sample.last_ms = now_ms

    def _purge(self, now_ms: int) -> None:
        expire_ms = self.samples * self.window_ms
        for sample in self._slots:
            if now_ms - sample.last_ms >= expire_ms:
                sample.reset(now_ms)

    def _at(self, when_ms: int) -> tuple[float, int]:
        """(bytes, elapsed ms) the rate would be made of at ``when_ms`` with
        nothing more recorded: samples silent for the whole window count as
        reset then (what a purge at that time does), without changing any."""
        expire_ms = self.samples * self.window_ms
        alive = [s for s in self._slots if when_ms - s.last_ms < expire_ms]
        oldest = min((s.start_ms for s in alive), default=when_ms)
        return sum(s.value for s in alive), max(when_ms - oldest, self.window_ms)

    def rate(self, now_ms: int) -> float:
        """Bytes per second now."""
        self._purge(now_ms)
        total, elapsed_ms = self._at(now_ms)
        return total * 1000 / elapsed_ms

    def ms_until_at_most(self, bound: float, now_ms: int) -> int:
        """How long, with nothing more recorded, until the rate is at most
        ``bound`` (0 if it is now). Between two samples' expiry the rate only
        falls, so each such stretch is solved in turn; an expiry can make the
        window shorter and the rate higher again."""
        if self.rate(now_ms) <= bound:
            return 0
        expire_ms = self.samples * self.window_ms
        ends = sorted(
            {s.last_ms + expire_ms for s in self._slots if s.last_ms + expire_ms > now_ms}
        )
        start = now_ms
        for end in ends:
            total, _ = self._at(start)
            if total and bound > 0:
                alive = [s for s in self._slots if start - s.last_ms < expire_ms]
                oldest = min(s.start_ms for s in alive)
                needed = -(-total * 1000 // bound)  # elapsed ms that brings it within
                when = max(start, int(oldest + needed))
                if when < end and total * 1000 / max(when - oldest, self.window_ms) <= bound:
                    return when - now_ms
            elif not total:
                return start - now_ms
            start = end
        return start - now_ms


# --------------------------------------------------------------------------- replica lists

#: Every partition of the topic ("*"; Kafka's Constants.AllReplicas).
ALL_PARTITIONS = None
ThrottledPartitions = frozenset[int] | None

_REPLICA = re.compile(r"([0-9]+):([0-9]+)")
_INT_MAX = 2**31 - 1


def throttled_replicas_error(name: str, value: str) -> str | None:
    """Why ``value`` is not a throttled replica list (Kafka 3.9's
    ThrottledReplicaListValidator: "*", or items ``partition:broker``, empty
    items allowed), or None if it is one."""
    items = [item.strip() for item in value.split(",")]
    if "".join(items) == "*":
        return None
    for item in items:
        if not item:
            continue
        match = _REPLICA.fullmatch(item)
        if match is None or any(int(n) > _INT_MAX for n in match.groups()):
            return (
                f"{name} must be the literal '*' or a list of replicas in the following "
                "format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
            )
    return None


@functools.lru_cache(maxsize=1024)
def throttled_partitions(value: str, broker_id: int) -> ThrottledPartitions:
    """The partitions ``value`` throttles on ``broker_id``: ALL_PARTITIONS for
    "*", else those listed with this broker's id (a valid value assumed;
    anything else throttles nothing)."""
    if "".join(item.strip() for item in value.split(",")) == "*":
        return ALL_PARTITIONS
    partitions = set()
    for item in value.split(","):
        match = _REPLICA.fullmatch(item.strip())
        if match is not None and int(match.group(2)) == broker_id:
            partitions.add(int(match.group(1)))
    return frozenset(partitions)


# --------------------------------------------------------------------------- the quota

TopicConfigs = Callable[[str], Mapping[str, str] | None]


class ReplicationQuota:
    """One side's throttle on this broker (Kafka's ReplicationQuotaManager)."""

    #: The topic key listing this side's throttled replicas.
    replicas_key: str

    def __init__(
        self,
        broker_id: int,
        topic_configs: TopicConfigs,
        clock: Callable[[], int],
        samples: int = DEFAULT_SAMPLES,
        window_ms: int = DEFAULT_WINDOW_MS,
    ) -> None:
        self.broker_id = broker_id
        self.topic_configs = topic_configs
        self.clock = clock
        self.meter = RateMeter(samples, window_ms)
        #: Bytes per second; UNLIMITED when no throttle is set.
        self.bound = UNLIMITED

    @property
    def limited(self) -> bool:
        return self.bound != UNLIMITED

    def set_bound(self, bytes_per_second: int) -> None:
        self.bound = bytes_per_second

    def is_throttled(self, topic: str, partition: int) -> bool:
        """Whether the topic's replica list names this partition on this broker."""
        configs = self.topic_configs(topic)
        value = configs.get(self.replicas_key) if configs else None
        if not value:
            return False
        partitions = throttled_partitions(value, self.broker_id)
        return partitions is ALL_PARTITIONS or partition in partitions

    def exceeded(self) -> bool:
        return self.limited and self.meter.rate(self.clock()) > self.bound

    def throttles(self, topic: str, partition: int, in_sync: bool) -> bool:
        """Hold this replica's bytes back now (see the module doc)."""
        return not in_sync and self.exceeded() and self.is_throttled(topic, partition)

    def record(self, topic: str, partition: int, size: int) -> None:
        """Count ``size`` bytes moved for a partition, if it is throttled."""
        if size and self.limited and self.is_throttled(topic, partition):
            self.meter.record(size, self.clock())

    def ms_until_within(self) -> int:
        """How long until the rate is back within the bound (0 if it is)."""
        if not self.limited:
            return 0
        return self.meter.ms_until_at_most(self.bound, self.clock())


class LeaderQuota(ReplicationQuota):
    """What a leader sends its followers (``leader.replication.throttled.*``)."""

    replicas_key = LEADER_REPLICAS

    def holds_back(self, topic: str, partition: int, replica_id: int, isr: Collection[int]) -> bool:
        """Leave this partition's records out of ``replica_id``'s fetch now
        (Kafka's ReplicaManager.shouldLeaderThrottle: only out of the ISR)."""
        return self.limited and self.throttles(topic, partition, replica_id in isr)


class FollowerQuota(ReplicationQuota):
    """What a follower fetches (``follower.replication.throttled.*``); it
    remembers per partition whether the last answer left it caught up with
    the leader's high watermark (Kafka's PartitionFetchState.isReplicaInSync)."""

    replicas_key = FOLLOWER_REPLICAS

    def __init__(
        self,
        broker_id: int,
        topic_configs: TopicConfigs,
        clock: Callable[[], int],
        samples: int = DEFAULT_SAMPLES,
        window_ms: int = DEFAULT_WINDOW_MS,
    ) -> None:
        super().__init__(broker_id, topic_configs, clock, samples, window_ms)
        self._in_sync: dict[tuple[str, int], bool] = {}

    def fetched(self, topic: str, partition: int, size: int, leader_hw: int, log_end: int) -> None:
        """An answer brought ``size`` bytes and left this log at ``log_end``
        with the leader's high watermark at ``leader_hw``."""
        self._in_sync[(topic, partition)] = log_end >= leader_hw
        self.record(topic, partition, size)

    def holds_back(self, topic: str, partition: int) -> int:
        """How long (ms) to leave this partition out of the fetches, 0 to fetch it now."""
        if not self.limited or not self.throttles(
            topic, partition, self._in_sync.get((topic, partition), False)
        ):
            return 0
        return self.ms_until_within()


@dataclass
class ReplicationQuotas:
    """This broker's two throttles."""

    leader: LeaderQuota
    follower: FollowerQuota

    @classmethod
    def create(
        cls,
        broker_id: int,
        topic_configs: TopicConfigs,
        clock: Callable[[], int],
        samples: int = DEFAULT_SAMPLES,
        window_ms: int = DEFAULT_WINDOW_MS,
    ) -> ReplicationQuotas:
        return cls(
            LeaderQuota(broker_id, topic_configs, clock, samples, window_ms),
            FollowerQuota(broker_id, topic_configs, clock, samples, window_ms),
        )

    def set_rates(self, leader: int, follower: int) -> None:
        self.leader.set_bound(leader)
        self.follower.set_bound(follower)
