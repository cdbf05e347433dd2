"""PostgreSQL: a reader following the log by position never skips an event, while
several processes append concurrently, some transactions roll back and one is held open
for seconds before it commits; concurrent multi-stream appends never deadlock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from backends import PG_URL, require_postgres

from taskloom.errors import WrongExpectedVersionError
from taskloom.events.records import ANY, NO_STREAM, ExpectedVersion
from taskloom.storage import open_store
from taskloom.storage.events_base import EventData, EventLogStore, StreamAppend

pytestmark = pytest.mark.postgres

APPENDER = Path(__file__).with_name("event_appender.py")


async def test_reader_sees_every_committed_event_once_under_concurrent_appends() -> None:
    require_postgres()
    hub = "gap" + uuid.uuid4().hex[:10]
    store = open_store(PG_URL, hub=hub)
    await store.open()
    assert isinstance(store, EventLogStore)
    procs = [
        subprocess.Popen(
            [sys.executable, str(APPENDER), PG_URL, hub, str(w), "60", "1" if w == 0 else "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    seen: list[int] = []
    checkpoint = 0
    try:
        deadline = time.monotonic() + 60
        while any(p.poll() is None for p in procs):
            assert time.monotonic() < deadline, "appenders did not finish in 60 s"
            batch = await store.read_log(checkpoint, 50)
            seen += [e.position for e in batch]
            if batch:
                checkpoint = batch[-1].position
            else:
                await asyncio.sleep(0.005)
        while batch := await store.read_log(checkpoint, 500):
            seen += [e.position for e in batch]
            checkpoint = batch[-1].position
        committed = sum(int(p.communicate()[0]) for p in procs)
        assert all(p.returncode == 0 for p in procs)
        everything = [e.position for e in await store.read_log(0, 100_000)]
        assert len(everything) == committed == 4 * 48 * 3
        assert seen == everything  # each once, in order, none skipped
    finally:
        for p in procs:
            p.kill()
        await store.close()


async def test_multi_stream_appends_in_opposite_orders_do_not_deadlock() -> None:
    require_postgres()
    hub = "dl" + uuid.uuid4().hex[:10]
    store = open_store(PG_URL, hub=hub)
    await store.open()
    assert isinstance(store, EventLogStore)

    async def writer(order: list[str], tag: str) -> None:
        for i in range(30):
            appends = [
                StreamAppend(sid, ANY, (EventData(f"{tag}-{i}-{sid}", "T", "{}"),)) for sid in order
            ]
            await store.append_events(appends, datetime.now(UTC))

    try:
        await asyncio.gather(
            writer(["a", "b", "c"], "x"), writer(["c", "b", "a"], "y"), writer(["b", "a"], "z")
        )
        assert [await store.stream_version(s) for s in "abc"] == [90, 90, 60]
    finally:
        await store.close()


def _one(stream: str, event_id: str, expected: ExpectedVersion = ANY) -> StreamAppend:
    return StreamAppend(stream, expected, (EventData(event_id, "T", "{}"),))


async def test_concurrent_appends_of_one_store_are_each_checked_and_followed_gap_free() -> None:
    """Concurrent hook-less appends of one store share commits (AppendGroup); each is
    still checked on its own: optimistic writers racing for one stream's versions lose
    exactly when they should, and a reader following the log skips nothing."""
    require_postgres()
    store = open_store(PG_URL, hub="grp" + uuid.uuid4().hex[:10])
    await store.open()
    assert isinstance(store, EventLogStore)
    refusals = 0

    async def racer(tag: str) -> None:
        nonlocal refusals
        done = 0
        while done < 5:
            version = await store.stream_version("hot")
            try:
                await store.append_events(
                    [
                        _one("hot", f"{tag}-{done}", version or NO_STREAM),
                        _one(tag, f"{tag}-{done}"),
                    ],
                    datetime.now(UTC),
                )
                done += 1
            except WrongExpectedVersionError as exc:
                assert exc.actual > version  # someone else took the version
                refusals += 1

    seen: list[int] = []

    async def reader(until: asyncio.Event) -> None:
        checkpoint = 0
        while True:
            finished = until.is_set()
            batch = await store.read_log(checkpoint, 100)
            seen.extend(e.position for e in batch)
            checkpoint = batch[-1].position if batch else checkpoint
            if finished and not batch:
                return
            if not batch:
                await asyncio.sleep(0.002)

    try:
        stop = asyncio.Event()
        follow = asyncio.create_task(reader(stop))
        await asyncio.wait_for(asyncio.gather(*(racer(f"r{i}") for i in range(12))), 30)
        stop.set()
        await asyncio.wait_for(follow, 30)
        hot = await store.read_stream("hot", None, False, None)
        assert [e.version for e in hot] == list(range(1, 61))
        assert sorted(e.id for e in hot) == sorted(f"r{i}-{k}" for i in range(12) for k in range(5))
        assert refusals > 0  # the race happened
        everything = [e.position for e in await store.read_log(0, 10_000)]
        assert len(everything) == 120
        assert seen == everything
    finally:
        await store.close()


async def test_repeated_appends_return_the_first_result_alone_or_together() -> None:
    require_postgres()
    store = open_store(PG_URL, hub="rep" + uuid.uuid4().hex[:10])
    await store.open()
    assert isinstance(store, EventLogStore)
    now = datetime.now(UTC)
    two = StreamAppend("s", NO_STREAM, (EventData("a", "T", "{}"), EventData("b", "T", "{}")))
    try:
        # The same append from many callers at once (a client retrying): written once.
        results = await asyncio.gather(*(store.append_events([two], now) for _ in range(8)))
        assert all(r == results[0] for r in results) and results[0][0][0] == 2
        # Twice in one call: the second sees the first, as on SQLite.
        again = StreamAppend("t", ANY, two.events)
        assert await store.append_events([again, again], now) == [(2, 4), (2, 4)]
        # Overlapping ids in one call: a partial repeat, refused, nothing written.
        other = StreamAppend("u", ANY, (EventData("b", "T", "{}"), EventData("c", "T", "{}")))
        with pytest.raises(WrongExpectedVersionError, match="already in the stream"):
            await store.append_events([StreamAppend("u", ANY, two.events), other], now)
        assert await store.stream_version("u") == 0
        assert await store.log_head() == 4
    finally:
        await store.close()


async def test_appends_wake_other_stores_of_the_hub() -> None:
    """Whether a group's call carries the NOTIFY or the announcer sends it after (a
    group with a repeat goes the Python path), another store's listeners hear of every
    append that writes."""
    require_postgres()
    hub = "wake" + uuid.uuid4().hex[:10]
    writer, reader = open_store(PG_URL, hub=hub), open_store(PG_URL, hub=hub)
    await writer.open()
    await reader.open()
    assert isinstance(writer, EventLogStore) and isinstance(reader, EventLogStore)
    woken = asyncio.Event()
    reader.add_listener(woken.set, "l")
    now = datetime.now(UTC)

    async def woke_after(*appends: list[StreamAppend]) -> None:
        woken.clear()
        await asyncio.gather(*(writer.append_events(a, now) for a in appends))
        await asyncio.wait_for(woken.wait(), 10)

    one = StreamAppend("s", ANY, (EventData("a", "T", "{}"),))
    try:
        await woke_after([one])
        await woke_after([one], [StreamAppend("t", ANY, (EventData("b", "T", "{}"),))])
        await woke_after(
            *([StreamAppend(f"g{k}", NO_STREAM, (EventData("x", "T", "{}"),))] for k in range(8))
        )
        assert len(await reader.read_log(0, 100)) == 10
    finally:
        await writer.close()
        await reader.close()
