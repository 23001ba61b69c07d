"""The typed ZooKeeper store against a real ZooKeeper: elections, fencing,
conditional writes, producer id blocks, ephemeral registrations."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from moldau.cluster.controller.context import LiveBroker
from moldau.cluster.local_zookeeper import ZooKeeperServer
from moldau.cluster.zk import paths as zp
from moldau.cluster.zk.client import SessionState, ZkClient
from moldau.cluster.zk.store import (
    BrokerIdInUse,
    ControllerMoved,
    StaleVersion,
    TopicExists,
    ZkStore,
)
from support.zookeeper import ZooKeeper, expire_session

pytestmark = pytest.mark.cluster

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout)

    return asyncio.run(bounded())


@asynccontextmanager
async def store(zookeeper: ZooKeeper, session_ms: int = 6000) -> AsyncIterator[ZkStore]:
    client = ZkClient(zookeeper.connect, session_timeout_ms=session_ms)
    await client.start()
    try:
        s = ZkStore(client)
        await s.create_top_level_paths()
        yield s
    finally:
        await client.close()


def registration(broker_id: int, rack: str | None = None) -> zp.BrokerRegistration:
    return zp.BrokerRegistration(
        broker_id, (zp.Endpoint("PLAINTEXT", "127.0.0.1", 9000 + broker_id),), rack, 1
    )


def test_chroot_is_created_and_top_level_paths_exist(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as s:
            assert await s.broker_ids() == []
            assert await s.topics() == []
            assert await s.client.exists(zp.PRODUCER_ID_BLOCK) is not None

    run(main)


def test_two_stores_race_for_controller_and_one_wins(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as a, store(zookeeper) as b:
            outcomes = await asyncio.gather(
                a.elect_controller(1, 100), b.elect_controller(2, 100), return_exceptions=True
            )
            leases = [o for o in outcomes if not isinstance(o, BaseException)]
            lost = [o for o in outcomes if isinstance(o, BaseException)]
            assert len(leases) == 1, outcomes
            assert len(lost) == 1 and isinstance(lost[0], ControllerMoved), outcomes
            (lease,) = leases
            assert lease.epoch == 1
            controller = await a.controller()
            assert controller is not None and controller.broker_id == lease.broker_id
            assert await a.controller_epoch() == (1, lease.epoch_zk_version)

    run(main)


def test_deposed_controller_cannot_write(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as admin:
            await admin.create_topic(
                "t", zp.TopicAssignment(uuid.uuid4(), {0: zp.ReplicaAssignment((1, 2))})
            )
            async with store(zookeeper) as old:
                old_lease = await old.elect_controller(1, 1)
                await old.create_partition_states(
                    "t", {0: zp.PartitionState(1, 0, (1, 2), old_lease.epoch)}, old_lease
                )
            # Closing the old controller's session deleted /controller.
            async with store(zookeeper) as new:
                new_lease = await new.elect_controller(2, 2)
                assert new_lease.epoch == old_lease.epoch + 1
                state = await new.partition_state("t", 0)
                assert state is not None
                # The old controller comes back (new session, old lease): fenced.
                async with store(zookeeper) as zombie:
                    with pytest.raises(ControllerMoved):
                        await zombie.update_partition_state(
                            "t",
                            0,
                            zp.PartitionState(2, 1, (2,), old_lease.epoch, 0, 0),
                            old_lease,
                        )
                    with pytest.raises(ControllerMoved):
                        await zombie.create_partition_states(
                            "t", {1: zp.PartitionState(1, 0, (1,), old_lease.epoch)}, old_lease
                        )
                    with pytest.raises(ControllerMoved):
                        await zombie.resign_controller(old_lease)
                assert await new.partition_state("t", 0) == state
                assert await new.client.exists(zp.partition_path("t", 1)) is None
                controller = await new.controller()
                assert controller is not None and controller.broker_id == 2
                # The current controller's writes go through.
                moved = await new.update_partition_state(
                    "t",
                    0,
                    zp.PartitionState(2, 1, (2,), new_lease.epoch, 0, state.zk_version),
                    new_lease,
                )
                assert moved.zk_version == state.zk_version + 1
                await new.resign_controller(new_lease)
                assert await new.controller() is None

    run(main)


def test_partition_state_writes_are_conditional(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as s:
            lease = await s.elect_controller(1, 1)
            await s.create_topic(
                "t", zp.TopicAssignment(None, {0: zp.ReplicaAssignment((1, 2, 3))})
            )
            await s.create_partition_states(
                "t", {0: zp.PartitionState(1, 0, (1, 2, 3), lease.epoch)}, lease
            )
            read = await s.partition_state("t", 0)
            assert read == zp.PartitionState(1, 0, (1, 2, 3), 1, zp.RECOVERED, 0)
            first = zp.PartitionState(1, 0, (1, 2), lease.epoch, zk_version=read.zk_version)
            second = zp.PartitionState(1, 0, (1, 3), lease.epoch, zk_version=read.zk_version)
            written = await s.update_partition_state("t", 0, first, lease)
            assert written.zk_version == 1
            with pytest.raises(StaleVersion):
                await s.update_partition_state("t", 0, second, lease)
            assert await s.partition_state("t", 0) == written

    run(main)


def test_producer_id_blocks_are_unique_under_concurrency(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as a, store(zookeeper) as b, store(zookeeper) as c:
            calls = [
                s.allocate_producer_id_block(i) for i, s in enumerate((a, b, c)) for _ in range(6)
            ]
            blocks = await asyncio.gather(*calls)
        starts = sorted(block.first for block in blocks)
        assert starts == [i * zp.PRODUCER_ID_BLOCK_SIZE for i in range(18)]
        async with store(zookeeper) as later:  # a restart goes on from the last block
            assert (await later.allocate_producer_id_block(9)).first == 18_000

    run(main)


def test_cluster_id_and_generated_broker_ids(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as a, store(zookeeper) as b:
            ids = await asyncio.gather(
                a.get_or_create_cluster_id(lambda: "first"),
                b.get_or_create_cluster_id(lambda: "second"),
            )
            assert ids[0] == ids[1] and ids[0] in ("first", "second")
            assert await a.get_or_create_cluster_id(lambda: "third") == ids[0]
            generated = [await a.generate_broker_id(), await b.generate_broker_id()]
            assert generated == [1001, 1002]

    run(main)


def test_topics_configs_and_deletion_marks(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as s:
            topic = zp.TopicAssignment(uuid.uuid4(), {0: zp.ReplicaAssignment((1,))})
            await s.create_topic("t", topic, {"retention.ms": "1000"})
            with pytest.raises(TopicExists):
                await s.create_topic("t", topic)
            assert await s.topic("t") == topic
            assert await s.topic_config("t") == {"retention.ms": "1000"}
            await s.set_topic_config("t", {"retention.ms": "5"})
            assert await s.topic_config("t") == {"retention.ms": "5"}
            (change,) = await s.client.children(zp.CONFIG_CHANGES)
            assert change.startswith(zp.CONFIG_CHANGE_PREFIX)
            data, _ = await s.client.get(f"{zp.CONFIG_CHANGES}/{change}")
            assert zp.decode_config_change(data) == ("topics", "t")
            await s.mark_topic_for_deletion("t")
            await s.mark_topic_for_deletion("t")
            with pytest.raises(TopicExists):
                await s.create_topic("t", topic)

    run(main)


def test_session_expiry_removes_the_broker_registration(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as broker, store(zookeeper) as controller:
            loop_thread = threading.get_ident()
            states: asyncio.Queue[SessionState] = asyncio.Queue()
            broker.client.on_state(states.put_nowait)
            epoch = await broker.register_broker(registration(1, "r1"))
            assert epoch > 0
            with pytest.raises(BrokerIdInUse):
                await controller.register_broker(registration(1))
            assert await controller.brokers() == {1: registration(1, "r1")}
            changed = asyncio.Event()
            threads: list[int] = []

            def on_change(event: object) -> None:
                threads.append(threading.get_ident())
                changed.set()

            assert await controller.broker_ids(watch=on_change) == [1]
            session = broker.client.session
            assert session is not None
            await asyncio.get_running_loop().run_in_executor(
                None, expire_session, zookeeper.server.connect, *session
            )
            await changed.wait()
            assert threads == [loop_thread], "a watch must run on the event loop"
            assert await controller.broker_ids() == []
            while await states.get() is not SessionState.LOST:
                pass
            # A new session: the broker registers again, with a new epoch.
            while await states.get() is not SessionState.CONNECTED:
                pass
            assert await broker.register_broker(registration(1, "r1")) > epoch

    run(main)


def test_topic_deletion_is_fenced_and_complete(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as s:
            old = await s.elect_controller(1, 1)
            await s.client.delete(zp.CONTROLLER)  # as if its session ended
            lease = await s.elect_controller(1, 2)
            states = {p: zp.PartitionState(1, 0, (1,), lease.epoch) for p in range(5)}
            topic = zp.TopicAssignment(
                uuid.uuid4(), {p: zp.ReplicaAssignment((1,)) for p in states}
            )
            await s.create_topic("t", topic, {"retention.ms": "1"})
            await s.create_partition_states("t", states, lease)
            await s.mark_topic_for_deletion("t")
            assert await s.topics_marked_for_deletion() == ["t"]
            with pytest.raises(ControllerMoved):
                await s.delete_topic("t", old, batch=2)
            assert await s.partition_state("t", 0) is not None
            await s.delete_topic("t", lease, batch=2)
            assert await s.topics() == []
            assert await s.topics_marked_for_deletion() == []
            assert await s.client.exists(zp.topic_config_path("t")) is None
            await s.delete_topic("t", lease)  # finishing twice is harmless

    run(main)


def test_partition_increase_is_conditional(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as a, store(zookeeper) as b:
            topic = zp.TopicAssignment(uuid.uuid4(), {0: zp.ReplicaAssignment((1,))})
            await a.create_topic("t", topic)
            read_a, read_b = await a.topic_with_version("t"), await b.topic_with_version("t")
            assert read_a is not None and read_b is not None
            grown = zp.TopicAssignment(
                topic.topic_id, {**topic.partitions, 1: zp.ReplicaAssignment((2,))}
            )
            assert await a.set_topic_assignment("t", grown, read_a[1]) == read_a[1] + 1
            with pytest.raises(StaleVersion):
                await b.set_topic_assignment("t", topic, read_b[1])
            assert await b.topic("t") == grown

    run(main)


def test_live_brokers_carry_their_epochs(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as a, store(zookeeper) as b, store(zookeeper) as reader:
            epoch_a = await a.register_broker(registration(1, "r1"))
            epoch_b = await b.register_broker(registration(2))
            live = await reader.live_brokers()
            assert live == {
                1: LiveBroker(1, epoch_a, registration(1).endpoints, "r1"),
                2: LiveBroker(2, epoch_b, registration(2).endpoints, None),
            }
            assert epoch_a != epoch_b

    run(main)


def test_deletion_marks_are_removed_fenced(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as s:
            old = await s.elect_controller(1, 1)
            await s.client.delete(zp.CONTROLLER)
            lease = await s.elect_controller(1, 2)
            for topic in ("gone", "also-gone"):
                await s.mark_topic_for_deletion(topic)
            with pytest.raises(ControllerMoved):
                await s.remove_deletion_marks(old, {"gone"})
            assert await s.topics_marked_for_deletion() == ["also-gone", "gone"]
            await s.remove_deletion_marks(lease, {"gone", "never-marked"})
            assert await s.topics_marked_for_deletion() == ["also-gone"]

    run(main)


def test_own_controller_znode_is_released_only_by_its_session(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as holder, store(zookeeper) as other:
            await holder.elect_controller(1, 1)
            assert not await other.release_own_controller()
            assert await other.controller() is not None
            assert await holder.release_own_controller()
            assert await holder.controller() is None

    run(main)


def test_isr_and_config_notifications(zookeeper: ZooKeeper) -> None:
    async def main() -> None:
        async with store(zookeeper) as s:
            for partitions in ([("t", 0), ("t", 1)], [("u", 0)]):
                await s.client.create(
                    zp.isr_change_create_path(), zp.encode_isr_change(partitions), sequence=True
                )
            assert await s.take_isr_changes() == {("t", 0), ("t", 1), ("u", 0)}
            assert await s.client.children(zp.ISR_CHANGE_NOTIFICATION) == []
            topic = zp.TopicAssignment(uuid.uuid4(), {0: zp.ReplicaAssignment((1,))})
            await s.create_topic("t", topic)
            await s.set_topic_config("t", {"unclean.leader.election.enable": "true"})
            await s.set_topic_config("t", {})
            names = await s.config_changes()
            assert len(names) == 2 and names == sorted(names)
            assert [await s.config_change(n) for n in names] == [("topics", "t")] * 2
            assert await s.config_change("config_change_9999999999") is None

    run(main)


def test_reassignment_writes_keep_the_other_partitions_and_are_fenced(
    zookeeper: ZooKeeper,
) -> None:
    async def main() -> None:
        async with store(zookeeper) as s, store(zookeeper) as other:
            old = await s.elect_controller(1, 1)
            await s.client.delete(zp.CONTROLLER)
            lease = await s.elect_controller(1, 2)
            topic = zp.TopicAssignment(uuid.uuid4(), {0: zp.ReplicaAssignment((1, 2))})
            await s.create_topic("r", topic)
            # CreatePartitions elsewhere, after the controller last read the topic
            read = await other.topic_with_version("r")
            assert read is not None
            grown = {**topic.partitions, 1: zp.ReplicaAssignment((3,))}
            bigger = zp.TopicAssignment(topic.topic_id, grown)
            await other.set_topic_assignment("r", bigger, read[1])
            moving = zp.ReplicaAssignment((2, 3, 1), (3,), (1,))
            with pytest.raises(ControllerMoved):
                await s.update_topic_partitions("r", {0: moving}, old)
            await s.update_topic_partitions("r", {0: moving}, lease)
            assert await s.topic("r") == zp.TopicAssignment(topic.topic_id, {**grown, 0: moving})
            await s.update_topic_partitions("gone", {0: moving}, lease)  # nothing to write

            targets = {("r", 0): (2, 3), ("r", 1): (1,), ("q", 0): (1,)}
            await s.client.create(zp.REASSIGN_PARTITIONS, zp.encode_reassignment(targets))
            found = await s.partition_reassignment()
            assert found is not None and found[1] == targets
            with pytest.raises(ControllerMoved):
                await s.remove_partition_reassignments({("q", 0): None}, old)
            # only while the target there is the one done
            await s.remove_partition_reassignments({("r", 0): (2, 3), ("r", 1): (9,)}, lease)
            again = await s.partition_reassignment()
            assert again == (found[0], {("r", 1): (1,), ("q", 0): (1,)})
            await s.remove_partition_reassignments({("r", 1): None, ("q", 0): None}, lease)
            assert await s.partition_reassignment() is None
            await s.remove_partition_reassignments({("r", 1): None}, lease)  # no znode: fine

    run(main)


def test_work_through_zookeeper_is_given_up_when_the_connection_drops(tmp_path: Path) -> None:
    """What a stopping broker does through ZooKeeper must not wait for its
    return: a request in flight when the server stops answering is given
    up as soon as the client notices, and one asked after is not started."""
    server = ZooKeeperServer(tmp_path / "zookeeper")
    server.start()
    try:

        async def main() -> None:
            client = ZkClient(server.connect, session_timeout_ms=3000)
            await client.start()
            try:
                assert await client.unless_away(client.exists("/"))
                server.pause()  # the connection stays open; kazoo notices by its pings
                assert client.connected
                started = time.monotonic()
                assert not await client.unless_away(client.exists("/"))
                assert time.monotonic() - started < 10
                assert not await client.unless_away(client.exists("/"))
            finally:
                server.resume()
                await client.close()

        run(main)
    finally:
        server.stop()
