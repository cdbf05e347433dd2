"""The app that tests/e2e/test_durable_functions_client.py serves with ``taskloom serve``
and drives with the real ``azure-functions-durable`` client.

That client JSON-encodes inputs and event data twice (``df_dumps``, then aiohttp's
``json=``): the HTTP body is a JSON string holding the JSON. Durable Functions keeps the
body as it is, and its Python worker decodes once more; so does :func:`from_sdk` here.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import taskloom as tl

app = tl.App("dfclient")

Orch = Generator[Any, Any, Any]


def from_sdk(value: Any) -> Any:
    """A value the SDK sent: the JSON inside the JSON string."""
    return json.loads(value) if isinstance(value, str) else value


@app.activity
def greet(name: str) -> str:
    return f"Hello {name}!"


@app.activity
def fail_first_time(marker: str) -> str:
    """Fails until the file ``marker`` exists, creating it: rewound, it succeeds."""
    path = Path(marker)
    if not path.exists():
        path.write_text("failed once")
        raise RuntimeError("failing the first time")
    return "fixed"


@app.orchestrator
def hello(ctx: tl.OrchestrationContext) -> Orch:
    ctx.set_custom_status({"step": "greeting"})
    return (yield ctx.call_activity(greet, from_sdk(ctx.get_input())))


@app.orchestrator
def wait_go(ctx: tl.OrchestrationContext) -> Orch:
    """Waits for the ``Go`` event and returns its data."""
    return from_sdk((yield ctx.wait_for_external_event("Go")))


@app.orchestrator
def flaky(ctx: tl.OrchestrationContext) -> Orch:
    return (yield ctx.call_activity(fail_first_time, from_sdk(ctx.get_input())))


if hasattr(app, "entity") and hasattr(tl, "EntityContext"):  # built with the entities issue

    @app.entity
    def Counter(ctx: Any) -> None:
        value = ctx.get_state(lambda: 0)
        if ctx.operation_name == "add":
            ctx.set_state(value + from_sdk(ctx.get_input()))
        elif ctx.operation_name == "get":
            ctx.set_result(value)
