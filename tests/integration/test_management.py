"""Managing instances: suspend/resume, terminate, rewind and purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from envs import Env

import taskloom as tl

DONE = 20.0


async def _running(env: Env, iid: str) -> None:
    """Wait until the instance's first episode ran (so it is Running and waiting)."""
    await env.wait_for_status(iid, tl.Status.RUNNING)


# -- suspend / resume ---------------------------------------------------------------------


async def test_suspend_holds_events_until_resume(env: Env) -> None:
    iid = await env.client.start_new("wait_event")
    await _running(env, iid)
    await env.client.suspend(iid, "maintenance")
    await env.wait_for_status(iid, tl.Status.SUSPENDED)
    await env.client.raise_event(iid, "Approval", "while suspended")
    # The event is held: the instance does not complete while suspended.
    with pytest.raises(TimeoutError):
        await env.client.wait_for_completion(iid, timeout=0.5)
    state = await env.client.get_status(iid)
    assert state is not None and state.runtime_status is tl.Status.SUSPENDED
    await env.client.resume(iid, "done")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == "while suspended"
    kinds = [e.kind for e in await env.client.get_history(iid)]
    assert kinds.index("ExecutionSuspended") < kinds.index("ExecutionResumed")


async def test_suspend_then_resume_back_to_running(env: Env) -> None:
    iid = await env.client.start_new("wait_event")
    await _running(env, iid)
    await env.client.suspend(iid)
    await env.wait_for_status(iid, tl.Status.SUSPENDED)
    await env.client.resume(iid)
    await env.wait_for_status(iid, tl.Status.RUNNING)
    await env.client.raise_event(iid, "Approval", 1)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.output == 1


async def test_terminate_suspended_instance(env: Env) -> None:
    iid = await env.client.start_new("wait_event")
    await _running(env, iid)
    await env.client.suspend(iid)
    await env.wait_for_status(iid, tl.Status.SUSPENDED)
    await env.client.terminate(iid, "stop it")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.TERMINATED
    assert state.output == "stop it"


# -- terminate ----------------------------------------------------------------------------


async def test_terminate_running_instance(env: Env) -> None:
    iid = await env.client.start_new("wait_event")
    await _running(env, iid)
    await env.client.terminate(iid, "cancelled by test")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.TERMINATED
    assert state.output == "cancelled by test"
    kinds = [e.kind for e in await env.client.get_history(iid)]
    assert "ExecutionTerminated" in kinds


async def test_terminate_recursive_reaches_running_child(env: Env) -> None:
    iid = await env.client.start_new("parent_of_waiter", instance_id="tparent")
    child_id = "tparent-child"
    await env.wait_for_status(child_id, tl.Status.RUNNING)
    await env.client.terminate(iid, "tear down")
    parent = await env.client.wait_for_completion(iid, timeout=DONE)
    child = await env.client.wait_for_completion(child_id, timeout=DONE)
    assert parent.runtime_status is tl.Status.TERMINATED
    assert child.runtime_status is tl.Status.TERMINATED
    assert parent.output == "tear down"
    assert child.output == "tear down"


async def test_terminate_not_recursive_leaves_child_running(env: Env) -> None:
    iid = await env.client.start_new("parent_of_waiter", instance_id="nparent")
    child_id = "nparent-child"
    await env.wait_for_status(child_id, tl.Status.RUNNING)
    await env.client.terminate(iid, "parent only", recursive=False)
    parent = await env.client.wait_for_completion(iid, timeout=DONE)
    assert parent.runtime_status is tl.Status.TERMINATED
    child = await env.client.get_status(child_id)
    assert child is not None and child.runtime_status is tl.Status.RUNNING
    await env.client.terminate(child_id)
    await env.client.wait_for_completion(child_id, timeout=DONE)


async def test_terminate_finished_instance_raises(env: Env) -> None:
    iid = await env.client.start_new("async_activity", 1)
    await env.client.wait_for_completion(iid, timeout=DONE)
    with pytest.raises(tl.InvalidStateError):
        await env.client.terminate(iid, "too late")
    state = await env.client.get_status(iid)
    assert state is not None and state.runtime_status is tl.Status.COMPLETED


