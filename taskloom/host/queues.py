"""Queue triggers: run ``@app.queue_trigger`` handlers (and schedule ticks) from the
store's durable queues, at least once.

A :class:`QueueRunner` leases visible messages of the app's trigger queues and of
``SCHEDULE_QUEUE``, up to ``concurrency`` at a time, and runs each handler:

- success: the message is acknowledged (deleted);
- an exception: the delivery is recorded as failed with the error's type and message,
  and the message becomes visible again after a backoff (``backoff * 2**(n-1)`` seconds
  after the n-th delivery, at most ``max_backoff``); once it has been delivered
  ``max_dequeue_count`` times it moves to ``<queue>-poison`` with that error;
- the host dies (or is killed): the lease lapses after the trigger's visibility
  timeout and another host gets the message again.

Leases are not renewed: give a trigger a ``visibility_timeout`` comfortably longer than
its handler ever runs, or a slow handler's message is delivered a second time while the
first delivery still runs. Handlers should therefore be idempotent (e.g. start an
orchestration with a fixed instance id).

Sync handlers run in a thread pool and get a blocking :class:`~taskloom.client.Client`;
async handlers are awaited and get the :class:`~taskloom.client.AsyncClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from taskloom.client import Client
from taskloom.clock import Clock, SystemClock
from taskloom.manage import host_store, parse_tick_body
from taskloom.storage.base import QUEUES
from taskloom.storage.host_base import SCHEDULE_QUEUE, QueueMessage

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.client import AsyncClient
    from taskloom.storage.base import Store

log = logging.getLogger("taskloom.queues")

SCHEDULE_MAX_DEQUEUE_COUNT = 5


class ScheduleNotRegisteredError(LookupError):
    """A tick arrived for a schedule this app does not define."""


class QueueRunner:
    """Runs one app's queue-trigger and schedule handlers from the store's queues."""

    def __init__(
        self,
        app: App,
        store: Store,
        client: AsyncClient,
        *,
        clock: Clock | None = None,
        owner: str | None = None,
        poll_interval: float = 0.2,
        concurrency: int = 16,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        schedule_visibility: float = 300.0,
    ) -> None:
        self.app = app
        self.store = store
        self.host = host_store(store)
        self.client = client
        self.clock: Clock = clock or SystemClock()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self.backoff = backoff
        self.max_backoff = max_backoff
        # Queues leased together share a visibility timeout.
        groups: dict[float, list[str]] = {}
        self._max_dequeue: dict[str, int] = {}
        for trigger in app.queue_triggers.values():
            seconds = trigger.visibility_timeout.total_seconds()
            groups.setdefault(seconds, []).append(trigger.queue)
            self._max_dequeue[trigger.queue] = trigger.max_dequeue_count
        if app.schedules:
            groups.setdefault(schedule_visibility, []).append(SCHEDULE_QUEUE)
            self._max_dequeue[SCHEDULE_QUEUE] = SCHEDULE_MAX_DEQUEUE_COUNT
        self._groups = list(groups.items())
        self._wake = asyncio.Event()
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._pool = ThreadPoolExecutor(max(1, concurrency), "taskloom-queue")
        self._sync_client: Client | None = None

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if not self._groups:
            return
        self._sync_client = Client(_async=self.client, _loop=asyncio.get_running_loop())
        self.store.add_listener(self.wake, QUEUES)
        self._task = asyncio.create_task(self._loop(), name="queues")
        queues = ", ".join(q for _, qs in self._groups for q in qs)
        log.info("queue runner %s listening on %s", self.owner, queues)

    async def stop(self, *, drain_timeout: float = 30.0) -> None:
        """Stop leasing and let running handlers finish (up to ``drain_timeout``); the
        messages of handlers still running then come back after their visibility timeout."""
        if self._stopping:
            return
        self._stopping = True
        self.store.remove_listener(self.wake)
        self.wake()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._inflight:
            await asyncio.wait(list(self._inflight.values()), timeout=drain_timeout)
        for task in list(self._inflight.values()):
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        """A message may have become visible: lease now rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """How many handlers are running."""
        return len(self._inflight)

    # -- leasing --------------------------------------------------------------------

    async def _loop(self) -> None:
        rotation = 0
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._inflight)
            leased = 0
            groups = self._groups[rotation:] + self._groups[:rotation]
            rotation = (rotation + 1) % len(self._groups)
            for visibility, queues in groups:
                if free - leased <= 0:
                    break
                try:
                    messages = await self.host.queue_lease(
                        queues, self.clock.now(), free - leased, visibility, self.owner
                    )
                except Exception:
                    log.exception("leasing from queues %s failed; retrying", queues)
                    continue
                for message in messages:
                    task = asyncio.create_task(self._handle(message))
                    self._inflight[message.id] = task
                leased += len(messages)
            if leased == 0 or leased >= free:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    # -- handling -------------------------------------------------------------------

    async def _handle(self, message: QueueMessage) -> None:
        try:
            try:
                await self._dispatch(message)
            except Exception as exc:
                await self._failed(message, exc)
            else:
                if not await self.host.queue_ack(message.id, message.lease_token):
                    log.warning(
                        "message %d of queue %r was handled after its lease lapsed; "
                        "it may be delivered again (raise the visibility timeout)",
                        message.id,
                        message.queue,
                    )
        except Exception:
            log.exception(
                "settling message %d of queue %r failed; it will be delivered again after "
                "its visibility timeout",
                message.id,
                message.queue,
            )
        finally:
            self._inflight.pop(message.id, None)
            self._wake.set()

    async def _failed(self, message: QueueMessage, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        attempt = message.dequeue_count
        limit = self._max_dequeue.get(message.queue, SCHEDULE_MAX_DEQUEUE_COUNT)
        now = self.clock.now()
        delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        outcome = await self.host.queue_fail(
            message.id, message.lease_token, error, now + timedelta(seconds=delay), limit, now
        )
        if outcome == "poisoned":
            log.error(
                "message %d of queue %r failed %d times and moved to %r: %s",
                message.id,
                message.queue,
                attempt,
                f"{message.queue}-poison",
                error,
            )
        elif outcome == "lost":
            log.warning(
                "message %d of queue %r failed after its lease lapsed: %s",
                message.id,
                message.queue,
                error,
            )
        else:
            log.warning(
                "message %d of queue %r failed (delivery %d of %d), retrying in %g s: %s",
                message.id,
                message.queue,
                attempt,
                limit,
                delay,
                error,
            )

    async def _dispatch(self, message: QueueMessage) -> None:
        if message.queue == SCHEDULE_QUEUE:
            tick = parse_tick_body(message.body)
            if tick.kind == "skip":
                return
            schedule = self.app.schedules.get(tick.schedule)
            if schedule is None:
                raise ScheduleNotRegisteredError(
                    f"schedule {tick.schedule!r} is not registered in app {self.app.name!r}"
                )
            await self._call(schedule.fn, schedule.is_async, lambda c: (c, tick.tick))
            return
        trigger = self.app.queue_triggers[message.queue]
        what = f"message {message.id} of queue {message.queue!r}"
        value = self.app.converter.loads(message.body, what=what)
        await self._call(trigger.fn, trigger.is_async, lambda c: (value, c))

    async def _call(
        self, fn: Callable[..., Any], is_async: bool, args: Callable[[Any], tuple[Any, ...]]
    ) -> None:
        """Call ``fn`` with ``args(client)``: the async client for a coroutine function,
        else the blocking client, in the pool."""
        if is_async:
            await fn(*args(self.client))
            return
        context = contextvars.copy_context()
        call_args = args(self._sync_client)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, lambda: context.run(fn, *call_args))
