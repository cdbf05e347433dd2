"""``taskloom.waiting.InstanceWatcher``, the client's one watcher for all its waits, on
SQLite: many waits share a few status checks; unknown ids and timeouts fail clearly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import host_helpers
import pytest
from apps import app
from envs import OPTIONS

import taskloom as tl
from taskloom.runtime.worker import Worker
from taskloom.storage import open_store

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

MANY = 300


@asynccontextmanager
async def running_worker(store_url: str, hub: str) -> AsyncIterator[Worker]:
    """A worker of the integration app on its own store connection."""
    store = open_store(store_url, hub=hub)
    await store.open()
    worker = Worker(app, store, options=OPTIONS)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop(drain_timeout=2)
        await store.close()


@pytest.fixture
async def client(store_url: str, hub: str) -> AsyncIterator[tl.AsyncClient]:
    async with tl.AsyncClient(store_url, hub=hub) as c:
        yield c


def expected(name: str) -> list[str]:
    return ["Hello Tokyo!", "Hello Seattle!", f"Hello {name}!"]


async def test_many_concurrent_waits_share_a_few_checks(
    client: tl.AsyncClient, store_url: str, hub: str
) -> None:
    ids = [await client.start_new("chain", f"n{i}", instance_id=f"w-{i}") for i in range(MANY)]
    waits = asyncio.gather(*(client.wait_for_completion(iid, timeout=60) for iid in ids))

    async def first_check() -> bool:
        watcher = client._watcher
        return watcher is not None and watcher.checks >= 1

    # Nothing runs the instances yet: once the watcher has checked, all waits are in.
    await host_helpers.wait_until(first_check, 10, "the watcher's first check")
    wakes = 0

    def count() -> None:
        nonlocal wakes
        wakes += 1

    client.store.add_listener(count)
    try:
        async with running_worker(store_url, hub):
            states = await waits
    finally:
        client.store.remove_listener(count)

    assert [s.instance_id for s in states] == ids
    for i, state in enumerate(states):
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        assert state.output == expected(f"n{i}")
    watcher = client._watcher
    assert watcher is not None
    # Each of the 300 instances took four episodes and three activity results, and the
    # worker's commits woke the client many times; one check serves every waiter.
    assert wakes >= 2, f"only {wakes} wake-ups: the test proves nothing"
    assert watcher.checks < MANY, f"{watcher.checks} checks for {MANY} waits, {wakes} wake-ups"


async def test_a_wait_on_an_unknown_id_raises_and_leaves_other_waits_alone(
    client: tl.AsyncClient, store_url: str, hub: str
) -> None:
    async with running_worker(store_url, hub):
        iid = await client.start_new("chain", "Oslo")
        missing, state = await asyncio.gather(
            client.wait_for_completion("no-such-instance", timeout=20),
            client.wait_for_completion(iid, timeout=20),
            return_exceptions=True,
        )
    assert isinstance(missing, tl.InstanceNotFoundError), repr(missing)
    assert "no-such-instance" in str(missing) and hub in str(missing)
    assert isinstance(state, tl.OrchestrationState), repr(state)
    assert state.runtime_status is tl.Status.COMPLETED
    assert state.output == expected("Oslo")


async def test_a_timeout_names_the_status_and_the_watcher_carries_on(
    client: tl.AsyncClient, store_url: str, hub: str
) -> None:
    async with running_worker(store_url, hub):
        running = await client.start_new("wait_event")
        started = await client.wait_for_start(running, timeout=20)
        assert started.runtime_status is tl.Status.RUNNING
        later = datetime.now(UTC) + timedelta(hours=1)
        pending = await client.start_new("wait_event", start_at=later)

        with pytest.raises(TimeoutError, match=rf"{running}.*did not complete.*status Running"):
            await client.wait_for_completion(running, timeout=0.3)
        with pytest.raises(TimeoutError, match=rf"{pending}.*did not start.*status Pending"):
            await client.wait_for_start(pending, timeout=0.3)

        # The waits that timed out are gone; a new one on the same watcher still resolves.
        await client.raise_event(running, "Approval", {"ok": True})
        state = await client.wait_for_completion(running, timeout=20)
    assert state.runtime_status is tl.Status.COMPLETED
    assert state.output == {"ok": True}
