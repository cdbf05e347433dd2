"""``TestEnv``: an app with a fresh store, an in-process worker and a virtual clock.

Time skipping follows Temporal's test server: while a client call waits
(``wait_for_completion``, ``wait_for_start``) and the worker has nothing runnable, the
clock jumps to the next timer, so a 72-hour deadline passes in milliseconds. Outside
such waits time only moves through :meth:`TestEnv.advance`.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from taskloom.app import App
from taskloom.client import AsyncClient, Client
from taskloom.clock import VirtualClock
from taskloom.runtime.worker import Worker, WorkerOptions
from taskloom.storage import Store, open_store

T = TypeVar("T")

__all__ = ["TestEnv"]


class TestEnv:
    """Context manager: ``with TestEnv(app) as env: env.client.start_new(...)``.

    ``triggers`` (on by default when the app has schedules or queue triggers) runs them
    on the virtual clock; ``http=True`` serves the management API and the app's own
    routes on a free loopback port at ``env.base_url``, open without keys; ``webhooks=True``
    also delivers the hub's webhook subscriptions (over real HTTP, retries on the virtual
    clock)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        app: App,
        *,
        time_skipping: bool = True,
        store: str | None = None,
        start: datetime | None = None,
        options: WorkerOptions | None = None,
        http: bool = False,
        triggers: bool | None = None,
        webhooks: bool = False,
    ) -> None:
        self.app = app
        self.time_skipping = time_skipping
        self.clock = VirtualClock(start)
        self._store_url = store
        self._options = options or app.worker_options()
        self._http = http
        wanted = (
            app.schedules
            or app.queue_triggers
            or app.projections
            or app.subscriptions
            or app.event_triggers
        )
        self._triggers = bool(wanted or webhooks) if triggers is None else triggers
        self._webhooks = webhooks
        self._parts: list[Any] = []
        self.base_url: str | None = None
        self._tmp: str | None = None
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self.store: Store
        self.worker: Worker
        self.async_client: AsyncClient
        self.client: Client

    def __enter__(self) -> TestEnv:
        if self._store_url is None:
            self._tmp = tempfile.mkdtemp(prefix="taskloom-test-")
            self._store_url = f"sqlite:///{Path(self._tmp) / 'taskloom.db'}"
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.run(self._start())
        self.client = Client(_async=self.async_client, _loop=self._loop)
        return self

    async def _start(self) -> None:
        assert self._store_url is not None
        self.store = open_store(self._store_url, hub=self.app.name)
        await self.store.open()
        self.async_client = AsyncClient(
            self.store,
            converter=self.app.converter,
            clock=self.clock,
            projections=list(self.app.projections.values()),
            default_version=self.app.versioning.start_version,
        )
        self.async_client._opened = True
        self.worker = Worker(
            self.app, self.store, clock=self.clock, options=self._options, client=self.async_client
        )
        await self.worker.start()
        if self.time_skipping:
            self.async_client.idle_hook = self._skip_time
        from taskloom.host.serve import start_http, trigger_runners

        if self._triggers:
            runners = trigger_runners(
                self.app, self.store, self.async_client, self.clock, webhooks=self._webhooks
            )
            for runner in runners:
                await runner.start()
                self._parts.append(runner)
        if self._http:
            port = _free_port()
            self.base_url = self.async_client.base_url = f"http://127.0.0.1:{port}"
            self._parts.append(await start_http(self.app, self.async_client, "127.0.0.1", port))

    def __exit__(self, *exc: object) -> None:
        self.run(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    async def _stop(self) -> None:
        for part in reversed(self._parts):
            await part.stop()
        await self.worker.stop(drain_timeout=5)
        await self.store.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the environment's loop (e.g. against ``env.store``)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def now(self) -> datetime:
        """The virtual time."""
        return self.clock.now()

    def advance(self, delta: timedelta) -> None:
        """Move the virtual clock forward; timers that come due fire."""
        self.clock.advance(delta)
        self._loop.call_soon_threadsafe(self.worker.wake)

    def _idle(self) -> bool:
        """The worker holds nothing and no queue, schedule or event handler is running."""
        handlers = sum(part.in_flight for part in self._parts if hasattr(part, "in_flight"))
        return self.worker.is_idle and handlers == 0

    def _consumer_due(self) -> datetime | None:
        due = [part.next_due() for part in self._parts if hasattr(part, "next_due")]
        return min((d for d in due if d is not None), default=None)

    def wait_for_consumers(self, timeout: float = 30.0) -> None:
        """Block until every projection, subscription and event trigger has handled the
        whole log (and nothing waits for a retry; dead letters do not count), skipping
        virtual time to retries as it goes."""
        self.run(self._wait_for_consumers(timeout))

    async def _wait_for_consumers(self, timeout: float) -> None:
        runners = [p for p in self._parts if hasattr(p, "caught_up")]
        deadline = asyncio.get_running_loop().time() + timeout
        pause = 0.002
        while True:
            if all([await r.caught_up() for r in runners]) and self._idle():
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"projections, subscriptions and event triggers did not catch up within "
                    f"{timeout} s: see env.client.events.consumers() for lag and failures"
                )
            if self.time_skipping and self._idle():
                due = self._consumer_due()
                if due is not None and due > self.clock.now():
                    self.clock.jump_to(due)
            for r in runners:
                r.wake()
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def _skip_time(self) -> bool:
        # Called by a waiting client on the worker's loop, so these checks and the
        # worker's state cannot change under us between awaits of our own.
        if not self._idle():
            return False
        now = self.clock.now()
        if await self.store.has_runnable(now):
            return False
        if not self._idle():
            return False
        upcoming = await self.store.next_wakeup(now)
        due = self._consumer_due()
        if due is not None and due > now and (upcoming is None or due < upcoming):
            upcoming = due
        if upcoming is None or upcoming <= now:
            return False
        self.clock.jump_to(upcoming)
        self.worker.wake()
        for part in self._parts:
            if hasattr(part, "wake"):
                part.wake()
        return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
