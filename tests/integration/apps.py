"""The app every integration test runs: activities and orchestrators at module level, so
the default data converter can import the dataclasses and the worker can find them."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import taskloom as tl

app = tl.App("itest")

Orch = Generator[Any, Any, Any]


@dataclass(frozen=True)
class Claim:
    """A user type with the values the converter has to tag."""

    claim_id: str
    amount: Decimal
    filed_at: datetime
    tags: list[str]


# -- activities ---------------------------------------------------------------------------


@app.activity
def hello(name: str) -> str:
    return f"Hello {name}!"


@app.activity(name="AsyncDouble")
async def async_double(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * 2


@app.activity(name="GetInfo")
def get_info() -> dict[str, Any]:
    info = tl.activity_info()
    return {
        "instance_id": info.instance_id,
        "task_id": info.task_id,
        "name": info.name,
        "attempt": info.attempt,
    }


@app.activity
def square(x: int) -> int:
    return x * x


@app.activity
def flaky(times_to_fail: int) -> int:
    """Fails on its first ``times_to_fail`` attempts, then returns the attempt number."""
    attempt = tl.activity_info().attempt
    if attempt <= times_to_fail:
        raise RuntimeError(f"flaky failure on attempt {attempt}")
    return attempt


@app.activity
def flaky_counted(spec: dict[str, Any]) -> int:
    """Counts its calls in a file; fails the first ``fail`` calls, then returns the count."""
    path = Path(spec["counter"])
    calls = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(calls))
    if calls <= spec["fail"]:
        raise RuntimeError(f"flaky failure on call {calls}")
    return calls


@app.activity
def always_fails(message: str) -> None:
    raise ValueError(message)


@app.activity
def fails_until_flag(path: str) -> str:
    if not Path(path).exists():
        raise RuntimeError(f"flag file {path} is missing")
    return "flag found"


@app.activity
def double_claim(claim: Claim) -> Claim:
    assert isinstance(claim, Claim), type(claim)
    return Claim(
        claim.claim_id,
        claim.amount * 2,
        claim.filed_at + timedelta(days=1),
        [*claim.tags, "doubled"],
    )


# -- orchestrators ------------------------------------------------------------------------


@app.orchestrator
def chain(ctx: tl.OrchestrationContext) -> Orch:
    a = yield ctx.call_activity(hello, "Tokyo")
    b = yield ctx.call_activity("hello", "Seattle")
    c = yield ctx.call_activity(hello, ctx.get_input() or "London")
    return [a, b, c]


@app.orchestrator
def async_activity(ctx: tl.OrchestrationContext, x: int) -> Orch:
    return (yield ctx.call_activity(async_double, x))


@app.orchestrator
def info(ctx: tl.OrchestrationContext) -> Orch:
    first = yield ctx.call_activity(square, 2)
    found = yield ctx.call_activity(get_info)
    return {"first": first, "info": found}


@app.orchestrator
def fan_out(ctx: tl.OrchestrationContext, n: int) -> Orch:
    results = yield ctx.task_all([ctx.call_activity(square, i) for i in range(n)])
    return {"results": results, "sum": sum(results)}


@app.orchestrator
def retry(ctx: tl.OrchestrationContext, spec: dict[str, Any]) -> Orch:
    policy = tl.RetryPolicy(
        first_retry_interval=timedelta(seconds=0.1),
        max_number_of_attempts=spec["max_attempts"],
    )
    return (yield ctx.call_activity(flaky_counted, spec, retry_policy=policy))


@app.orchestrator
def retry_attempt_info(ctx: tl.OrchestrationContext) -> Orch:
    policy = tl.RetryPolicy(first_retry_interval=timedelta(seconds=0.1), max_number_of_attempts=3)
    return (yield ctx.call_activity_with_retry(flaky, policy, 2))


@app.orchestrator
def uncaught_activity_failure(ctx: tl.OrchestrationContext) -> Orch:
    yield ctx.call_activity(always_fails, "activity exploded")
    return "unreachable"


@app.orchestrator
def caught_activity_failure(ctx: tl.OrchestrationContext) -> Orch:
    try:
        yield ctx.call_activity(always_fails, "caught explosion")
    except tl.TaskFailedError as exc:
        return {
            "error_type": exc.details.error_type,
            "message": exc.details.message,
            "has_trace": bool(exc.details.stack_trace),
        }
    return "unreachable"


@app.orchestrator
def raises_directly(ctx: tl.OrchestrationContext) -> Orch:
    yield ctx.call_activity(square, 3)
    raise KeyError("missing-key-in-orchestrator")


@app.orchestrator
def calls_unknown_activity(ctx: tl.OrchestrationContext) -> Orch:
    return (yield ctx.call_activity("NoSuchActivity", 1))


@app.orchestrator
def child(ctx: tl.OrchestrationContext, x: int) -> Orch:
    squared = yield ctx.call_activity(square, x)
    return {"id": ctx.instance_id, "parent": ctx.parent_instance_id, "result": squared}


@app.orchestrator
def failing_child(ctx: tl.OrchestrationContext) -> Orch:
    yield ctx.call_activity(always_fails, "child exploded")


@app.orchestrator
def parent_default_id(ctx: tl.OrchestrationContext) -> Orch:
    return (yield ctx.call_sub_orchestrator(child, 3))


@app.orchestrator
def parent_explicit_id(ctx: tl.OrchestrationContext, child_id: str) -> Orch:
    return (yield ctx.call_sub_orchestrator("child", 4, instance_id=child_id))


@app.orchestrator
def parent_catches_child(ctx: tl.OrchestrationContext) -> Orch:
    try:
        yield ctx.call_sub_orchestrator(failing_child)
    except tl.TaskFailedError as exc:
        return {"caught": str(exc), "details": exc.details.message}
    return "unreachable"


@app.orchestrator
def parent_fails_with_child(ctx: tl.OrchestrationContext) -> Orch:
    yield ctx.call_sub_orchestrator(failing_child)


@app.orchestrator
def wait_event(ctx: tl.OrchestrationContext) -> Orch:
    return (yield ctx.wait_for_external_event("Approval"))


@app.orchestrator
def parent_of_waiter(ctx: tl.OrchestrationContext) -> Orch:
    return (yield ctx.call_sub_orchestrator(wait_event, instance_id=f"{ctx.instance_id}-child"))


@app.orchestrator
def collect_events(ctx: tl.OrchestrationContext, n: int) -> Orch:
    items = []
    for _ in range(n):
        items.append((yield ctx.wait_for_external_event("Item")))
    other = yield ctx.wait_for_external_event("Done")
    return {"items": items, "done": other}


@app.orchestrator
def event_with_timeout(ctx: tl.OrchestrationContext, seconds: float) -> Orch:
    try:
        value = yield ctx.wait_for_external_event("Approval", timeout=timedelta(seconds=seconds))
    except tl.TaskTimeoutError as exc:
        return {"timed_out": True, "message": str(exc)}
    return {"timed_out": False, "value": value}


@app.orchestrator
def sleeper(ctx: tl.OrchestrationContext, seconds: float) -> Orch:
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    absolute = ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=seconds))
    yield absolute
    return (ctx.current_utc_datetime - start).total_seconds()


@app.orchestrator
def approval_race(ctx: tl.OrchestrationContext, timeout_seconds: float) -> Orch:
    approval = ctx.wait_for_external_event("Approval")
    timeout = ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=timeout_seconds))
    winner = yield ctx.task_any([approval, timeout])
    if winner is timeout:
        return {"status": "TimedOut"}
    timeout.cancel()
    return {"status": "Approved" if approval.result["approved"] else "Rejected"}


@app.orchestrator
def counter(ctx: tl.OrchestrationContext, n: int) -> Orch:
    value = yield ctx.call_activity(square, n)
    if n < 5:
        ctx.continue_as_new(n + 1)
        return None
    return {"n": n, "square": value}


@app.orchestrator
def event_accumulator(ctx: tl.OrchestrationContext, items: list[Any]) -> Orch:
    item = yield ctx.wait_for_external_event("Add")
    items = [*items, item]
    if len(items) < 3:
        ctx.continue_as_new(items, save_events=True)
        return None
    return items


@app.orchestrator
def custom_status(ctx: tl.OrchestrationContext) -> Orch:
    ctx.set_custom_status({"stage": "waiting", "step": 1})
    data = yield ctx.wait_for_external_event("Go")
    ctx.set_custom_status("done")
    return data


@app.orchestrator
def rewindable(ctx: tl.OrchestrationContext, flag: str) -> Orch:
    first = yield ctx.call_activity(hello, "before")
    second = yield ctx.call_activity(fails_until_flag, flag)
    return [first, second]


@app.orchestrator
def clock(ctx: tl.OrchestrationContext) -> Orch:
    yield ctx.call_activity(square, 1)
    return ctx.current_utc_datetime


@app.orchestrator
def claims(ctx: tl.OrchestrationContext, claim: Claim) -> Orch:
    assert isinstance(claim, Claim), type(claim)
    doubled = yield ctx.call_activity(double_claim, claim)
    return {"original": claim, "doubled": doubled, "total": claim.amount + doubled.amount}


@app.orchestrator
def approval_72h(ctx: tl.OrchestrationContext) -> Orch:
    approval = ctx.wait_for_external_event("Approval")
    timeout = ctx.create_timer(ctx.current_utc_datetime + timedelta(hours=72))
    winner = yield ctx.task_any([approval, timeout])
    if winner is timeout:
        return {"status": "TimedOut", "at": ctx.current_utc_datetime}
    timeout.cancel()
    status = "Approved" if approval.result["approved"] else "Rejected"
    return {"status": status, "at": ctx.current_utc_datetime}


@app.orchestrator
def one_hour(ctx: tl.OrchestrationContext) -> Orch:
    yield ctx.create_timer(timedelta(hours=1))
    return ctx.current_utc_datetime
