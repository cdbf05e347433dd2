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
import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from taskloom.clock import Clock, SystemClock
from taskloom.errors import ConfigurationError
from taskloom.host.cron import Cron
from taskloom.storage.host_base import HostStore, ScheduleRecord

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.client import AsyncClient
    from taskloom.storage.base import Store

log = logging.getLogger("taskloom.schedules")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def host_store(store: object) -> HostStore:
    """``store`` as a :class:`HostStore`, or a ConfigurationError saying it is not one."""
    if not isinstance(store, HostStore):
        raise ConfigurationError(
            f"{store!r} has no queues or schedules; use a SQLite or PostgreSQL store"
        )
    return store


# -- schedule specs ----------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A parsed schedule spec: ``"cron:<expression>"`` or ``"every:<seconds>"``."""

    text: str
    cron: Cron | None = None
    interval: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Spec:
        kind, _, rest = text.partition(":")
        if kind == "cron":
            return cls(text, cron=Cron.parse(rest))
        if kind == "every":
            try:
                seconds = float(rest)
            except ValueError:
                seconds = 0.0
            if seconds > 0:
                return cls(text, interval=seconds)
        raise ConfigurationError(f"bad schedule spec {text!r}: use 'cron:EXPR' or 'every:SECONDS'")

    def after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``. Intervals are aligned to the Unix
        epoch, so hosts that start at different times agree on the ticks."""
        if self.cron is not None:
            return self.cron.next_after(moment)
        step = timedelta(seconds=self.interval)
        return _EPOCH + step * ((moment - _EPOCH) // step + 1)

    def at_or_after(self, moment: datetime) -> datetime:
        """The first tick at or after ``moment``."""
        return self.after(moment - timedelta(microseconds=1))

    def following(self, tick: datetime) -> datetime:
        """The tick after ``tick``."""
        if self.cron is not None:
            return self.cron.next_after(tick)
        return tick + timedelta(seconds=self.interval)


# -- queue message bodies ----------------------------------------------------------


def tick_body(name: str, tick: datetime, *, kind: str = "tick") -> str:
    """The ``SCHEDULE_QUEUE`` message for one run of schedule ``name`` at ``tick``.

    ``kind`` is ``"tick"`` (claimed by a runner), ``"manual"`` (triggered by hand) or
    ``"skip"`` (a missed tick dropped by ``missed="skip"``: acknowledged, not run).
    """
    return json.dumps({"schedule": name, "tick": tick.isoformat(), "kind": kind})


@dataclass(frozen=True)
class TickMessage:
    schedule: str
    tick: datetime
    kind: str


def parse_tick_body(body: str) -> TickMessage:
    data = json.loads(body)
    return TickMessage(
        str(data["schedule"]), datetime.fromisoformat(data["tick"]), str(data.get("kind", "tick"))
    )


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
        from taskloom.host.manage import trigger_schedule

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
