"""The app of the tracing end-to-end test (``tests/e2e/test_traces.py``): an
orchestration with an activity, a timer, a sub-orchestration and an external event.
``TASKLOOM_TEST_HUB`` names the hub."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import taskloom as tl

app = tl.App(os.environ.get("TASKLOOM_TEST_HUB", "traceapp"))
log = logging.getLogger("trace_app")


@app.activity
def greet(name: str) -> str:
    log.info("greeting %s", name)
    return f"hello {name}"


@app.orchestrator
def child(ctx: tl.OrchestrationContext, x: int):  # type: ignore[no-untyped-def]
    return (yield ctx.call_activity(greet, f"child {x}"))


@app.orchestrator
def checkout(ctx: tl.OrchestrationContext, x: int):  # type: ignore[no-untyped-def]
    a = yield ctx.call_activity(greet, "parent")
    yield ctx.create_timer(timedelta(milliseconds=300))
    b = yield ctx.call_sub_orchestrator(child, x)
    yield ctx.wait_for_external_event("approved")
    return [a, b]
