"""Events one orchestration sends to another arrive, also when sent just before the
sender finishes or continues as new."""

from __future__ import annotations

from typing import Any

import taskloom as tl

app = tl.App("sendevent")


@app.orchestrator
def monitor(ctx: tl.OrchestrationContext, expected: int) -> Any:
    seen = []
    for _ in range(expected):
        seen.append((yield ctx.wait_for_external_event("Tick")))
    return seen


@app.orchestrator
def notifier(ctx: tl.OrchestrationContext, n: int) -> Any:
    ctx.send_event("mon", "Tick", n)
    if n < 3:
        ctx.continue_as_new(n + 1)
        return None
    return "done"
    yield  # a generator


def test_events_sent_right_before_finishing_are_delivered() -> None:
    with tl.testing.TestEnv(app) as env:
        env.client.start_new("monitor", 3, instance_id="mon")
        env.client.wait_for_start("mon", timeout=20)
        env.client.start_new("notifier", 1, instance_id="note")
        assert env.client.wait_for_completion("note", timeout=20).output == "done"
        assert env.client.wait_for_completion("mon", timeout=20).output == [1, 2, 3]
