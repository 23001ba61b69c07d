"""The controller shell against a real ZooKeeper: several ControllerShells in
one event loop, each with its own ZooKeeper session and broker registration,
their broker channels recording what they send instead of connecting."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from moldau.cluster import wire
from moldau.cluster.channels import BrokerChannels
from moldau.cluster.controller.alter_partition import AlterPartitionItem
from moldau.cluster.controller.commands import (
    AlterPartitionReply,
    BrokerRequest,
    LeaderAndIsr,
    StopReplica,
    UpdateMetadata,
)
from moldau.cluster.controller.context import LiveBroker
from moldau.cluster.controller.events import AlterPartition
from moldau.cluster.controller_shell import ControllerShell
from moldau.cluster.zk import paths as zp
from moldau.cluster.zk.client import ZkClient
from moldau.cluster.zk.store import ZkStore
from moldau.protocol.errors import ErrorCode, KafkaError
from moldau.protocol.messages import Message
from support.zookeeper import ZooKeeper, expire_session

pytestmark = pytest.mark.cluster

T = TypeVar("T")

SESSION_MS = 2000


def run(main: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


async def until(
    condition: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 15.0
) -> None:
    """Wait for ``condition`` with a deadline (polling; no sleep as a guess)."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- a recording transport ---------------------------------------------


@dataclass
class Recorder:
    """Every request a controller sent, by the sending broker; StopReplica
    answers can be held back until ``release_stops``."""

    sent: list[tuple[int, BrokerRequest]] = field(default_factory=list)
    hold_stops: bool = False
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def transport(self, sender: int) -> Callable[[LiveBroker, BrokerRequest], Awaitable[Message]]:
        async def send(broker: LiveBroker, request: BrokerRequest) -> Message:
            assert broker.broker_id == request.broker_id
            self.sent.append((sender, request))
            if isinstance(request, StopReplica):
                if self.hold_stops:
                    await self._released.wait()
                return wire.stop_replica_response(request, {})
            return {"error_code": 0}

        return send

    def release_stops(self) -> None:
        self._released.set()

    def of(self, kind: type[T], sender: int | None = None) -> list[T]:
        return [r for s, r in self.sent if isinstance(r, kind) and (sender is None or s == sender)]


# -- brokers ---------------------------------------------------------------------


@dataclass
class Node:
    broker_id: int
    client: ZkClient
    store: ZkStore
    shell: ControllerShell
    epoch: int


def clock() -> int:
    return int(time.time() * 1000)


@asynccontextmanager
async def admin_store(zookeeper: ZooKeeper) -> AsyncIterator[ZkStore]:
    client = ZkClient(zookeeper.connect, session_timeout_ms=SESSION_MS)
    await client.start()
    try:
        store = ZkStore(client)
        await store.create_top_level_paths()
        yield store
    finally:
        await client.close()


@asynccontextmanager
async def cluster(
    zookeeper: ZooKeeper, recorder: Recorder, broker_ids: list[int]
) -> AsyncIterator[dict[int, Node]]:
    """Registered brokers with started shells; everything stopped at the end."""
    async with AsyncExitStack() as stack:
        nodes: dict[int, Node] = {}
        for broker_id in broker_ids:
            client = ZkClient(zookeeper.connect, session_timeout_ms=SESSION_MS)
            await client.start()
            stack.push_async_callback(client.close)
            store = ZkStore(client)
            await store.create_top_level_paths()
            epoch = await store.register_broker(
                zp.BrokerRegistration(
                    broker_id, (zp.Endpoint("PLAINTEXT", "127.0.0.1", 9000 + broker_id),)
                )
            )
            channels = BrokerChannels(transport=recorder.transport(broker_id))
            shell = ControllerShell(store, broker_id, channels, clock=clock)
            nodes[broker_id] = Node(broker_id, client, store, shell, epoch)
        for node in nodes.values():
            await node.shell.start()
            stack.push_async_callback(node.shell.stop)
        yield nodes


