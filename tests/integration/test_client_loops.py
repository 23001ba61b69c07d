"""moldau's Python client against a real broker, on uvloop and on asyncio's
own loop: produce, consume, and consume as a group member.

``linger_ms=0`` puts every new batch's deadline in the past by the time the
producer arms its timer, the case that crashed ``moldau produce`` on uvloop
(its ``call_at`` then returns a plain Handle).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from conftest import LOOP_FACTORIES
from moldau.client.admin import Admin
from moldau.client.consumer import Consumer
from moldau.client.group_member import GroupConsumer
from moldau.client.producer import Producer
from moldau.client.types import TopicPartition

PARTITIONS = 3
COUNT = 300


def run(loop_kind: str, coro: object) -> None:
    with asyncio.Runner(loop_factory=LOOP_FACTORIES[loop_kind]) as runner:
        runner.run(coro)  # type: ignore[arg-type]


async def produce(bootstrap: str, topic: str) -> set[tuple[int, int]]:
    async with Admin(bootstrap) as admin:
        await admin.create_topic(topic, PARTITIONS, 1)
    async with Producer(bootstrap, linger_ms=0, partitioner="round-robin") as producer:
        futures = [await producer.send(topic, b"v%d" % i) for i in range(COUNT)]
        await producer.flush()
    return {(m.partition, m.offset) for m in [f.result() for f in futures]}


@pytest.mark.parametrize("loop_kind", list(LOOP_FACTORIES))
def test_produce_then_consume_every_record(moldau_broker: str, loop_kind: str) -> None:
    topic = f"loops-{loop_kind}-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        sent = await produce(moldau_broker, topic)
        assert len(sent) == COUNT and {p for p, _ in sent} == set(range(PARTITIONS))
        got: set[tuple[int, int]] = set()
        async with Consumer(moldau_broker, auto_offset_reset="earliest") as consumer:
            consumer.assign(TopicPartition(topic, p) for p in range(PARTITIONS))
            while len(got) < COUNT:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 10)
                got |= {(r.partition, r.offset) for rs in batches.values() for r in rs}
        assert got == sent

    run(loop_kind, scenario())


@pytest.mark.parametrize("loop_kind", list(LOOP_FACTORIES))
def test_a_group_member_reads_commits_and_a_successor_resumes(
    moldau_broker: str, loop_kind: str
) -> None:
    topic = f"loops-group-{loop_kind}-{uuid.uuid4().hex[:8]}"
    group = f"g-{topic}"

    async def read(member: GroupConsumer, want: int) -> set[tuple[int, int]]:
        got: set[tuple[int, int]] = set()
        while len(got) < want:
            batches = await asyncio.wait_for(member.getmany(timeout_ms=1000), 15)
            got |= {(r.partition, r.offset) for rs in batches.values() for r in rs}
            assert await member.commit(batches)
        return got

    async def scenario() -> None:
        sent = await produce(moldau_broker, topic)
        async with GroupConsumer(
            moldau_broker, group, [topic], auto_offset_reset="earliest"
        ) as first:
            assert await read(first, COUNT) == sent
            assert len(first.assignment()) == PARTITIONS
        more = await produce_more(moldau_broker, topic)
        async with GroupConsumer(
            moldau_broker, group, [topic], auto_offset_reset="earliest"
        ) as second:
            assert await read(second, len(more)) == more  # from the commits on

    run(loop_kind, scenario())


async def produce_more(bootstrap: str, topic: str) -> set[tuple[int, int]]:
    async with Producer(bootstrap, linger_ms=0) as producer:
        futures = [await producer.send(topic, b"more", key=b"k%d" % i) for i in range(30)]
        await producer.flush()
    return {(f.result().partition, f.result().offset) for f in futures}
