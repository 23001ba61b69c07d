"""An in-memory ZooKeeper view for the controller's unit tests.

A dict of znode path -> (data, version) in Kafka 3.9's layout (the codecs of
``moldau.cluster.zk.paths``), applying the controller's write commands as
``ZkStore`` would: each write is fenced by /controller_epoch's version (a
deposed controller's write is refused and changes nothing), a partition
state update is conditional on the znode's version, creating a state that
exists fails. Versions grow by one per set, as ZooKeeper's do.
"""

from __future__ import annotations

from enum import Enum

from moldau.cluster.controller.commands import (
    CreatePartitionStates,
    DeleteTopic,
    Fence,
    RemoveDeletionMarks,
    RemoveZkReassignments,
    UpdatePartitionState,
    UpdateTopicAssignment,
    ZkWrite,
)
from moldau.cluster.controller.context import LiveBroker, TopicPartition
from moldau.cluster.controller.events import ControllerElected
from moldau.cluster.zk import paths as zp


class Outcome(Enum):
    OK = "ok"
    STALE = "stale"  # a conditional write lost (BadVersion / NodeExists)
    MOVED = "moved"  # the fence failed: the writer is no longer the controller


class FakeZkView:
    def __init__(self) -> None:
        self.nodes: dict[str, tuple[bytes, int]] = {
            zp.CONTROLLER_EPOCH: (zp.encode_controller_epoch(0), 0)
        }

    # -- what other parties write ----------------------------------------------

    def elect(self) -> Fence:
        """A controller wins: /controller_epoch is bumped (one set)."""
        data, version = self.nodes[zp.CONTROLLER_EPOCH]
        epoch = zp.decode_controller_epoch(data) + 1
        self.nodes[zp.CONTROLLER_EPOCH] = (zp.encode_controller_epoch(epoch), version + 1)
        return Fence(epoch, version + 1)

    def create_topic(self, topic: str, replicas: list[list[int]]) -> zp.TopicAssignment:
        assignment = _assignment(replicas)
        self.nodes[zp.topic_path(topic)] = (zp.encode_topic(assignment), 0)
        return assignment

    def add_partitions(self, topic: str, replicas: list[list[int]]) -> zp.TopicAssignment:
        data, version = self.nodes[zp.topic_path(topic)]
        old = zp.decode_topic(topic, data)
        extra = _assignment(replicas, first=len(old.partitions))
        assignment = zp.TopicAssignment(old.topic_id, {**old.partitions, **extra.partitions})
        self.nodes[zp.topic_path(topic)] = (zp.encode_topic(assignment), version + 1)
        return assignment

    def mark_for_deletion(self, topic: str) -> None:
        self.nodes[zp.delete_topic_path(topic)] = (b"", 0)

    def request_reassignment(
        self, targets: dict[TopicPartition, tuple[int, ...]]
    ) -> dict[TopicPartition, tuple[int, ...]]:
        """What kafka-reassign-partitions --zookeeper wrote (Kafka before 3.0)."""
        self.nodes[zp.REASSIGN_PARTITIONS] = (zp.encode_reassignment(targets), 0)
        return targets

    def reassignment_requested(self) -> dict[TopicPartition, tuple[int, ...]] | None:
        found = self.nodes.get(zp.REASSIGN_PARTITIONS)
        return None if found is None else zp.decode_reassignment(found[0])

    def leader_sets_isr(self, tp: TopicPartition, isr: tuple[int, ...]) -> zp.PartitionState:
        """What a ZooKeeper-mode leader does on ISR shrink or expand: same
        leader epoch, a new znode version."""
        current = self.state(tp)
        assert current is not None
        path = zp.partition_state_path(*tp)
        new = zp.PartitionState(
            current.leader, current.leader_epoch, isr, current.controller_epoch, zk_version=-1
        )
        self.nodes[path] = (zp.encode_partition_state(new), current.zk_version + 1)
        state = self.state(tp)
        assert state is not None
        return state

    # -- reads -----------------------------------------------------------------

    def topics(self) -> dict[str, zp.TopicAssignment]:
        prefix = zp.TOPICS + "/"
        return {
            path[len(prefix) :]: zp.decode_topic(path[len(prefix) :], data)
            for path, (data, _) in self.nodes.items()
            if path.startswith(prefix) and "/" not in path[len(prefix) :]
        }

    def marks(self) -> frozenset[str]:
        prefix = zp.DELETE_TOPICS + "/"
        return frozenset(p[len(prefix) :] for p in self.nodes if p.startswith(prefix))

    def state(self, tp: TopicPartition) -> zp.PartitionState | None:
        found = self.nodes.get(zp.partition_state_path(*tp))
        return None if found is None else zp.decode_partition_state(found[0], found[1])

    def states(self) -> dict[TopicPartition, zp.PartitionState]:
        out = {}
        for topic, assignment in self.topics().items():
            for partition in assignment.partitions:
                state = self.state((topic, partition))
                if state is not None:
                    out[(topic, partition)] = state
        return out

    def elected(self, brokers: dict[int, LiveBroker]) -> ControllerElected:
        """Win the election and read everything, as the shell would."""
        fence = self.elect()
        return ControllerElected(
            fence.epoch,
            fence.epoch_zk_version,
            dict(brokers),
            self.topics(),
            self.states(),
            self.marks(),
        )

    # -- the controller's writes -----------------------------------------------

    def apply(self, write: ZkWrite) -> Outcome:
        if self.nodes[zp.CONTROLLER_EPOCH][1] != write.fence.epoch_zk_version:
            return Outcome.MOVED
        if isinstance(write, CreatePartitionStates):
            paths = {p: zp.partition_state_path(write.topic, p) for p in write.states}
            if any(path in self.nodes for path in paths.values()):
                return Outcome.STALE
            for partition, state in write.states.items():
                self.nodes[paths[partition]] = (zp.encode_partition_state(state), 0)
        elif isinstance(write, UpdatePartitionState):
            path = zp.partition_state_path(write.topic, write.partition)
            found = self.nodes.get(path)
            if found is None or found[1] != write.state.zk_version:
                return Outcome.STALE
            self.nodes[path] = (zp.encode_partition_state(write.state), found[1] + 1)
        elif isinstance(write, UpdateTopicAssignment):
            path = zp.topic_path(write.topic)
            data, version = self.nodes[path]
            old = zp.decode_topic(write.topic, data)
            new = zp.TopicAssignment(old.topic_id, {**old.partitions, **write.partitions})
            self.nodes[path] = (zp.encode_topic(new), version + 1)
        elif isinstance(write, RemoveZkReassignments):
            found = self.nodes.get(zp.REASSIGN_PARTITIONS)
            if found is not None:
                current = zp.decode_reassignment(found[0])
                left = {
                    tp: r
                    for tp, r in current.items()
                    if tp not in write.partitions or write.partitions[tp] not in (None, r)
                }
                if not left:
                    del self.nodes[zp.REASSIGN_PARTITIONS]
                elif left != current:
                    data = zp.encode_reassignment(left)
                    self.nodes[zp.REASSIGN_PARTITIONS] = (data, found[1] + 1)
        elif isinstance(write, DeleteTopic):
            base = zp.topic_path(write.topic)
            for path in [p for p in self.nodes if p == base or p.startswith(base + "/")]:
                del self.nodes[path]
            self.nodes.pop(zp.delete_topic_path(write.topic), None)
        elif isinstance(write, RemoveDeletionMarks):
            for topic in write.topics:
                self.nodes.pop(zp.delete_topic_path(topic), None)
        return Outcome.OK

    def touched(self, write: ZkWrite) -> list[TopicPartition]:
        """The partitions whose state a write concerns (to re-read after STALE)."""
        if isinstance(write, CreatePartitionStates):
            return [(write.topic, p) for p in write.states]
        if isinstance(write, UpdatePartitionState):
            return [(write.topic, write.partition)]
        return []


def _assignment(replicas: list[list[int]], first: int = 0) -> zp.TopicAssignment:
    return zp.TopicAssignment(
        None,
        {first + i: zp.ReplicaAssignment(tuple(r)) for i, r in enumerate(replicas)},
    )
