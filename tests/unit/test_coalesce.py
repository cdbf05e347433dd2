"""The coalescer of calls made together (PostgreSQL starts, the sidecar's completions):
a lone item goes at once, items that arrive while a batch is in flight go together in
the next one, each caller gets its own result, and a failed batch fails only its own
callers."""

from __future__ import annotations

import asyncio

import pytest

from taskloom.storage.coalesce import BATCH, Coalescer


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next = False

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("store down")
        return [i * 10 for i in items]


async def test_a_lone_item_goes_at_once() -> None:
    rec = Recorder()
    group: Coalescer[int, int] = Coalescer(rec.run, "t")
    assert await group.submit(1) == 10
    assert rec.batches == [[1]]


async def test_items_behind_a_batch_in_flight_share_the_next_one() -> None:
    rec = Recorder()
    group: Coalescer[int, int] = Coalescer(rec.run, "t")
    rec.gate.clear()
    first = asyncio.create_task(group.submit(0))
    while not rec.batches:
        await asyncio.sleep(0)
    rest = [asyncio.create_task(group.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)
    rec.gate.set()
    assert await first == 0
    assert [await t for t in rest] == [10, 20, 30, 40, 50]
    assert rec.batches == [[0], [1, 2, 3, 4, 5]]


async def test_a_failed_batch_fails_its_callers_only() -> None:
    rec = Recorder()
    group: Coalescer[int, int] = Coalescer(rec.run, "t")
    rec.gate.clear()
    rec.fail_next = True
    doomed = asyncio.create_task(group.submit(1))
    while not rec.batches:
        await asyncio.sleep(0)
    later = asyncio.create_task(group.submit(2))
    await asyncio.sleep(0)
    rec.gate.set()
    with pytest.raises(RuntimeError, match="store down"):
        await doomed
    assert await later == 20


async def test_batches_are_cut_at_the_limit() -> None:
    rec = Recorder()
    group: Coalescer[int, int] = Coalescer(rec.run, "t")
    rec.gate.clear()
    tasks = [asyncio.create_task(group.submit(i)) for i in range(BATCH + 5)]
    while not rec.batches:
        await asyncio.sleep(0)
    rec.gate.set()
    assert [await t for t in tasks] == [i * 10 for i in range(BATCH + 5)]
    assert [len(b) for b in rec.batches] == [BATCH, 5]
