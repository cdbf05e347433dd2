"""External events, timers, task_any races, continue_as_new and custom status."""

from __future__ import annotations

from typing import Any

import pytest
from apps import app
from envs import OPTIONS, Env

import taskloom as tl
from taskloom.runtime.worker import Worker

DONE = 20.0


async def test_events_raised_before_wait_are_buffered_fifo(env: Env) -> None:
    iid = await env.client.start_new("collect_events", 3)
    # Raised at once, likely before the orchestrator even ran: buffered, in order.
    for n in range(3):
        await env.client.raise_event(iid, "Item", {"n": n})
    await env.client.raise_event(iid, "Done", "bye")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == {"items": [{"n": 0}, {"n": 1}, {"n": 2}], "done": "bye"}


async def test_event_raised_after_wait(env: Env) -> None:
    iid = await env.client.start_new("wait_event")
    await env.client.wait_for_start(iid, timeout=DONE)
    await env.wait_until(lambda: _has_kind(env, iid, "OrchestratorStarted"), what="first episode")
    await env.client.raise_event(iid, "Approval", {"approved": True})
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.output == {"approved": True}


@pytest.mark.parametrize("name", ["approval", "APPROVAL", "aPpRoVaL"])
async def test_event_names_ignore_case(env: Env, name: str) -> None:
    iid = await env.client.start_new("wait_event")
    await env.client.raise_event(iid, name, name)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == name


async def test_event_wait_timeout_raises_task_timeout_error(env: Env) -> None:
    iid = await env.client.start_new("event_with_timeout", 0.2)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output["timed_out"] is True
    assert "Approval" in state.output["message"]


async def test_event_wait_with_timeout_event_wins(env: Env) -> None:
    iid = await env.client.start_new("event_with_timeout", 30)
    await env.client.raise_event(iid, "Approval", 7)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.output == {"timed_out": False, "value": 7}


async def test_timers_relative_and_absolute(env: Env) -> None:
    iid = await env.client.start_new("sleeper", 0.2)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output >= 0.4
    kinds = [e.kind for e in await env.client.get_history(iid)]
    assert kinds.count("TimerCreated") == 2
    assert kinds.count("TimerFired") == 2


async def test_task_any_timer_wins(env: Env) -> None:
    iid = await env.client.start_new("approval_race", 0.2)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.output == {"status": "TimedOut"}


@pytest.mark.parametrize(("approved", "expected"), [(True, "Approved"), (False, "Rejected")])
async def test_task_any_event_wins_and_timer_is_cancelled(
    env: Env, approved: bool, expected: str
) -> None:
    iid = await env.client.start_new("approval_race", 3600)
    await env.client.raise_event(iid, "Approval", {"approved": approved})
    # Completes without waiting for the hour-long timer it cancelled.
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == {"status": expected}


async def test_continue_as_new_counter(env: Env) -> None:
    iid = await env.client.start_new("counter", 0, instance_id="counter-1")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == {"n": 5, "square": 25}
    assert state.input == 5
    history = await env.client.get_history(iid)
    kinds = [e.kind for e in history]
    # Only the last run's history is kept.
    assert kinds.count("ExecutionStarted") == 1
    assert kinds.count("TaskScheduled") == 1
    assert kinds[-1] == "ExecutionCompleted"


async def test_continue_as_new_save_events_one_by_one(env: Env) -> None:
    iid = await env.client.start_new("event_accumulator", [])
    for n, so_far in ((1, []), (2, [1]), (3, [1, 2])):
        await env.wait_until(lambda s=so_far: _input_is(env, iid, s), what=f"input {so_far}")
        await env.client.raise_event(iid, "Add", n)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == [1, 2, 3]


async def test_continue_as_new_save_events_buffered_before_wait(env: Env) -> None:
    iid = await env.client.start_new("event_accumulator", [])
    await env.wait_until(lambda: _input_is(env, iid, []), what="first run")
    await env.wait_until(lambda: _has_kind(env, iid, "OrchestratorStarted"), what="episode")
    # One event per episode so none comes in the episode that continues as new.
    for n, so_far in ((1, [1]), (2, [1, 2])):
        await env.client.raise_event(iid, "Add", n)
        await env.wait_until(lambda s=so_far: _input_is(env, iid, s), what=f"input {so_far}")
    await env.client.raise_event(iid, "Add", 3)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.output == [1, 2, 3]


async def test_continue_as_new_save_events_same_episode(env: Env) -> None:
    await env.worker.stop(drain_timeout=1)
    iid = await env.client.start_new("event_accumulator", [])
    for n in (1, 2, 3):
        await env.client.raise_event(iid, "Add", n)
    # All four messages are now waiting, so one episode leases them together.
    worker = Worker(app, env.store, options=OPTIONS)
    await worker.start()
    try:
        state = await env.client.wait_for_completion(iid, timeout=2)
    finally:
        await worker.stop(drain_timeout=1)
    assert state.output == [1, 2, 3]


async def test_custom_status_visible(env: Env) -> None:
    iid = await env.client.start_new("custom_status")

    async def waiting() -> Any:
        state = await env.client.get_status(iid)
        return state is not None and state.custom_status

    status = await env.wait_until(waiting, what="custom status")
    assert status == {"stage": "waiting", "step": 1}
    await env.client.raise_event(iid, "Go", "went")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.output == "went"
    assert state.custom_status == "done"


async def _has_kind(env: Env, iid: str, kind: str) -> bool:
    return any(e.kind == kind for e in await env.client.get_history(iid))


async def _input_is(env: Env, iid: str, expected: Any) -> bool:
    state = await env.client.get_status(iid)
    return state is not None and state.input == expected
