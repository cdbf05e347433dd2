"""Visibility does not depend on the sender's clock (issue 8).

Work meant for "now" is stamped ``AT_ONCE`` so a worker sees it whatever the client's
clock says; timers fire at the time they name on the worker's clock. The workers here
poll once an hour (``poll_interval=3600``), so a test that passes within its deadline
proves the work was visible when the wake-up came, not picked up by a later poll: a
start stamped with a clock an hour ahead would leave the worker asleep until its next
wake-up an hour later.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import host_helpers
import pytest

import taskloom as tl
from taskloom.runtime.worker import Worker, WorkerOptions
from taskloom.storage import open_store
from taskloom.testing import TestEnv

Orch = Generator[Any, Any, Any]

HOUR = timedelta(hours=1)
#: Only a wake-up can move these workers within a test's deadline.
NO_POLL = WorkerOptions(poll_interval=3600, lease_for=10)
DEADLINE = 20.0
TIMER = 1.0


class SkewedClock:
    """The system clock shifted by ``offset``: another host whose clock is wrong."""

    is_virtual = False

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


def greet(name: str) -> str:
    return f"Hello {name}!"


def approve_and_greet(ctx: tl.OrchestrationContext, name: str) -> Orch:
    first = yield ctx.call_activity(greet, name)
    ctx.set_custom_status("waiting")
    approval = yield ctx.wait_for_external_event("Approval")
    second = yield ctx.call_activity(greet, approval["by"])
    return [first, second]


def timed(ctx: tl.OrchestrationContext, seconds: float) -> Orch:
    start = ctx.current_utc_datetime
    timer = ctx.create_timer(timedelta(seconds=seconds))
    yield timer
    return {"start": start, "end": ctx.current_utc_datetime}


def make_app(name: str) -> tl.App:
    """An app whose name is the test's hub (a TestEnv's hub is its app's name)."""
    app = tl.App(name)
    app.activity(greet)
    app.orchestrator(approve_and_greet)
    app.orchestrator(timed)
    return app


@asynccontextmanager
async def skewed(
    store_url: str, hub: str, offset: timedelta
) -> AsyncIterator[tuple[tl.AsyncClient, Worker]]:
    """A worker on the system clock that never polls, and a client ``offset`` off it."""
    store = open_store(store_url, hub=hub)
    await store.open()
    worker = Worker(make_app(hub), store, options=NO_POLL)
    await worker.start()
    client = tl.AsyncClient(store_url, hub=hub, clock=SkewedClock(offset))
    try:
        yield client, worker
    finally:
        await client.close()
        await worker.stop(drain_timeout=2)
        await store.close()


OFFSETS = [pytest.param(HOUR, id="client-1h-ahead"), pytest.param(-HOUR, id="client-1h-behind")]


async def wait_custom_status(client: tl.AsyncClient, iid: str, value: str) -> None:
    async def probe() -> bool:
        state = await client.get_status(iid)
        return state is not None and state.custom_status == value

    await host_helpers.wait_until(probe, DEADLINE, f"{iid} custom status {value!r}")


@pytest.mark.parametrize("offset", OFFSETS)
async def test_start_activity_and_event_from_a_skewed_client(
    store_url: str, hub: str, offset: timedelta
) -> None:
    async with skewed(store_url, hub, offset) as (client, _):
        iid = await client.start_new("approve_and_greet", "Ada")
        # The start and the activity result reached the worker: it now waits for the event.
        await wait_custom_status(client, iid, "waiting")
        await client.raise_event(iid, "Approval", {"by": "Grace"})
        state = await client.wait_for_completion(iid, timeout=DEADLINE)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        assert state.output == ["Hello Ada!", "Hello Grace!"]
        # The instance's times are the client's at creation and the worker's afterwards.
        assert state.created_at is not None
        assert abs(state.created_at - (datetime.now(UTC) + offset)) < HOUR / 2


@pytest.mark.parametrize("offset", OFFSETS)
async def test_a_timer_fires_on_the_workers_clock(
    store_url: str, hub: str, offset: timedelta
) -> None:
    async with skewed(store_url, hub, offset) as (client, _):
        iid = await client.start_new("timed", TIMER)
        state = await client.wait_for_completion(iid, timeout=DEADLINE)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        start, end = state.output["start"], state.output["end"]
        # Orchestration time is the worker's: not shifted by the client's hour.
        assert abs(start - datetime.now(UTC)) < HOUR / 2
        # It did not fire before its time...
        assert end - start >= timedelta(seconds=TIMER)
        # ...and it fired at the time it names on the worker's clock, not an hour off.
        history = await client.get_history(iid)
        created = [e for e in history if e.kind == "TimerCreated"]
        fired = [e for e in history if e.kind == "TimerFired"]
        assert len(created) == 1 and len(fired) == 1, [e.kind for e in history]
        assert created[0].fire_at == start + timedelta(seconds=TIMER)
        assert fired[0].fire_at == created[0].fire_at
        assert end >= created[0].fire_at


async def test_outside_client_beside_a_testenv_on_its_store(store_url: str, hub: str) -> None:
    """A TestEnv's virtual clock stands still, behind every real clock; an outside client's
    start must still reach the TestEnv's worker, which never polls here."""
    with TestEnv(make_app(hub), store=store_url, options=NO_POLL) as env:
        async with tl.AsyncClient(store_url, hub=hub) as outside:
            iid = await outside.start_new("approve_and_greet", "Ada")
            await wait_custom_status(outside, iid, "waiting")
            await outside.raise_event(iid, "Approval", {"by": "Grace"})
            state = await outside.wait_for_completion(iid, timeout=DEADLINE)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        assert state.output == ["Hello Ada!", "Hello Grace!"]
        # The virtual clock did not move: the instance ran "at" the TestEnv's time.
        assert state.last_updated_at is not None
        assert state.last_updated_at <= env.now() + timedelta(seconds=1)
        # The TestEnv's own client sees the same instance.
        assert env.client.get_status(iid).runtime_status is tl.Status.COMPLETED  # type: ignore[union-attr]


def test_outside_client_beside_a_default_testenv() -> None:
    """The default TestEnv (a temporary SQLite file): a blocking client on its file."""
    app = make_app("testenv_outside")
    with TestEnv(app, options=NO_POLL) as env:
        url = f"sqlite:///{env.store.path}"  # type: ignore[attr-defined]
        with tl.Client(url, hub=app.name) as outside:
            iid = outside.start_new("approve_and_greet", "Ada")
            env.run(wait_custom_status(env.async_client, iid, "waiting"))
            outside.raise_event(iid, "Approval", {"by": "Grace"})
            state = outside.wait_for_completion(iid, timeout=DEADLINE)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        assert state.output == ["Hello Ada!", "Hello Grace!"]
