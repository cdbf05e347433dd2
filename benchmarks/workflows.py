"""The workloads the benchmarks run: seed 001's MainWorkflow, a long chain, and an
orchestration that waits for an event (``benchmarks.idle_cpu``)."""

from __future__ import annotations

from typing import Any

import taskloom as tl

app = tl.App("bench")


@app.activity(name="WorkflowItem1")
def workflow_item1(item: dict[str, Any]) -> str:
    return f"item1:{item['id']}"


@app.activity(name="WorkflowItem2")
async def workflow_item2(item: dict[str, Any]) -> str:
    return f"item2:{item['id']}"


@app.orchestrator(name="MainWorkflow")
def main_workflow(ctx: tl.OrchestrationContext, item: dict[str, Any]):  # type: ignore[no-untyped-def]
    first = yield ctx.call_activity("WorkflowItem1", item)
    second = yield ctx.call_activity("WorkflowItem2", item)
    return [first, second]


@app.activity
async def step(n: int) -> int:
    return n + 1


@app.orchestrator
def chain(ctx: tl.OrchestrationContext, count: int):  # type: ignore[no-untyped-def]
    value = 0
    for _ in range(count):
        value = yield ctx.call_activity(step, value)
    return value


@app.orchestrator
def wait_for_approval(ctx: tl.OrchestrationContext):  # type: ignore[no-untyped-def]
    approval = yield ctx.wait_for_external_event("Approval")
    return approval
