"""The app the dashboard's tests serve with ``taskloom serve``; its hub is ``$DASH_HUB``
(a fresh one per test on the shared PostgreSQL database)."""

from __future__ import annotations

import os
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import taskloom as tl

app = tl.App(os.environ.get("DASH_HUB", "dashtest"))

Orch = Generator[Any, Any, Any]


@app.activity
def double(x: int) -> int:
    return x * 2


@app.activity
def always_fails(message: str) -> None:
    raise RuntimeError(message)


@app.orchestrator
def chain(ctx: tl.OrchestrationContext) -> Orch:
    """An activity, then a sub-orchestration: a short complete history."""
    first = yield ctx.call_activity(double, ctx.get_input() or 1)
    second = yield ctx.call_sub_orchestrator(child, first)
    return second


@app.orchestrator
def child(ctx: tl.OrchestrationContext) -> Orch:
    return (yield ctx.call_activity(double, ctx.get_input()))


@app.orchestrator
def retrying(ctx: tl.OrchestrationContext) -> Orch:
    """Fails twice quickly, then waits an hour for the third attempt: "retrying"."""
    policy = tl.RetryPolicy(
        first_retry_interval=timedelta(milliseconds=50),
        max_number_of_attempts=4,
        backoff_coefficient=100_000.0,  # 50 ms, then 5000 s
    )
    yield ctx.call_activity(always_fails, "disk on fire", retry_policy=policy)


@app.orchestrator
def approval(ctx: tl.OrchestrationContext) -> Orch:
    """Waits for the event "Approve" (and a one-day timer)."""
    ctx.set_custom_status({"step": "waiting for approval"})
    decision = yield ctx.wait_for_external_event("Approve", timeout=timedelta(days=1))
    return {"approved": decision}


@app.orchestrator
def fan_out(ctx: tl.OrchestrationContext) -> Orch:
    """``n`` activities at once: a long history (about 2n events) in few episodes."""
    n = int(ctx.get_input())
    results = yield ctx.task_all([ctx.call_activity(double, i) for i in range(n)])
    return sum(results)


@app.queue_trigger("approvals", max_dequeue_count=1)
def approve_from_queue(message: Any, client: tl.Client) -> None:
    """Raises ``Approve`` on ``message["instance"]``; fails on a message marked bad, which
    goes to ``approvals-poison`` at once."""
    if message.get("bad"):
        raise ValueError(f"cannot approve {message['instance']}: the message is marked bad")
    client.raise_event(message["instance"], "Approve", True)
