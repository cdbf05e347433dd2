"""Two SQLite store objects of one process on one file wake each other's listeners."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

from taskloom import history as h
from taskloom.storage import open_store
from taskloom.storage.base import Message


def test_write_on_one_store_wakes_a_store_on_another_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bus.db'}"
    woken = threading.Event()
    ready = threading.Event()
    stop = threading.Event()

    def other_thread() -> None:
        async def run() -> None:
            store = open_store(url, hub="bus")
            await store.open()
            store.add_listener(woken.set)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.01)
            await store.close()

        asyncio.run(run())

    thread = threading.Thread(target=other_thread)
    thread.start()
    try:
        assert ready.wait(10)

        async def write() -> None:
            store = open_store(url, hub="bus")
            await store.open()
            event = h.EventRaised(datetime.now(UTC), name="x")
            await store.enqueue_messages([Message("i", event, datetime.now(UTC))])
            await store.close()

        asyncio.run(write())
        assert woken.wait(5), "the other store's listener was not called"
    finally:
        stop.set()
        thread.join(10)


def test_other_hubs_are_not_woken(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bus.db'}"
    calls: list[str] = []

    async def run() -> None:
        a, b = open_store(url, hub="a"), open_store(url, hub="b")
        await a.open()
        await b.open()
        b.add_listener(lambda: calls.append("b"))
        a.add_listener(lambda: calls.append("a"))
        event = h.EventRaised(datetime.now(UTC), name="x")
        await a.enqueue_messages([Message("i", event, datetime.now(UTC))])
        await asyncio.sleep(0.05)  # give any (wrong) cross-hub wake-up a chance to land
        await a.close()
        await b.close()

    asyncio.run(run())
    assert calls == ["a"]
