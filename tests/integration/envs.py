"""Fixtures for the integration tests: a real worker and a real client on a real store.

``env`` runs a :class:`Worker` on the test's event loop and gives an :class:`AsyncClient`
that has its own store connection (as a separate client process would). ``sync_env`` runs
the worker on a background thread's loop and gives the blocking :class:`taskloom.Client`.
Both are parametrized over SQLite and PostgreSQL through ``store_url``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import host_helpers
from apps import app

import taskloom as tl
from taskloom.runtime.worker import Worker, WorkerOptions
from taskloom.storage import Store, open_store

T = TypeVar("T")

OPTIONS = WorkerOptions(poll_interval=0.05, lease_for=10.0)


@dataclass
class Env:
    client: tl.AsyncClient
    worker: Worker
    store: Store
    store_url: str
    hub: str

    async def wait_until(
        self,
        probe: Callable[[], Awaitable[T]],
        timeout: float = 10.0,
        what: str = "condition",
    ) -> T:
        """Poll ``probe`` until it returns a truthy value; fail after ``timeout`` seconds."""
        return await host_helpers.wait_until(probe, timeout, what)

    async def wait_for_status(
        self, instance_id: str, status: tl.Status, timeout: float = 10.0
    ) -> tl.OrchestrationState:
        async def probe() -> tl.OrchestrationState | None:
            state = await self.client.get_status(instance_id)
            return state if state is not None and state.runtime_status is status else None

        return await self.wait_until(probe, timeout, f"{instance_id} {status.value}")


@dataclass
class SyncEnv:
    client: tl.Client
    store_url: str
    hub: str


class BackgroundWorker:
    """A worker on its own event loop thread, like a worker in another process."""

    def __init__(self, store_url: str, hub: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.store = open_store(store_url, hub=hub)
        self.worker = Worker(app, self.store, options=OPTIONS)

    def _call(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]

    def start(self) -> None:
        self.thread.start()
        self._call(self.store.open())
        self._call(self.worker.start())

    def stop(self) -> None:
        try:
            self._call(self.worker.stop(drain_timeout=2))
            self._call(self.store.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
