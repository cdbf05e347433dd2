"""An app for the versioning e2e test: its version comes from ``TASKLOOM_TEST_VERSION``,
its hub from ``TASKLOOM_TEST_HUB``; every orchestrator episode appends
``instance,instance version,worker version`` to ``TASKLOOM_TEST_LOG``."""

from __future__ import annotations

import os
from typing import Any

import taskloom as tl

VERSION = os.environ.get("TASKLOOM_TEST_VERSION", "1")
app = tl.App(os.environ.get("TASKLOOM_TEST_HUB", "versioned"), version=VERSION,
             version_match="exact")  # fmt: skip


def _log(ctx: tl.OrchestrationContext) -> None:
    with open(os.environ["TASKLOOM_TEST_LOG"], "a") as f:
        f.write(f"{ctx.instance_id},{ctx.version},{VERSION}\n")


@app.activity
def echo(x: Any) -> Any:
    return x


@app.orchestrator
def child(ctx: tl.OrchestrationContext) -> Any:
    _log(ctx)
    return (yield ctx.call_activity("echo", ctx.version))


@app.orchestrator
def flow(ctx: tl.OrchestrationContext) -> Any:
    _log(ctx)
    yield ctx.wait_for_external_event("go")
    _log(ctx)
    sub = yield ctx.call_sub_orchestrator("child")
    return {"version": ctx.version, "ran_on": VERSION, "child": sub}
