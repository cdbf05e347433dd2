"""Services reach activities by dependency injection; app limits reach the worker."""

from __future__ import annotations

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
