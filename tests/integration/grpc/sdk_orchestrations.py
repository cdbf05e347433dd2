"""Orchestrations and activities written with the official ``durabletask`` SDK, run by
SDK workers on a taskloom sidecar (the worker-side tests and ``sdk_worker_script.py``).

Activities that must fail a given number of times count their calls in files under the
directory named by ``G1_STATE`` (the worker may be another process).
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from durabletask import entities as dte
from durabletask import task


def _state() -> Path:
    return Path(os.environ.get("G1_STATE", "/tmp"))


def greet(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def flaky(ctx: task.ActivityContext, key: str) -> str:
    """Fails on its first two calls for ``key``, then succeeds."""
    counter = _state() / f"flaky-{key}"
    calls = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(calls))
    if calls <= 2:
        raise RuntimeError(f"flaky failure {calls}")
    return f"ok after {calls}"


def fails_once(ctx: task.ActivityContext, key: str) -> str:
    """Fails on its first call for ``key`` (so a rewind's rerun succeeds)."""
    marker = _state() / f"failed-once-{key}"
    if not marker.exists():
        marker.write_text("")
        raise RuntimeError(f"first call for {key} fails")
    return f"{key} worked"


def fragile_child(ctx: task.OrchestrationContext, key: str) -> Any:
    result = yield ctx.call_activity(fails_once, input=key)
    return result


def fragile_parent(ctx: task.OrchestrationContext, key: str) -> Any:
    """A successful activity, then a child that fails the first time: rewound, the
    activity is not run again and the child runs its failed activity again."""
    first = yield ctx.call_activity(greet, input=key)
    second = yield ctx.call_activity(fails_once, input=f"{key}-own")
    child_result = yield ctx.call_sub_orchestrator(
        fragile_child, input=f"{key}-child", instance_id=f"{ctx.instance_id}-child"
    )
    return [first, second, child_result]


def slow(ctx: task.ActivityContext, key: str) -> str:
    """Marks that it started, then blocks until a ``release-KEY`` file appears (a
    worker killed meanwhile never finishes it; another worker's copy is released)."""
    (_state() / f"started-{key}-{os.getpid()}").write_text("")
    _count_run(key)
    release = _state() / f"release-{key}"
    while not release.exists():
        time.sleep(0.05)
    return f"slow done by {os.getpid()}"


def _count_run(key: str) -> None:
    runs = _state() / f"runs-{key}"
    runs.write_text(str(int(runs.read_text()) + 1 if runs.exists() else 1))


def runs(key: str) -> int:
    """How many times ``slow`` or ``slow_entity`` started for ``key``."""
    path = _state() / f"runs-{key}"
    return int(path.read_text()) if path.exists() else 0


def slow_entity(ctx: dte.EntityContext, key: str) -> None:
    """An SDK entity whose operations count their runs, then block (as ``slow`` does)
    until a ``release-KEY`` file appears, and add one to the state."""
    _count_run(key)
    release = _state() / f"release-{key}"
    while not release.exists():
        time.sleep(0.05)
    ctx.set_state(ctx.get_state(int, 0) + 1)


def child(ctx: task.OrchestrationContext, n: int) -> Any:
    doubled = yield ctx.call_activity(greet, input=f"child {n}")
    return {"n": n, "greeting": doubled}


def counter(ctx: task.OrchestrationContext, n: int) -> Any:
    """Continues as new until ``n`` reaches 3."""
    if n >= 3:
        return n
    yield ctx.create_timer(timedelta(milliseconds=10))
    ctx.continue_as_new(n + 1)
    return None


def everything(ctx: task.OrchestrationContext, key: str) -> Any:
    """An activity, a timer, an external event, a sub-orchestration, a retried activity
    and custom status, in one run."""
    greeting = yield ctx.call_activity(greet, input=key)
    ctx.set_custom_status({"step": "timer"})
    yield ctx.create_timer(timedelta(milliseconds=200))
    ctx.set_custom_status({"step": "event"})
    approval = yield ctx.wait_for_external_event("approve")
    sub = yield ctx.call_sub_orchestrator(child, input=7, instance_id=f"{ctx.instance_id}-child")
    policy = task.RetryPolicy(
        first_retry_interval=timedelta(milliseconds=50), max_number_of_attempts=4
    )
    retried = yield ctx.call_activity(flaky, input=key, retry_policy=policy)
    ctx.set_custom_status({"step": "done"})
    return {"greeting": greeting, "approval": approval, "sub": sub, "retried": retried}


def fails(ctx: task.OrchestrationContext, _: Any) -> Any:
    yield ctx.call_activity(greet, input="first")
    raise ValueError("orchestration failed on purpose")


def sdk_side(ctx: task.OrchestrationContext, key: str) -> Any:
    """The SDK's part of the shared-hub test: its own activity and the native one."""
    mine = yield ctx.call_activity(sdk_activity, input=key)
    theirs = yield ctx.call_activity("native_activity", input=key)
    return [mine, theirs]


def sdk_activity(ctx: task.ActivityContext, key: str) -> str:
    return f"sdk ran {key} in {os.getpid()}"


def waits_slowly(ctx: task.OrchestrationContext, key: str) -> Any:
    result = yield ctx.call_activity(slow, input=key)
    return result
