"""Failures: details on failed instances, caught and uncaught TaskFailedError, unknown
names, unserialisable input, instance id reuse and bad store URLs."""

from __future__ import annotations

import pytest
from envs import Env

import taskloom as tl

DONE = 20.0


class Opaque:
    """A type the default data converter does not know."""


def _chain(details: tl.FailureDetails | None) -> list[tl.FailureDetails]:
    found = []
    while details is not None:
        found.append(details)
        details = details.inner
    return found


async def test_uncaught_task_failed_error_fails_instance(env: Env) -> None:
    iid = await env.client.start_new("uncaught_activity_failure")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.FAILED
    details = state.failure_details
    assert details is not None
    assert details.error_type.endswith("TaskFailedError")
    assert "activity exploded" in details.message
    assert "always_fails" in details.message
    assert details.stack_trace
    assert details.is_caused_by(ValueError)
    root = _chain(details)[-1]
    assert root.error_type == "ValueError"
    assert root.message == "activity exploded"
    assert root.stack_trace is not None and "always_fails" in root.stack_trace
    assert state.output is None


async def test_caught_task_failed_error_has_details(env: Env) -> None:
    iid = await env.client.start_new("caught_activity_failure")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == {
        "error_type": "ValueError",
        "message": "caught explosion",
        "has_trace": True,
    }


async def test_orchestrator_exception_failure_details(env: Env) -> None:
    iid = await env.client.start_new("raises_directly")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.FAILED
    details = state.failure_details
    assert details is not None
    assert details.error_type == "KeyError"
    assert "missing-key-in-orchestrator" in details.message
    assert details.stack_trace is not None
    assert "raises_directly" in details.stack_trace
    assert "KeyError" in details.stack_trace


async def test_task_failed_message_reads_well(env: Env) -> None:
    iid = await env.client.start_new("uncaught_activity_failure")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.failure_details is not None
    assert "activity activity" not in state.failure_details.message


async def test_unknown_activity_fails_instance_naming_it(env: Env) -> None:
    iid = await env.client.start_new("calls_unknown_activity")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.FAILED
    assert state.failure_details is not None
    assert "NoSuchActivity" in state.failure_details.message


async def test_unknown_orchestrator_fails_instance_naming_it(env: Env) -> None:
    iid = await env.client.start_new("NoSuchOrchestrator", {"x": 1})
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.FAILED
    assert state.failure_details is not None
    assert "NoSuchOrchestrator" in state.failure_details.message


async def test_unserialisable_input_raises_and_stores_nothing(env: Env) -> None:
    with pytest.raises(tl.SerializationError, match="Opaque"):
        await env.client.start_new("chain", {"bad": Opaque()}, instance_id="bad-input")
    assert await env.client.get_status("bad-input") is None
    page = await env.client.query()
    assert page.items == []


async def test_start_existing_running_id_raises(env: Env) -> None:
    iid = await env.client.start_new("wait_event", instance_id="dup-1")
    await env.client.wait_for_start(iid, timeout=DONE)
    with pytest.raises(tl.InstanceExistsError):
        await env.client.start_new("wait_event", instance_id="dup-1")
    with pytest.raises(tl.InstanceExistsError):
        await env.client.start_new("chain", instance_id="dup-1")
    state = await env.client.get_status(iid)
    assert state is not None and state.name == "wait_event"
    await env.client.raise_event(iid, "Approval", "ok")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.output == "ok"


async def test_start_completed_id_replaces_instance(env: Env) -> None:
    iid = await env.client.start_new("chain", "first", instance_id="reuse-1")
    first = await env.client.wait_for_completion(iid, timeout=DONE)
    assert first.output[-1] == "Hello first!"
    again = await env.client.start_new("async_activity", 5, instance_id="reuse-1")
    assert again == "reuse-1"
    second = await env.client.wait_for_completion(iid, timeout=DONE)
    assert second.runtime_status is tl.Status.COMPLETED, second.failure_details
    assert second.name == "async_activity"
    assert second.output == 10
    history = await env.client.get_history(iid)
    assert [e.kind for e in history].count("ExecutionStarted") == 1
    assert (await env.client.query(instance_id_prefix="reuse-")).items[0].instance_id == iid
    assert len((await env.client.query(instance_id_prefix="reuse-")).items) == 1


async def test_wait_for_completion_times_out(env: Env) -> None:
    iid = await env.client.start_new("wait_event")
    with pytest.raises(TimeoutError):
        await env.client.wait_for_completion(iid, timeout=0.3)
    state = await env.client.get_status(iid)
    assert state is not None and state.runtime_status is tl.Status.RUNNING


async def test_wait_for_unknown_instance_raises(env: Env) -> None:
    with pytest.raises(tl.InstanceNotFoundError):
        await env.client.wait_for_completion("nobody-home", timeout=1)


@pytest.mark.parametrize("url", ["mysql://x", "not a url", "redis://localhost:6379/0"])
def test_malformed_store_url_lists_schemes(url: str) -> None:
    with pytest.raises(tl.ConfigurationError) as info:
        tl.Client(url)
    message = str(info.value)
    assert "sqlite:///" in message
    assert "postgresql://" in message


def test_malformed_store_url_open_store() -> None:
    from taskloom.storage import open_store

    with pytest.raises(tl.ConfigurationError, match="sqlite"):
        open_store("mysql://x", hub="h")
    with pytest.raises(tl.ConfigurationError, match="postgresql"):
        tl.AsyncClient("mysql://x", hub="h")


def test_malformed_store_url_leaks_no_thread() -> None:
    import threading

    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(tl.ConfigurationError):
        tl.Client("mysql://x")
    leaked = [t for t in threading.enumerate() if t.ident not in before]
    assert leaked == []
