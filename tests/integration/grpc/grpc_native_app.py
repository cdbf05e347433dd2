"""The native taskloom app served beside SDK workers (``serve --grpc PORT MODULE:APP``):
its hub is the test's (``G1_HUB``)."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import taskloom as tl

app = tl.App(os.environ.get("G1_HUB", "g1native"))


@app.activity
def native_activity(key: str) -> str:
    return f"native ran {key} in {os.getpid()}"


@app.orchestrator
def native_side(ctx: tl.OrchestrationContext, key: str) -> Generator[Any, Any, Any]:
    mine = yield ctx.call_activity("native_activity", key)
    theirs = yield ctx.call_activity("sdk_activity", key)
    return [mine, theirs]
