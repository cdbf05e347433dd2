"""The app of the tracing end-to-end tests (``tests/e2e/test_traces.py``): an
orchestration with an activity, a timer, a sub-orchestration and an external event; and
one whose activity holds (writing its pid to ``TASKLOOM_TEST_MARK``) until the file
``TASKLOOM_TEST_GATE`` exists, so the test can kill the worker running it.
``TASKLOOM_TEST_HUB`` names the hub."""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path

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


@app.activity
def hold(_: object) -> int:
    mark = Path(os.environ["TASKLOOM_TEST_MARK"])
    gate = Path(os.environ["TASKLOOM_TEST_GATE"])
    if not mark.exists():
        mark.write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never opened {gate}")
        time.sleep(0.02)
    return os.getpid()


@app.orchestrator
def gated(ctx: tl.OrchestrationContext):  # type: ignore[no-untyped-def]
    return (yield ctx.call_activity(hold))
