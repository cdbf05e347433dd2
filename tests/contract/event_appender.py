"""A process appending to one hub's event log for the gap-free test: ``python
event_appender.py URL HUB WORKER COUNT SLOW``. Every 5th append rolls back (its hook
raises); with SLOW set, one append holds its transaction open for 2 s before it commits.
Prints the number of events it committed."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime

from taskloom.events.records import ANY
from taskloom.storage import open_store
from taskloom.storage.events_base import EventData, EventLogStore, StreamAppend


class Rollback(Exception):
    pass


def _raise(tx: object, written: object) -> None:
    raise Rollback


def _sleep(tx: object, written: object) -> None:
    time.sleep(2.0)


async def main(url: str, hub: str, worker: int, count: int, slow: bool) -> None:
    store = open_store(url, hub=hub)
    await store.open()
    assert isinstance(store, EventLogStore)
    committed = 0
    try:
        for i in range(count):
            events = tuple(EventData(f"w{worker}-{i}-{k}", "T", "{}") for k in range(3))
            append = StreamAppend(f"s{worker}-{i % 7}", ANY, events)
            hook = _raise if i % 5 == 4 else _sleep if slow and i == 3 else None
            try:
                await store.append_events([append], datetime.now(UTC), hook)
                committed += len(events)
            except Rollback:
                pass
    finally:
        await store.close()
    print(committed, flush=True)


if __name__ == "__main__":
    url, hub, worker, count, slow = sys.argv[1:6]
    asyncio.run(main(url, hub, int(worker), int(count), slow == "1"))
