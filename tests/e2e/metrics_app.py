"""The app of ``tests/e2e/test_metrics.py``: jobs with an activity and a timer, and one
whose activity fails. ``TASKLOOM_TEST_HUB`` names the hub; activities wait until the
file ``TASKLOOM_TEST_GATE`` exists (so the test sees a backlog before it drains)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import taskloom as tl

app = tl.App(os.environ.get("TASKLOOM_TEST_HUB", "metricsapp"))


def _wait_for_gate() -> None:
    gate = Path(os.environ.get("TASKLOOM_TEST_GATE", "/nonexistent"))
    deadline = time.monotonic() + 120
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test never opened {gate}")
        time.sleep(0.02)


@app.activity
def work(seconds: float) -> float:
    _wait_for_gate()
    time.sleep(seconds)
    return seconds


@app.activity
def broken(_: object) -> None:
    _wait_for_gate()
    raise ValueError("broken on purpose")


@app.orchestrator
def job(ctx: tl.OrchestrationContext, seconds: float):  # type: ignore[no-untyped-def]
    done = yield ctx.call_activity(work, seconds)
    yield ctx.create_timer(timedelta(milliseconds=50))
    return done


@app.orchestrator
def doomed(ctx: tl.OrchestrationContext):  # type: ignore[no-untyped-def]
    yield ctx.call_activity(broken)
