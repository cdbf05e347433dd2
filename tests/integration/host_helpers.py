"""Helpers for the schedule and queue tests: a "host" (a store connection, a client, a
ScheduleRunner and a QueueRunner) and waiting on conditions with deadlines."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import taskloom as tl
from taskloom.host.queues import QueueRunner
from taskloom.host.schedules import ScheduleRunner
from taskloom.storage import Store, open_store
from taskloom.storage.host_base import HostStore

T = TypeVar("T")


async def wait_until(
    probe: Callable[[], Awaitable[T]], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns a truthy value; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s (last: {value!r})")
        await asyncio.sleep(0.02)


@dataclass
class Host:
    """One host's schedule and queue runners on their own store connection."""

    store: Store
    client: tl.AsyncClient
    schedules: ScheduleRunner
    queues: QueueRunner

    @property
    def host_store(self) -> HostStore:
        assert isinstance(self.store, HostStore)
        return self.store

    async def stop(self) -> None:
        await self.schedules.stop()
        await self.queues.stop(drain_timeout=5)
        await self.store.close()


async def start_host(
    app: tl.App,
    store_url: str,
    hub: str,
    *,
    grace: float = 5.0,
    run_schedules: bool = True,
    **queue_options: Any,
) -> Host:
    store = open_store(store_url, hub=hub)
    await store.open()
    client = tl.AsyncClient(store, converter=app.converter)
    schedules = ScheduleRunner(app, store, client, poll_interval=0.05, grace=grace)
    queue_options.setdefault("backoff", 0.1)
    queues = QueueRunner(app, store, client, poll_interval=0.05, **queue_options)
    if run_schedules:
        await schedules.start()
    await queues.start()
    return Host(store, client, schedules, queues)
