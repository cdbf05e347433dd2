"""Queries, history, scheduled starts and the blocking client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from envs import Env, SyncEnv

import taskloom as tl

DONE = 20.0


async def test_query_filters_and_paging(env: Env) -> None:
    c = env.client
    before = datetime.now(UTC)
    ids = [await c.start_new("async_activity", i, instance_id=f"q-{i:02d}") for i in range(30)]
    waiting = [await c.start_new("wait_event", instance_id=f"w-{i}") for i in range(2)]
    await asyncio.gather(*(c.wait_for_completion(i, timeout=DONE) for i in ids))
    for iid in waiting:
        await env.wait_for_status(iid, tl.Status.RUNNING)
    after = datetime.now(UTC)

    # Paging: 30 instances in pages of 7, oldest first, no repeats or gaps.
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        page = await c.query(instance_id_prefix="q-", page_size=7, continuation_token=token)
        assert len(page.items) <= 7
        seen += [s.instance_id for s in page.items]
        pages += 1
        token = page.continuation_token
        if token is None:
            break
    assert pages == 5
    assert sorted(seen) == sorted(ids)
    assert len(set(seen)) == 30

    completed = await c.query(statuses=[tl.Status.COMPLETED])
    assert sorted(s.instance_id for s in completed.items) == sorted(ids)
    running = await c.query(statuses=["Running"])
    assert sorted(s.instance_id for s in running.items) == sorted(waiting)
    both = await c.query(statuses=[tl.Status.RUNNING, tl.Status.COMPLETED])
    assert len(both.items) == 32

    by_name = await c.query(name="wait_event")
    assert sorted(s.instance_id for s in by_name.items) == sorted(waiting)
    assert all(s.name == "wait_event" for s in by_name.items)
    assert (await c.query(name="no_such_name")).items == []

    assert len((await c.query(instance_id_prefix="q-1")).items) == 10
    assert len((await c.query(instance_id_prefix="w-")).items) == 2

    window = await c.query(created_from=before, created_to=after)
    assert len(window.items) == 32
    assert (await c.query(created_from=after + timedelta(seconds=1))).items == []
    assert (await c.query(created_to=before - timedelta(seconds=1))).items == []
    # created_from/created_to narrow to a middle slice of the creation times.
    middle = sorted(s.created_at for s in window.items if s.created_at is not None)[10]
    newer = await c.query(created_from=middle, instance_id_prefix="q-")
    assert 0 < len(newer.items) < 30
    assert all(s.created_at is not None and s.created_at >= middle for s in newer.items)

    for iid in waiting:
        await c.terminate(iid)


async def test_get_history_event_kinds_in_order(env: Env) -> None:
    iid = await env.client.start_new("chain")
    await env.client.wait_for_completion(iid, timeout=DONE)
    history = await env.client.get_history(iid)
    kinds = [e.kind for e in history]
    assert "ExecutionStarted" in kinds[:2]
    assert kinds[-1] == "ExecutionCompleted"
    tasks = [k for k in kinds if k in ("TaskScheduled", "TaskCompleted")]
    assert tasks == ["TaskScheduled", "TaskCompleted"] * 3
    assert kinds.count("OrchestratorStarted") >= 1
    stamps = [e.timestamp for e in history]
    assert all(t.tzinfo is not None for t in stamps)
    state = await env.client.get_status(iid, show_history=True)
    assert state is not None and state.history is not None
    assert [e.kind for e in state.history] == kinds
    without_input = await env.client.get_status(iid, show_input=False)
    assert without_input is not None and without_input.input is None


async def test_start_at_delays_the_start(env: Env) -> None:
    start_at = datetime.now(UTC) + timedelta(seconds=0.5)
    iid = await env.client.start_new("clock", start_at=start_at)
    state = await env.client.get_status(iid)
    assert state is not None and state.runtime_status is tl.Status.PENDING
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert isinstance(state.output, datetime)
    assert state.output >= start_at


async def test_start_at_rejects_naive_datetime(env: Env) -> None:
    with pytest.raises(ValueError, match="aware"):
        await env.client.start_new("clock", start_at=datetime.now() + timedelta(seconds=1))


def test_sync_client(sync_env: SyncEnv) -> None:
    client = sync_env.client
    iid = client.start_new("chain", "Oslo", instance_id="sync-1")
    state = client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == ["Hello Tokyo!", "Hello Seattle!", "Hello Oslo!"]
    waiter = client.start_new("wait_event")
    assert client.wait_for_start(waiter, timeout=DONE).runtime_status is not tl.Status.PENDING
    client.raise_event(waiter, "approval", {"ok": True})
    assert client.wait_for_completion(waiter, timeout=DONE).output == {"ok": True}
    running = client.start_new("wait_event", instance_id="sync-2")
    with pytest.raises(tl.InstanceExistsError):
        client.start_new("wait_event", instance_id=running)
    with pytest.raises(TimeoutError):
        client.wait_for_completion("sync-2", timeout=0.2)
    client.terminate("sync-2", "bye")
    assert client.wait_for_completion("sync-2", timeout=DONE).output == "bye"
    page = client.query(statuses=[tl.Status.COMPLETED], page_size=10)
    assert {s.instance_id for s in page.items} == {iid, waiter}
    assert [e.kind for e in client.get_history(iid)][-1] == "ExecutionCompleted"
    assert client.purge(iid) == 1
    assert client.get_status(iid) is None


async def test_event_raised_before_scheduled_start_is_kept(env: Env) -> None:
    start_at = datetime.now(UTC) + timedelta(seconds=0.5)
    iid = await env.client.start_new("wait_event", start_at=start_at)
    await env.client.raise_event(iid, "Approval", "early")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == "early"


async def test_terminate_scheduled_instance_before_it_starts(env: Env) -> None:
    start_at = datetime.now(UTC) + timedelta(seconds=30)
    iid = await env.client.start_new("clock", start_at=start_at)
    await env.client.terminate(iid, "never mind")
    state = await env.client.wait_for_completion(iid, timeout=2)
    assert state.runtime_status is tl.Status.TERMINATED
    assert state.output == "never mind"