def active(nodes: dict[int, Node]) -> list[Node]:
    return [n for n in nodes.values() if n.shell.is_active]


async def one_controller(nodes: dict[int, Node]) -> Node:
    await until(lambda: len(active(nodes)) == 1, "one controller")
    (controller,) = active(nodes)
    return controller


def assignment(partitions: dict[int, tuple[int, ...]]) -> zp.TopicAssignment:
    return zp.TopicAssignment(
        uuid.uuid4(), {p: zp.ReplicaAssignment(r) for p, r in partitions.items()}
    )


async def states_of(store: ZkStore, topic: str, count: int) -> dict[int, zp.PartitionState | None]:
    return {p: await store.partition_state(topic, p) for p in range(count)}


async def created(store: ZkStore, topic: str, count: int) -> bool:
    return None not in (await states_of(store, topic, count)).values()


# -- tests -----------------------------------------------------------------------


def test_one_controller_writes_states_and_tells_the_replicas(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        recorder = Recorder()
        async with (
            admin_store(zookeeper) as admin,
            cluster(zookeeper, recorder, [1, 2, 3]) as nodes,
        ):
            controller = await one_controller(nodes)
            assert controller.shell.epoch >= 1
            registered = await admin.controller()
            assert registered is not None and registered.broker_id == controller.broker_id
            await admin.create_topic("t", assignment({0: (1, 2), 1: (2, 3), 2: (3, 1)}))
            await until(lambda: created(admin, "t", 3), "partition states")
            states = await states_of(admin, "t", 3)
            for partition, replicas in ((0, (1, 2)), (1, (2, 3)), (2, (3, 1))):
                state = states[partition]
                assert state is not None
                assert (state.leader, tuple(state.isr), state.leader_epoch) == (
                    replicas[0],
                    replicas,
                    0,
                )
                assert state.controller_epoch == controller.shell.epoch

            def told(broker_id: int) -> set[tuple[int, int]]:
                return {
                    (p.partition, p.leader)
                    for r in recorder.of(LeaderAndIsr)
                    if r.broker_id == broker_id
                    for p in r.partitions
                    if p.topic == "t"
                }

            await until(lambda: told(1) == {(0, 1), (2, 3)}, "LeaderAndIsr to broker 1")
            assert told(2) == {(0, 1), (1, 2)} and told(3) == {(1, 2), (2, 3)}
            for r in recorder.of(LeaderAndIsr):
                assert r.broker_epoch == nodes[r.broker_id].epoch
                assert r.controller_epoch == controller.shell.epoch

            def metadata_of_t() -> set[int]:
                return {
                    r.broker_id
                    for r in recorder.of(UpdateMetadata)
                    if any(p.topic == "t" for p in r.partitions)
                }

            await until(lambda: metadata_of_t() == {1, 2, 3}, "UpdateMetadata to every broker")
            others = [s for s, _ in recorder.sent if s != controller.broker_id]
            assert others == [], "only the controller sends requests"

    run(main)


def test_broker_loss_moves_its_leaderships(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        recorder = Recorder()
        async with (
            admin_store(zookeeper) as admin,
            cluster(zookeeper, recorder, [1, 2, 3]) as nodes,
        ):
            controller = await one_controller(nodes)
            gone = next(b for b in nodes if b != controller.broker_id)
            partitions = {p: (gone, b) for p, b in enumerate(b for b in nodes if b != gone)}
            await admin.create_topic("t", assignment(partitions))
            await until(lambda: created(admin, "t", 2), "partition states")
            await nodes[gone].client.close()  # its registration goes with its session

            async def moved() -> bool:
                states = await states_of(admin, "t", 2)
                return all(s is not None and s.leader != gone for s in states.values())

            await until(moved, f"leaders off broker {gone}")
            for partition, (_, survivor) in partitions.items():
                state = await admin.partition_state("t", partition)
                assert state is not None
                assert (state.leader, tuple(state.isr), state.leader_epoch) == (
                    survivor,
                    (survivor,),
                    1,
                )

            def led(broker_id: int) -> set[int]:
                return {
                    p.partition
                    for r in recorder.of(LeaderAndIsr, controller.broker_id)
                    if r.broker_id == broker_id
                    for p in r.partitions
                    if p.leader == broker_id and p.leader_epoch == 1
                }

            for partition, (_, survivor) in partitions.items():
                await until(lambda s=survivor, p=partition: p in led(s), "new leader told")

    run(main)


def test_a_stale_state_among_writes_for_a_lost_broker_is_decided_again(
    zookeeper: ZooKeeper,
) -> None:
    """A broker's loss rewrites the states of all its partitions at once
    (pipelined); one of them changed behind the controller: the others are
    written, that one is re-read and decided again, and the controller stays."""

    async def main() -> None:
        recorder = Recorder()
        async with (
            admin_store(zookeeper) as admin,
            cluster(zookeeper, recorder, [1, 2, 3]) as nodes,
        ):
            controller = await one_controller(nodes)
            gone = next(b for b in nodes if b != controller.broker_id)
            survivor = controller.broker_id
            await admin.create_topic("t", assignment({p: (gone, survivor) for p in range(3)}))
            await until(lambda: created(admin, "t", 3), "partition states")
            before = await admin.partition_state("t", 1)
            assert before is not None
            await admin.client.set(  # the same state, a newer znode version
                zp.partition_state_path("t", 1), zp.encode_partition_state(before)
            )
            await nodes[gone].client.close()

            async def moved() -> bool:
                states = await states_of(admin, "t", 3)
                return all(s is not None and s.leader == survivor for s in states.values())

            await until(moved, f"leaders off broker {gone}")
            for partition in range(3):
                state = await admin.partition_state("t", partition)
                assert state is not None
                assert (tuple(state.isr), state.leader_epoch) == ((survivor,), 1)
            assert controller.shell.is_active

    run(main)


def test_controller_failover_elects_another_with_a_higher_epoch(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        recorder = Recorder()
        async with cluster(zookeeper, recorder, [1, 2, 3]) as nodes:
            first = await one_controller(nodes)
            epoch = first.shell.epoch
            await first.client.close()
            rest = {b: n for b, n in nodes.items() if b != first.broker_id}
            started = time.monotonic()
            second = await one_controller(rest)
            assert time.monotonic() - started < SESSION_MS / 1000 + 3
            assert second.shell.epoch > epoch
            assert not first.shell.is_active

            def told_brokers() -> set[int]:
                return {
                    r.broker_id
                    for r in recorder.of(UpdateMetadata, second.broker_id)
                    if r.controller_epoch == second.shell.epoch
                }

            await until(lambda: told_brokers() == set(rest), "the new controller's UpdateMetadata")

    run(main)


def test_a_fenced_controller_writes_nothing_and_runs_again(zookeeper: ZooKeeper) -> None:
    """Another controller took the epoch while this one still thinks it leads
    (as after a pause past its session): its next write fails the fence, it
    sends nothing more, and it campaigns again with a fresh read."""

    async def main() -> None:
        recorder = Recorder()
        async with admin_store(zookeeper) as admin, cluster(zookeeper, recorder, [1, 2]) as nodes:
            controller = await one_controller(nodes)
            epoch = controller.shell.epoch
            await admin.create_topic("t", assignment({0: (1, 2)}))
            await until(lambda: created(admin, "t", 1), "partition state")
            before = await admin.partition_state("t", 0)
            assert before is not None
            found = await admin.controller_epoch()
            assert found is not None
            await admin.client.set(
                zp.CONTROLLER_EPOCH, zp.encode_controller_epoch(found[0] + 1), found[1]
            )
            sent = len(recorder.sent)
            leader = nodes[before.leader]
            shrink = AlterPartition(
                leader.broker_id,
                leader.epoch,
                (
                    AlterPartitionItem(
                        "t", 0, before.leader_epoch, (before.leader,), before.zk_version
                    ),
                ),
            )
            with pytest.raises(KafkaError) as refused:
                await controller.shell.submit(shrink)
            assert refused.value.code == ErrorCode.NOT_CONTROLLER
            assert await admin.partition_state("t", 0) == before
            assert recorder.sent[sent:] == [] or all(
                r.controller_epoch > epoch for _, r in recorder.sent[sent:]
            )
            again = await one_controller(nodes)
            await until(lambda: again.shell.epoch > found[0] + 1, "a new term")
            reply = await again.shell.submit(shrink)
            assert isinstance(reply, AlterPartitionReply)
            # The leader's partition epoch is still the znode's: it applies.
            assert reply.partitions[0].error == ErrorCode.NONE

    run(main)


def test_an_expired_controller_writes_nothing_and_another_wins(zookeeper: ZooKeeper) -> None:
    """The controller's session expires while it runs: a request it is handed
    then is refused and writes nothing, no request of its goes out, and the
    other broker takes over with a higher epoch."""

    async def main() -> None:
        recorder = Recorder()
        async with admin_store(zookeeper) as admin, cluster(zookeeper, recorder, [1, 2]) as nodes:
            first = await one_controller(nodes)
            epoch = first.shell.epoch
            await admin.create_topic("t", assignment({0: (1, 2)}))
            await until(
                lambda: (
                    {r.broker_id for r in recorder.of(UpdateMetadata) if r.partitions} == {1, 2}
                ),
                "the new topic announced",
            )
            before = await admin.partition_state("t", 0)
            assert before is not None
            session = first.client.session
            assert session is not None
            sent = len(recorder.sent)
            await asyncio.get_running_loop().run_in_executor(
                None, expire_session, zookeeper.server.connect, *session
            )
            shrink = AlterPartition(
                1,
                nodes[1].epoch,
                (AlterPartitionItem("t", 0, before.leader_epoch, (1,), before.zk_version),),
            )
            with pytest.raises(KafkaError) as refused:
                await first.shell.submit(shrink)
            assert refused.value.code == ErrorCode.NOT_CONTROLLER
            other = next(n for b, n in nodes.items() if b != first.broker_id)
            await until(lambda: other.shell.is_active, "the other broker takes over")
            assert other.shell.epoch > epoch
            assert not first.shell.is_active

            async def rewritten() -> bool:
                state = await admin.partition_state("t", 0)
                return state is not None and state.controller_epoch == other.shell.epoch

            # The expired broker's registration went with its session.
            await until(rewritten, "the new controller's state")
            state = await admin.partition_state("t", 0)
            assert state is not None and state.leader == other.broker_id
            assert state.isr == (other.broker_id,)
            assert [s for s, _ in recorder.sent[sent:] if s == first.broker_id] == []
            # Its new session campaigns again: it wins when the other goes.
            second_epoch = other.shell.epoch
            await other.client.close()
            await until(lambda: first.shell.is_active, "the re-campaign in the new session")
            assert first.shell.epoch > second_epoch

    run(main)


def test_topic_deletion_completes_when_replicas_are_deleted(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        recorder = Recorder(hold_stops=True)
        async with admin_store(zookeeper) as admin, cluster(zookeeper, recorder, [1, 2]) as nodes:
            controller = await one_controller(nodes)
            await admin.create_topic("t", assignment({0: (1, 2), 1: (2, 1)}))
            await until(lambda: created(admin, "t", 2), "partition states")
            await admin.mark_topic_for_deletion("t")

            def stopped() -> set[tuple[int, int]]:
                return {
                    (r.broker_id, p.partition)
                    for r in recorder.of(StopReplica, controller.broker_id)
                    for p in r.partitions
                    if p.topic == "t" and p.delete
                }

            await until(lambda: stopped() == {(1, 0), (1, 1), (2, 0), (2, 1)}, "StopReplica")
            assert await admin.topic("t") is not None, "deleted before the replicas were"
            recorder.release_stops()

            async def gone() -> bool:
                return await admin.topic("t") is None and "t" not in (
                    await admin.topics_marked_for_deletion()
                )

            await until(gone, "the topic's znodes and its mark removed")
            assert await admin.partition_state("t", 0) is None

    run(main)


def test_added_partitions_and_unclean_election_follow_zookeeper(zookeeper: ZooKeeper) -> None:
    """CreatePartitions (the assignment znode rewritten) gets the new
    partition a state; a partition whose only ISR member died stays without
    leader until unclean.leader.election.enable is set on the topic."""

    async def main() -> None:
        recorder = Recorder()
        async with (
            admin_store(zookeeper) as admin,
            cluster(zookeeper, recorder, [1, 2, 3]) as nodes,
        ):
            controller = await one_controller(nodes)
            victim = next(b for b in nodes if b != controller.broker_id)
            survivor = next(b for b in nodes if b not in (victim, controller.broker_id))
            await admin.create_topic("t", assignment({0: (victim, survivor)}))
            await until(lambda: created(admin, "t", 1), "partition state")
            found = await admin.topic_with_version("t")
            assert found is not None
            grown = assignment({0: (victim, survivor), 1: (survivor, victim)})
            await admin.set_topic_assignment(
                "t", zp.TopicAssignment(found[0].topic_id, grown.partitions), found[1]
            )
            await until(lambda: created(admin, "t", 2), "the added partition's state")
            state = await admin.partition_state("t", 1)
            assert state is not None and (state.leader, state.isr) == (survivor, (survivor, victim))

            before = await admin.partition_state("t", 0)
            assert before is not None
            reply = await controller.shell.submit(
                AlterPartition(
                    victim,
                    nodes[victim].epoch,
                    (
                        AlterPartitionItem(
                            "t", 0, before.leader_epoch, (victim,), before.zk_version
                        ),
                    ),
                )
            )
            assert isinstance(reply, AlterPartitionReply)
            assert reply.partitions[0].error == ErrorCode.NONE
            await nodes[victim].client.close()

            async def leaderless() -> bool:
                state = await admin.partition_state("t", 0)
                return state is not None and state.leader == zp.NO_LEADER

            await until(leaderless, "partition 0 offline")
            await admin.set_topic_config("t", {"unclean.leader.election.enable": "true"})

            async def unclean_leader() -> bool:
                state = await admin.partition_state("t", 0)
                return state is not None and (state.leader, state.isr) == (survivor, (survivor,))

            await until(unclean_leader, "the surviving replica elected uncleanly")

    run(main)


def test_deletion_waits_for_a_replica_whose_broker_is_down(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        recorder = Recorder()
        async with (
            admin_store(zookeeper) as admin,
            cluster(zookeeper, recorder, [1, 2, 3]) as nodes,
        ):
            controller = await one_controller(nodes)
            down = next(b for b in nodes if b != controller.broker_id)
            await admin.create_topic("t", assignment({0: (controller.broker_id, down)}))
            await until(lambda: created(admin, "t", 1), "partition state")
            await nodes[down].client.close()

            async def departed() -> bool:
                return down not in await admin.live_brokers()

            await until(departed, "the broker's registration gone")
            await admin.mark_topic_for_deletion("t")
            await until(
                lambda: any(
                    r.broker_id == controller.broker_id and any(p.delete for p in r.partitions)
                    for r in recorder.of(StopReplica)
                ),
                "the live replica deleted",
            )
            assert await admin.topic("t") is not None, "one replica is still on a dead broker"
            # The broker comes back in a new session, with a new epoch.
            async with admin_store(zookeeper) as returning:
                epoch = await returning.register_broker(
                    zp.BrokerRegistration(down, (zp.Endpoint("PLAINTEXT", "127.0.0.1", 9000),))
                )
                assert epoch > nodes[down].epoch

                async def gone() -> bool:
                    return await admin.topic("t") is None

                await until(gone, "the deletion finished")
                assert any(
                    r.broker_id == down and r.broker_epoch == epoch and r.partitions[0].delete
                    for r in recorder.of(StopReplica)
                )

    run(main)


def test_a_lost_conditional_write_is_decided_again_from_a_fresh_read(zookeeper: ZooKeeper) -> None:
    """The state znode changed behind the controller (here: to the very ISR
    the leader then asks for): the write conditional on the old version
    loses, the shell re-reads and feeds PartitionStatesStale, and the leader
    is answered from the state now in ZooKeeper."""

    async def main() -> None:
        recorder = Recorder()
        async with admin_store(zookeeper) as admin, cluster(zookeeper, recorder, [1, 2]) as nodes:
            controller = await one_controller(nodes)
            await admin.create_topic("t", assignment({0: (1, 2)}))
            await until(lambda: created(admin, "t", 1), "partition state")
            before = await admin.partition_state("t", 0)
            assert before is not None
            behind = zp.PartitionState(1, before.leader_epoch, (1,), before.controller_epoch)
            await admin.client.set(
                zp.partition_state_path("t", 0),
                zp.encode_partition_state(behind),
                before.zk_version,
            )
            reply = await controller.shell.submit(
                AlterPartition(
                    1,
                    nodes[1].epoch,
                    (AlterPartitionItem("t", 0, before.leader_epoch, (1,), before.zk_version),),
                )
            )
            assert isinstance(reply, AlterPartitionReply)
            (result,) = reply.partitions
            assert (result.error, result.isr, result.partition_epoch) == (
                ErrorCode.NONE,
                (1,),
                before.zk_version + 1,
            )
            after = await admin.partition_state("t", 0)
            assert after is not None and after.zk_version == before.zk_version + 1
            assert controller.shell.is_active

    run(main)


def test_a_deleted_controller_znode_starts_a_new_term(zookeeper: ZooKeeper) -> None:
    """An operator deletes /controller (Kafka's way to force a re-election):
    the controller ends its term, campaigns, and announces a new epoch."""

    async def main() -> None:
        recorder = Recorder()
        async with admin_store(zookeeper) as admin, cluster(zookeeper, recorder, [1]) as nodes:
            node = await one_controller(nodes)
            epoch = node.shell.epoch
            await admin.client.delete(zp.CONTROLLER)
            await until(lambda: node.shell.epoch > epoch, "a new term")
            await until(
                lambda: any(
                    r.controller_epoch == node.shell.epoch for r in recorder.of(UpdateMetadata)
                ),
                "the new epoch announced",
            )
            registered = await admin.controller()
            assert registered is not None and registered.broker_id == 1

    run(main)


def test_an_isr_change_notification_is_taken_and_consumed(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        recorder = Recorder()
        async with admin_store(zookeeper) as admin, cluster(zookeeper, recorder, [1, 2]) as nodes:
            await one_controller(nodes)
            await admin.create_topic("t", assignment({0: (1, 2)}))
            await until(lambda: created(admin, "t", 1), "partition state")
            before = await admin.partition_state("t", 0)
            assert before is not None
            shrunk = zp.PartitionState(1, before.leader_epoch, (1,), before.controller_epoch)
            await admin.client.set(
                zp.partition_state_path("t", 0), zp.encode_partition_state(shrunk)
            )
            await admin.client.create(
                zp.isr_change_create_path(), zp.encode_isr_change([("t", 0)]), sequence=True
            )

            def announced() -> set[int]:
                return {
                    r.broker_id
                    for r in recorder.of(UpdateMetadata)
                    for p in r.partitions
                    if p.topic == "t" and p.isr == (1,)
                }

            await until(lambda: announced() == {1, 2}, "the new ISR announced")

            async def consumed() -> bool:
                return await admin.client.children(zp.ISR_CHANGE_NOTIFICATION) == []

            await until(consumed, "the notification deleted")

    run(main)


# -- channels --------------------------------------------------------------------


def metadata(broker_id: int, epoch: int, n: int) -> UpdateMetadata:
    """A distinguishable request: ``n`` rides in the controller epoch."""
    return UpdateMetadata(broker_id, 9, n, epoch, (), ())


def live(broker_id: int, epoch: int = 1) -> LiveBroker:
    return LiveBroker(broker_id, epoch, (zp.Endpoint("PLAINTEXT", "127.0.0.1", 1),))


def test_channels_keep_order_per_broker_and_retry_while_live() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        failures = {2: 2}  # broker 2's first request fails twice
        delivered: list[tuple[int, int]] = []
        attempts: list[tuple[int, int]] = []

        async def transport(broker: LiveBroker, request: BrokerRequest) -> Message:
            assert isinstance(request, UpdateMetadata)
            attempts.append((broker.broker_id, request.controller_epoch))
            if broker.broker_id == 1 and request.controller_epoch == 0:
                await gate.wait()  # broker 1 is slow to answer its first request
            if failures.get(broker.broker_id, 0) > 0:
                failures[broker.broker_id] -= 1
                raise ConnectionError("refused")
            delivered.append((broker.broker_id, request.controller_epoch))
            return {"error_code": 0}

        answers: list[int] = []
        channels = BrokerChannels(transport=transport, retry_backoff_ms=1, retry_backoff_max_ms=5)
        try:
            channels.update_brokers({1: live(1), 2: live(2)})
            for n in range(3):
                channels.send(metadata(1, 1, n), lambda m, n=n: answers.append(n))
                channels.send(metadata(2, 1, n))
            channels.send(metadata(3, 1, 0))  # no channel: dropped
            await until(
                lambda: [d for d in delivered if d[0] == 2] == [(2, 0), (2, 1), (2, 2)],
                "broker 2 served while broker 1 is slow",
            )
            assert attempts.count((2, 0)) == 3 and not [d for d in delivered if d[0] == 1]
            gate.set()
            await until(lambda: answers == [0, 1, 2], "broker 1's answers in order")
            assert [d for d in delivered if d[0] == 1] == [(1, 0), (1, 1), (1, 2)]
            assert all(b != 3 for b, _ in attempts)
        finally:
            await channels.close()

    run(main)


def test_channels_drop_the_queue_of_a_broker_gone_or_restarted() -> None:
    async def main() -> None:
        attempts: list[tuple[int, int, int]] = []

        async def transport(broker: LiveBroker, request: BrokerRequest) -> Message:
            attempts.append((broker.broker_id, broker.epoch, request.controller_epoch))
            if broker.epoch == 1:
                raise ConnectionError("down")
            return {"error_code": 0}

        channels = BrokerChannels(transport=transport, retry_backoff_ms=1, retry_backoff_max_ms=5)
        try:
            channels.update_brokers({1: live(1, epoch=1)})
            channels.send(metadata(1, 1, 0))
            channels.send(metadata(1, 1, 1))
            await until(lambda: len(attempts) >= 2, "retries")
            assert {a[2] for a in attempts} == {0}, "the second waits behind the first"
            channels.update_brokers({1: live(1, epoch=2)})  # restarted
            tried = len(attempts)
            channels.send(metadata(1, 2, 2))
            await until(lambda: (1, 2, 2) in attempts, "the new life's request")
            assert all(a[1] == 2 for a in attempts[tried:]), "the old queue was dropped"
            channels.update_brokers({})
            assert channels.brokers() == {}
        finally:
            await channels.close()

    run(main)
