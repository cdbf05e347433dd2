"""Durable schedules: each tick of ``@app.schedule`` runs once across all hosts.

Every host runs a :class:`ScheduleRunner`. The store keeps one row per schedule with its
``next_tick``; a runner that sees a due tick calls ``schedule_claim``, a compare-and-set
on ``next_tick`` that also puts the tick on ``SCHEDULE_QUEUE`` in the same transaction.
Exactly one host wins each tick, and the :class:`~taskloom.host.queues.QueueRunner` of
some host runs the handler from that queue message, at least once.

Missed ticks (see ``docs/schedules-and-queues.md``): a tick that is at most ``grace``
seconds overdue is merely late and runs normally, so a slow host catches up tick by
tick. Ticks more than ``grace`` overdue (the hosts were down) are *missed*: with
``missed="run_once"`` the oldest missed tick runs once, late, and the others are
dropped; with ``missed="skip"`` none of them runs. Either way ``next_tick`` moves to the
first tick within the grace window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from taskloom.clock import Clock, SystemClock
from taskloom.manage import Spec, host_store, tick_body, trigger_schedule
from taskloom.storage.host_base import ScheduleRecord

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.client import AsyncClient
    from taskloom.storage.base import Store

log = logging.getLogger("taskloom.schedules")

# -- the runner --------------------------------------------------------------------


class ScheduleRunner:
    """Claims the due ticks of one app's schedules; the handlers run from the queue."""

    def __init__(
        self,
        app: App,
        store: Store,
        client: AsyncClient,
        *,
        clock: Clock | None = None,
        owner: str | None = None,
        poll_interval: float = 0.2,
        grace: float = 5.0,
    ) -> None:
        self.app = app
        self.store = store
        self.host = host_store(store)
        self.client = client
        self.clock: Clock = clock or SystemClock()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_interval = poll_interval
        self.grace = timedelta(seconds=grace)
        self._specs = {name: Spec.parse(s.spec) for name, s in app.schedules.items()}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        """Register the app's schedules (first tick after now) and start claiming."""
        now = self.clock.now()
        for name, spec in self._specs.items():
            record = await self.host.schedule_upsert(name, spec.text, spec.after(now))
            if record.spec != spec.text:
                log.warning(
                    "schedule %r is stored as %r but this app says %r", name, record.spec, spec.text
                )
        if not self._specs:
            return
        # No store listener: queue traffic would re-read the schedules on every write.
        # Ticks are known in advance, so the loop sleeps until the next (or one poll).
        self._task = asyncio.create_task(self._loop(), name="schedules")
        log.info("schedule runner %s: %s", self.owner, ", ".join(sorted(self._specs)))

    async def stop(self) -> None:
        """Stop claiming; ticks already claimed stay on the queue for a queue runner."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def trigger(self, name: str) -> int:
        """Run schedule ``name`` now, by hand, without moving its ``next_tick``."""
        return await trigger_schedule(self.store, name, self.clock.now())

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                delay = await self.run_due()
            except Exception:
                log.exception("claiming schedule ticks failed; retrying")
                delay = self.poll_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(delay, self.poll_interval))

    async def run_due(self) -> float:
        """Claim every due tick of this app's schedules; return the seconds until the
        next one (so the loop can sleep that long)."""
        now = self.clock.now()
        earliest: datetime | None = None
        for record in await self.host.schedule_list():
            if record.name not in self._specs or record.paused:
                continue
            next_tick = record.next_tick
            while next_tick <= now:
                moved = await self._advance(record, next_tick, now)
                if moved is None:  # another host claimed it: read again next round
                    next_tick = now + timedelta(seconds=self.poll_interval)
                    break
                next_tick = moved
                now = self.clock.now()
            if earliest is None or next_tick < earliest:
                earliest = next_tick
        if earliest is None:
            return self.poll_interval
        return max(0.0, (earliest - self.clock.now()).total_seconds())

    async def _advance(
        self, record: ScheduleRecord, tick: datetime, now: datetime
    ) -> datetime | None:
        """Claim ``tick`` of a due schedule; return the new ``next_tick``, or None when
        another host claimed it first (or the schedule was paused meanwhile)."""
        spec = self._specs[record.name]
        if record.spec != spec.text:
            spec = Spec.parse(record.spec)
        schedule = self.app.schedules[record.name]
        cutoff = now - self.grace
        kind = "tick"
        if tick >= cutoff:
            nxt = spec.following(tick)
        else:
            nxt = spec.at_or_after(cutoff)
            kind = "tick" if schedule.missed == "run_once" else "skip"
        body = tick_body(record.name, tick, kind=kind)
        if not await self.host.schedule_claim(record.name, tick, nxt, body, now):
            return None
        if kind == "skip":
            log.warning(
                "schedule %r: skipped the missed ticks from %s to %s", record.name, tick, nxt
            )
        elif nxt != spec.following(tick):
            log.warning(
                "schedule %r: running missed tick %s once, late; next tick %s",
                record.name,
                tick,
                nxt,
            )
        return nxt
