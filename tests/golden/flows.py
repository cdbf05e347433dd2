"""The orchestrations whose histories are kept as golden files (``tests/golden/*.json``).

``tests/golden/record.py`` runs each in :class:`taskloom.testing.TestEnv` and stores the
history; ``tests/unit/test_golden.py`` replays the stored histories against this code.
Change an orchestrator here only together with a new recording: the point of the golden
files is to catch replay changes that would break instances already running.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import taskloom as tl

Gen = Generator[Any, Any, Any]

app = tl.App("golden")


# -- activities -------------------------------------------------------------------------


@app.activity
def greet(name: str) -> str:
    return f"Hello {name}"


@app.activity
def shout(text: str) -> str:
    return text.upper() + "!"


@app.activity
def square(n: int) -> int:
    return n * n


@app.activity
def flaky(payload: dict[str, Any]) -> str:
    # Fails on the first attempt (task #0) and succeeds on the retry: deterministic.
    if tl.activity_info().task_id == 0:
        raise ConnectionError(f"{payload['service']} unavailable")
    return f"{payload['service']} ok"


# -- orchestrators ----------------------------------------------------------------------


@app.orchestrator
def activity_chain(ctx: tl.OrchestrationContext, name: str) -> Gen:
    greeting = yield ctx.call_activity(greet, name)
    loud = yield ctx.call_activity(shout, greeting)
    return {"greeting": greeting, "loud": loud}


@app.orchestrator
def fan_out_fan_in(ctx: tl.OrchestrationContext, count: int) -> Gen:
    squares = yield ctx.task_all([ctx.call_activity(square, n) for n in range(count)])
    ctx.set_custom_status({"squares": len(squares)})
    return sum(squares)


@app.orchestrator
def timer_or_event(ctx: tl.OrchestrationContext) -> Gen:
    approval = ctx.wait_for_external_event("Approval")
    timeout = ctx.create_timer(ctx.current_utc_datetime + timedelta(hours=72))
    winner = yield ctx.task_any([approval, timeout])
    if winner is timeout:
        first = "TimedOut"
    else:
        timeout.cancel()
        first = "Approved" if approval.result["approved"] else "Rejected"
    # A second round nobody answers: the timer wins.
    late = ctx.wait_for_external_event("Escalation")
    deadline = ctx.create_timer(timedelta(minutes=30))
    second = yield ctx.task_any([late, deadline])
    return {"first": first, "escalated": second is late}


@app.orchestrator
def retry_then_success(ctx: tl.OrchestrationContext) -> Gen:
    policy = tl.RetryPolicy(timedelta(seconds=5), 3, backoff_coefficient=2.0)
    return (yield ctx.call_activity(flaky, {"service": "billing"}, retry_policy=policy))


@app.orchestrator
def child_greeter(ctx: tl.OrchestrationContext, name: str) -> Gen:
    return (yield ctx.call_activity(greet, name))


@app.orchestrator
def parent_with_children(ctx: tl.OrchestrationContext, names: list[str]) -> Gen:
    first = yield ctx.call_sub_orchestrator(child_greeter, names[0])
    rest = yield ctx.task_all(
        [
            ctx.call_sub_orchestrator(child_greeter, n, instance_id=f"{ctx.instance_id}-{n}")
            for n in names[1:]
        ]
    )
    return [first, *rest]


@app.orchestrator
def countdown(ctx: tl.OrchestrationContext, n: int) -> Gen:
    yield ctx.call_activity(square, n)
    if n > 0:
        ctx.continue_as_new(n - 1)
        return None
    return {"done": str(ctx.new_uuid())}


# -- what to record ---------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """One golden recording: start ``orchestrator`` with ``input``, then ``drive`` it."""

    name: str
    orchestrator: str
    input: Any = None
    drive: Callable[[Any, str], None] | None = None


def _approve(env: Any, iid: str) -> None:
    """Approve in a later episode, then let the 30-minute escalation deadline pass.

    Runs without time skipping, so the 72-hour timer cannot fire first."""
    env.client.wait_for_start(iid, timeout=10)
    env.client.raise_event(iid, "Approval", {"approved": True})
    deadline = time.monotonic() + 10
    while not any(
        e.kind == "TimerCreated" and e.event_id == 1 for e in env.client.get_history(iid)
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{iid} did not reach its escalation timer")
        time.sleep(0.01)
    env.advance(timedelta(minutes=31))


FLOWS: list[Flow] = [
    Flow("activity_chain", "activity_chain", "Ada"),
    Flow("fan_out_fan_in", "fan_out_fan_in", 4),
    Flow("timer_or_event", "timer_or_event", None, _approve),
    Flow("retry_then_success", "retry_then_success"),
    Flow("sub_orchestration", "parent_with_children", ["Ada", "Grace", "Linus"]),
    Flow("continue_as_new", "countdown", 2),
]
