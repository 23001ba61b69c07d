"""FetchPurgatory.read_when_ready: re-reads on wakes, answers at its deadline,
leaves nothing registered, on both event loops."""

from __future__ import annotations

import asyncio

from test_client_support import in_loop

from moldau.broker.purgatory import FetchPurgatory

KEY = ("t", 0)


@in_loop
async def test_a_wake_reruns_the_read_until_it_is_ready() -> None:
    purgatory = FetchPurgatory()
    reads: list[int] = []

    def read() -> tuple[int, bool]:
        reads.append(len(reads))
        return len(reads), len(reads) >= 3

    waiting = asyncio.ensure_future(purgatory.read_when_ready([KEY], read, 60_000))
    for expected in (1, 2):
        while len(reads) < expected:
            await asyncio.sleep(0)
        purgatory.wake(KEY)
    assert await asyncio.wait_for(waiting, 5) == 3
    assert not purgatory._waiters


@in_loop
async def test_never_ready_answers_the_last_read_at_the_deadline() -> None:
    purgatory = FetchPurgatory()
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await asyncio.wait_for(
        purgatory.read_when_ready([KEY, ("t", 1)], lambda: ("empty", False), 50), 5
    )
    assert answer == "empty"
    assert loop.time() - started >= 0.045  # uvloop's timers round to milliseconds
    assert not purgatory._waiters


@in_loop
async def test_a_cancelled_wait_leaves_nothing_registered() -> None:
    purgatory = FetchPurgatory()
    waiting = asyncio.ensure_future(purgatory.read_when_ready([KEY], lambda: (0, False), 60_000))
    while not purgatory._waiters:
        await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert not purgatory._waiters
