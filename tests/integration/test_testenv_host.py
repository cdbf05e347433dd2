"""TestEnv runs queue triggers and, when asked, the HTTP API on a real loopback port."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx

import taskloom as tl


def make_app() -> tl.App:
    app = tl.App("envhost")

    @app.orchestrator
    def greet(ctx: tl.OrchestrationContext, name: str) -> Any:
        decision = yield ctx.wait_for_external_event("Decision")
        return f"{name}: {decision}"

    @app.queue_trigger("names")
    def on_name(message: str, client: tl.Client) -> None:
        client.start_new("greet", message, instance_id=f"greet-{message}")

    return app


def test_queue_trigger_and_http_api_inside_testenv() -> None:
    app = make_app()
    with tl.testing.TestEnv(app, http=True) as env:
        assert env.base_url is not None
        env.client.enqueue("names", "ada")
        with httpx.Client(base_url=env.base_url, timeout=10) as http:
            status = _poll(http, "/runtime/webhooks/durabletask/instances/greet-ada")
            assert status.status_code == 202
            assert status.json()["runtimeStatus"] in ("Pending", "Running")
            sent = http.post(
                "/runtime/webhooks/durabletask/instances/greet-ada/raiseEvent/Decision",
                json="yes",
            )
            assert sent.status_code == 202
        state = env.client.wait_for_completion("greet-ada", timeout=30)
    assert state.output == "ada: yes"


def _poll(http: httpx.Client, path: str) -> httpx.Response:
    """GET ``path`` until the queue handler has created the instance (or 30 s pass)."""
    deadline = time.monotonic() + 30
    while True:
        response = http.get(path)
        if response.status_code != 404 or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def test_event_links_expire_on_the_virtual_clock() -> None:
    app = make_app()
    with tl.testing.TestEnv(app, http=True) as env:
        iid = env.client.start_new("greet", "bo", instance_id="greet-bo")
        env.client.wait_for_start(iid, timeout=30)
        short = env.client.create_event_link(iid, "Decision", timedelta(hours=1), data="no")
        long = env.client.create_event_link(iid, "Decision", timedelta(hours=3), data="yes")
        until = env.client.create_event_link(iid, "Decision", env.now() + timedelta(hours=1))
        env.advance(timedelta(hours=2))
        with httpx.Client(timeout=10) as http:
            assert http.get(short).status_code == 403
            assert http.get(until).status_code == 403
            assert http.get(long).status_code == 200
        state = env.client.wait_for_completion(iid, timeout=30)
    assert state.output == "bo: yes"
