"""Schedules on real stores: each tick runs exactly once across two hosts; pause, resume
and trigger by hand; the missed-tick policies."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from host_helpers import Host, start_host, wait_until

import taskloom as tl
from taskloom import manage
from taskloom.manage import Spec
from taskloom.storage.host_base import SCHEDULE_QUEUE, ScheduleRecord

pytestmark = pytest.mark.slow


def _no_gaps(ticks: list[datetime], step: timedelta) -> None:
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {sorted(ticks)}"
    ordered = sorted(ticks)
    gaps = [b - a for a, b in itertools.pairwise(ordered) if b - a != step]
    assert not gaps, f"ticks missing between {ordered[0]} and {ordered[-1]}: {gaps}"


async def _drain(hosts: list[Host]) -> None:
    """Stop claiming on every host, then let the queue runners finish the claimed ticks."""
    for host in hosts:
        await host.schedules.stop()

    async def drained() -> bool:
        left = await hosts[0].host_store.queue_peek(SCHEDULE_QUEUE)
        return not left and all(h.queues.in_flight == 0 for h in hosts)

    await wait_until(drained, 10, "schedule queue drained")


async def _record(store: Any, name: str) -> ScheduleRecord:
    return await manage.get_schedule(store, name)


async def test_two_hosts_run_every_tick_exactly_once(store_url: str, hub: str) -> None:
    app = tl.App("sched")
    ticks: dict[str, list[datetime]] = {"every": [], "cron": []}
    clients: set[type] = set()

    @app.schedule(every=timedelta(seconds=1))
    def every(client: Any, scheduled_time: datetime) -> None:  # sync: runs in a thread
        clients.add(type(client))
        ticks["every"].append(scheduled_time)

    @app.schedule("* * * * * *")
    async def cron(client: Any, scheduled_time: datetime) -> None:
        clients.add(type(client))
        ticks["cron"].append(scheduled_time)

    hosts = [await start_host(app, store_url, hub) for _ in range(2)]
    try:
        started = datetime.now(UTC)

        async def ten_seconds() -> bool:
            return len(set(ticks["every"])) >= 10 and len(set(ticks["cron"])) >= 10

        await wait_until(ten_seconds, 25, "ten ticks of each schedule")
        await _drain(hosts)
    finally:
        for host in hosts:
            await host.stop()
    for name in ("every", "cron"):
        _no_gaps(ticks[name], timedelta(seconds=1))
        assert min(ticks[name]) >= started - timedelta(seconds=1)
        assert all(t.microsecond == 0 and t.tzinfo is not None for t in ticks[name])
    assert clients == {tl.Client, tl.AsyncClient}


async def test_pause_resume_and_trigger(store_url: str, hub: str) -> None:
    app = tl.App("sched")
    ran: list[tuple[str, datetime]] = []

    @app.schedule(every=timedelta(seconds=1))
    async def often(client: tl.AsyncClient, scheduled_time: datetime) -> None:
        ran.append(("often", scheduled_time))

    @app.schedule("0 0 1 1 *")  # once a year: only runs when triggered
    async def yearly(client: tl.AsyncClient, scheduled_time: datetime) -> None:
        ran.append(("yearly", scheduled_time))

    host = await start_host(app, store_url, hub)
    try:
        store = host.store
        listed = await manage.list_schedules(store)
        assert [(r.name, r.spec, r.paused) for r in listed] == [
            ("often", "every:1", False),
            ("yearly", "cron:0 0 1 1 *", False),
        ]
        await wait_until(lambda: _async(any(n == "often" for n, _ in ran)), 10, "a tick")

        await manage.pause_schedule(store, "often")
        assert (await _record(store, "often")).paused
        await _drain_queue(host)
        paused_at, count = datetime.now(UTC), len(ran)
        await asyncio.sleep(2.2)  # two ticks' worth of time: nothing may run
        assert len(ran) == count

        before = datetime.now(UTC)
        await manage.trigger_schedule(store, "often", before)  # runs even while paused
        await manage.trigger_schedule(store, "yearly", before)
        await wait_until(lambda: _async(len(ran) == count + 2), 10, "the triggered runs")
        assert sorted(name for name, _ in ran[count:]) == ["often", "yearly"]
        assert all(t == before for _, t in ran[count:])
        assert (await _record(store, "yearly")).next_tick.year > before.year

        next_tick = await manage.resume_schedule(store, "often", datetime.now(UTC))
        assert next_tick > paused_at + timedelta(seconds=2)
        await wait_until(
            lambda: _async(any(n == "often" and t >= next_tick for n, t in ran)), 10, "resumed"
        )
        # The ticks of the pause were not run afterwards.
        during = [t for n, t in ran if n == "often" and paused_at < t < before]
        assert during == []

        with pytest.raises(manage.ScheduleNotFoundError):
            await manage.pause_schedule(store, "nope")
        with pytest.raises(manage.ScheduleNotFoundError):
            await host.schedules.trigger("nope")
    finally:
        await host.stop()


async def _async(value: bool) -> bool:
    return value


async def _drain_queue(host: Host) -> None:
    async def drained() -> bool:
        left = await host.host_store.queue_peek(SCHEDULE_QUEUE)
        return not left and host.queues.in_flight == 0

    await wait_until(drained, 10, "schedule queue drained")


@pytest.mark.parametrize("missed", ["run_once", "skip"])
async def test_missed_ticks(store_url: str, hub: str, missed: str) -> None:
    app = tl.App("sched")
    ran: list[datetime] = []

    @app.schedule(every=timedelta(hours=1), missed=missed)
    async def hourly(client: tl.AsyncClient, scheduled_time: datetime) -> None:
        ran.append(scheduled_time)

    # The hosts were down for three hours: the stored next tick is long past.
    now = datetime.now(UTC)
    stale = Spec.parse("every:3600").after(now - timedelta(hours=3))
    setup = await start_host(app, store_url, hub, run_schedules=False)
    await setup.host_store.schedule_upsert("hourly", "every:3600", stale)
    await setup.stop()

    host = await start_host(app, store_url, hub, grace=1.0)
    try:

        async def moved() -> bool:
            return (await _record(host.store, "hourly")).next_tick > now

        await wait_until(moved, 10, "next tick moved past now")
        await _drain_queue(host)
        record = await _record(host.store, "hourly")
        assert record.next_tick == Spec.parse("every:3600").after(now)
        assert record.last_tick == stale
        assert ran == ([stale] if missed == "run_once" else [])
    finally:
        await host.stop()


async def test_late_ticks_within_grace_all_run(store_url: str, hub: str) -> None:
    """A host that is a few seconds behind catches up tick by tick: late is not missed."""
    app = tl.App("sched")
    ran: list[datetime] = []

    @app.schedule(every=timedelta(seconds=1), missed="skip")
    async def second(client: tl.AsyncClient, scheduled_time: datetime) -> None:
        ran.append(scheduled_time)

    setup = await start_host(app, store_url, hub, run_schedules=False)
    late = Spec.parse("every:1").after(datetime.now(UTC) - timedelta(seconds=4))
    await setup.host_store.schedule_upsert("second", "every:1", late)
    await setup.stop()

    host = await start_host(app, store_url, hub, grace=10.0)
    try:
        await wait_until(lambda: _async(len(ran) >= 6), 15, "caught up")
        await _drain(list([host]))
    finally:
        await host.stop()
    assert min(ran) == late
    _no_gaps(ran, timedelta(seconds=1))


def test_client_manages_schedules_and_peeks_queues(tmp_path: Path) -> None:
    """The sync client's schedule and queue methods reach the store."""
    app = tl.App("clientmanage")

    @app.schedule(every=timedelta(hours=1))
    def hourly(client: object, tick: object) -> None: ...

    url = f"sqlite:///{tmp_path / 'm.db'}"
    with app.client(url) as client:
        client.enqueue("inbox", {"n": 1})
        assert [m.body for m in client.peek_queue("inbox")] == ['{"n":1}']
        with pytest.raises(tl.TaskloomError, match="hourly"):
            client.pause_schedule("hourly")  # not registered in the store yet
