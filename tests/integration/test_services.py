"""Services reach activities by dependency injection; app limits reach the worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import taskloom as tl


def test_activities_get_services_by_keyword_and_factories_run_once() -> None:
    app = tl.App("services", max_concurrent_activities=3)
    built: list[int] = []

    def make_db() -> dict[str, list[Any]]:
        built.append(1)
        return {"rows": []}

    app.add_service("db", factory=make_db)
    app.add_service("prefix", "row-")

    @app.activity
    def store_row(n: int, *, db: dict[str, list[Any]], prefix: str) -> int:
        db["rows"].append(f"{prefix}{n}")
        return len(db["rows"])

    @app.orchestrator
    def load(ctx: tl.OrchestrationContext) -> Any:
        yield ctx.task_all([ctx.call_activity(store_row, n) for n in range(5)])
        return "ok"

    with tl.testing.TestEnv(app) as env:
        assert env.worker.options.max_concurrent_activities == 3
        state = env.client.wait_for_completion(env.client.start_new("load"), timeout=30)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert sorted(app.service("db")["rows"]) == [f"row-{n}" for n in range(5)]
    assert built == [1]


def test_a_missing_service_fails_the_activity_with_its_name() -> None:
    app = tl.App("noservice")

    @app.activity
    def needs(x: int, *, mailer: object) -> None: ...

    @app.orchestrator
    def main(ctx: tl.OrchestrationContext) -> Any:
        yield ctx.call_activity(needs, 1)

    with tl.testing.TestEnv(app) as env:
        state = env.client.wait_for_completion(env.client.start_new("main"), timeout=30)
    assert state.runtime_status is tl.Status.FAILED
    assert state.failure_details is not None
    assert "no service named 'mailer'" in state.failure_details.message
    with pytest.raises(tl.ConfigurationError, match="needs a value or a factory"):
        app.add_service("x")


def test_activities_get_the_workers_client_as_the_built_in_client_service() -> None:
    app = tl.App("clientservice")

    @app.activity
    async def make_link(iid: str, *, client: tl.AsyncClient) -> str:
        return await client.create_event_link(iid, "Go", timedelta(hours=1), data=1)

    @app.activity
    def own_status(iid: str, *, client: tl.Client) -> str:
        state = client.get_status(iid)
        assert state is not None
        return state.runtime_status.value

    @app.orchestrator
    def main(ctx: tl.OrchestrationContext) -> Any:
        link = yield ctx.call_activity(make_link, ctx.instance_id)
        status = yield ctx.call_activity(own_status, ctx.instance_id)
        return [link, status]

    with tl.testing.TestEnv(app, http=True) as env:
        state = env.client.wait_for_completion(env.client.start_new("main", None, "m1"), 30)
        assert env.base_url is not None
        base = env.base_url
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    link, status = state.output
    assert link.startswith(f"{base}/runtime/webhooks/durabletask/links/")
    assert status == "Running"
    with pytest.raises(tl.ConfigurationError, match="built-in service"):
        app.add_service("client", object())
