"""Read whole partitions as they are now: what the admin tools do with the
logs brokers keep for people (``__moldau_group_history``) and the ones Kafka
keeps in its own formats (``__transaction_state``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from moldau.protocol.errors import ErrorCode, KafkaError

from .cluster import Cluster
from .consumer import Consumer
from .offsets import list_offsets
from .types import ConsumerRecord, TopicPartition


async def read_to_end(
    cluster: Cluster, partitions: Sequence[TopicPartition], timeout_ms: int
) -> list[ConsumerRecord]:
    """Every record of ``partitions`` from their start to their log end as of
    now, partition by partition in offset order; REQUEST_TIMED_OUT if that
    takes longer than ``timeout_ms``."""
    ends = {
        tp: answer.offset
        for tp, answer in (
            await list_offsets(cluster, dict.fromkeys(partitions, "latest"), timeout_ms=timeout_ms)
        ).items()
    }
    consumer = Consumer(cluster=cluster, auto_offset_reset="earliest")
    consumer.assign(list(ends))
    found: list[ConsumerRecord] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    try:
        while any([await consumer.position(tp) < end for tp, end in ends.items()]):
            if loop.time() > deadline:
                names = ", ".join(sorted({tp.topic for tp in ends}))
                raise KafkaError(ErrorCode.REQUEST_TIMED_OUT, f"reading {names} took too long")
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                found.extend(r for r in records if r.offset < ends[tp])
    finally:
        await consumer.close()
    return found