async def test_operations_on_unknown_id_raise_not_found(env: Env) -> None:
    with pytest.raises(tl.InstanceNotFoundError):
        await env.client.terminate("no-such-instance")
    with pytest.raises(tl.InstanceNotFoundError):
        await env.client.raise_event("no-such-instance", "Approval")
    with pytest.raises(tl.InstanceNotFoundError):
        await env.client.suspend("no-such-instance")
    with pytest.raises(tl.InstanceNotFoundError):
        await env.client.rewind("no-such-instance")
    with pytest.raises(tl.InstanceNotFoundError):
        await env.client.get_history("no-such-instance")
    assert await env.client.get_status("no-such-instance") is None


# -- rewind -------------------------------------------------------------------------------


async def test_rewind_failed_instance_completes(env: Env, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    iid = await env.client.start_new("rewindable", str(flag))
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.FAILED
    assert state.failure_details is not None and "flag file" in _messages(state)
    flag.write_text("go")
    await env.client.rewind(iid, "flag is there now")
    state = await env.wait_for_status(iid, tl.Status.COMPLETED, timeout=DONE)
    assert state.output == ["Hello before!", "flag found"]
    assert state.failure_details is None
    history = await env.client.get_history(iid)
    kinds = [e.kind for e in history]
    assert "ExecutionRewound" in kinds
    # What succeeded before the rewind is kept: hello ran once.
    hello_runs = [e for e in history if e.kind == "TaskScheduled" and e.name == "hello"]  # type: ignore[attr-defined]
    assert len(hello_runs) == 1


async def test_rewind_non_failed_instance_raises(env: Env) -> None:
    iid = await env.client.start_new("async_activity", 2)
    await env.client.wait_for_completion(iid, timeout=DONE)
    with pytest.raises(tl.InvalidStateError):
        await env.client.rewind(iid)
    running = await env.client.start_new("wait_event")
    with pytest.raises(tl.InvalidStateError):
        await env.client.rewind(running)
    await env.client.terminate(running)


# -- purge --------------------------------------------------------------------------------


async def test_purge_single_instance(env: Env) -> None:
    iid = await env.client.start_new("chain")
    await env.client.wait_for_completion(iid, timeout=DONE)
    assert await env.client.get_history(iid)
    assert await env.client.purge(iid) == 1
    assert await env.client.get_status(iid) is None
    with pytest.raises(tl.InstanceNotFoundError):
        await env.client.get_history(iid)
    assert await env.client.purge(iid) == 0


async def test_purge_non_terminal_raises(env: Env) -> None:
    iid = await env.client.start_new("wait_event")
    with pytest.raises(tl.InvalidStateError):
        await env.client.purge(iid)
    assert await env.client.get_status(iid) is not None
    await env.client.terminate(iid)
    await env.client.wait_for_completion(iid, timeout=DONE)
    assert await env.client.purge(iid) == 1


async def test_purge_many_by_status_and_time(env: Env) -> None:
    completed = [await env.client.start_new("async_activity", i) for i in range(3)]
    failed = [await env.client.start_new("calls_unknown_activity") for _ in range(2)]
    running = await env.client.start_new("wait_event")
    for iid in completed + failed:
        await env.client.wait_for_completion(iid, timeout=DONE)
    # Purging a status that is not terminal deletes nothing.
    assert await env.client.purge_many(statuses=[tl.Status.RUNNING]) == 0
    assert await env.client.purge_many(statuses=[tl.Status.COMPLETED]) == 3
    for iid in completed:
        assert await env.client.get_status(iid) is None
    future = datetime.now(UTC) + timedelta(hours=1)
    assert await env.client.purge_many(created_from=future) == 0
    assert await env.client.purge_many(created_to=datetime.now(UTC) - timedelta(hours=1)) == 0
    past = datetime.now(UTC) - timedelta(hours=1)
    assert await env.client.purge_many(created_from=past, created_to=future) == 2
    for iid in failed:
        assert await env.client.get_status(iid) is None
    still = await env.client.get_status(running)
    assert still is not None and not still.runtime_status.is_terminal
    await env.client.terminate(running)
    await env.client.wait_for_completion(running, timeout=DONE)
    assert await env.client.purge_many(statuses="Terminated") == 1
    assert (await env.client.query()).items == []


def _messages(state: tl.OrchestrationState) -> str:
    parts = []
    node = state.failure_details
    while node is not None:
        parts.append(node.message)
        node = node.inner
    return " | ".join(parts)
