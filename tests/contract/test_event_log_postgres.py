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

from taskloom.events.records import ANY
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
