"""The app that the HTTP integration tests serve with ``taskloom serve``."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Generator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

import taskloom as tl
import taskloom.http

app = tl.App("httptest")

Orch = Generator[Any, Any, Any]


@app.activity
def double(x: int) -> int:
    return x * 2


@app.activity
def explode(message: str) -> None:
    raise RuntimeError(message)


@app.activity
def slow_write(path: str) -> str:
    """Takes a while, then leaves a mark: shows that SIGTERM lets it finish."""
    time.sleep(1.5)
    target = Path(str(path))
    # The schemathesis run starts this with arbitrary input: write only into temp dirs.
    if target.is_absolute() and target.resolve().is_relative_to(Path(tempfile.gettempdir())):
        target.write_text("done")
    return "done"


@app.orchestrator
def slow(ctx: tl.OrchestrationContext) -> Orch:
    return (yield ctx.call_activity(slow_write, ctx.get_input()))


@app.orchestrator
def add_one(ctx: tl.OrchestrationContext) -> Orch:
    """Completes at once: doubles its (integer) input."""
    value = ctx.get_input()
    doubled = yield ctx.call_activity(double, value if isinstance(value, int) else 0)
    return doubled + 1


@app.orchestrator
def wait_approval(ctx: tl.OrchestrationContext) -> Orch:
    """Waits (up to an hour) for the Approval event and returns its data."""
    ctx.set_custom_status("waiting")
    approval = ctx.wait_for_external_event("Approval")
    timeout = ctx.create_timer(ctx.current_utc_datetime + timedelta(hours=1))
    winner = yield ctx.task_any([approval, timeout])
    if winner is timeout:
        return {"approved": None}
    timeout.cancel()
    return {"approved": approval.result}


@app.orchestrator
def fail_once(ctx: tl.OrchestrationContext) -> Orch:
    """Fails with the input as the error message."""
    yield ctx.call_activity(explode, str(ctx.get_input()))


# -- the app's own routes, served beside the management API -----------------------


@app.api.post("/api/double/{value}", status_code=202)
async def start_double(
    value: int, request: Request, client: Annotated[tl.AsyncClient, Depends(taskloom.http.client)]
) -> Response:
    iid = await client.start_new("add_one", value)
    return client.create_check_status_response(request, iid)  # type: ignore[no-any-return]


@app.api.get("/api/link/{instance_id}")
async def approval_link(
    instance_id: str, client: Annotated[tl.AsyncClient, Depends(taskloom.http.client)]
) -> dict[str, str]:
    url = await client.create_event_link(
        instance_id, "Approval", timedelta(minutes=5), data={"by": "link"}
    )
    return {"url": url}
