"""Seed 001, sync processing: a timer every 15 seconds puts two sync items on
``output-queue``; a queue trigger starts ``MainWorkflow`` for each item unless its
instance already exists; the workflow runs ``WorkflowItem1`` (which fails for item 2,
is retried, then reported) and ``WorkflowItem2``.

    taskloom serve samples/sync_processing/app.py:app

The Azure names are kept: ``Function1`` (the timer), ``SyncQueueProcessor``,
``MainWorkflow``, ``WorkflowItem1``, ``WorkflowItem2``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sync_items import WORKFLOW_PREFIX, SyncItem, sync_items, workflow_instance_id

import taskloom as tl

app = tl.App("sync_processing")
log = logging.getLogger("sync_processing")

QUEUE = "output-queue"
ITEM1_RETRY = tl.RetryPolicy(
    first_retry_interval=timedelta(seconds=5), max_number_of_attempts=3, backoff_coefficient=2
)


@dataclass(frozen=True)
class Settings:
    """How long each step pretends to work (the Azure sample waits one second)."""

    work_seconds: float = 1.0


app.add_service("settings", Settings())


# -- triggers -----------------------------------------------------------------------


@app.schedule("*/15 * * * * *", name="Function1")
async def generate_sync_items(client: tl.AsyncClient, scheduled_time: datetime) -> None:
    for item in sync_items(scheduled_time):
        await client.enqueue(QUEUE, item)
    log.info("tick %s: queued 2 sync items on %s", scheduled_time.isoformat(), QUEUE)


@app.queue_trigger(QUEUE, max_dequeue_count=5)
async def sync_queue_processor(item: SyncItem, client: tl.AsyncClient) -> None:
    instance_id = workflow_instance_id(item)
    if instance_id in await existing_workflows(client, instance_id):
        log.info("%s exists already; not starting it again", instance_id)
        return
    try:
        await client.start_new("MainWorkflow", item, instance_id=instance_id)
    except tl.InstanceExistsError:  # another delivery started it a moment ago
        log.info("%s was started meanwhile; not starting it again", instance_id)
        return
    log.info("started %s", instance_id)


async def existing_workflows(client: tl.AsyncClient, prefix: str = WORKFLOW_PREFIX) -> set[str]:
    """The ids of the stored instances whose id starts with ``prefix`` (any status).

    The Azure sample listed every ``Workflow-`` instance; the handler narrows the prefix
    to the id it is about to start, so the listing stays one short page however long
    the history grows."""
    found: set[str] = set()
    token: str | None = None
    while True:
        page = await client.query(instance_id_prefix=prefix, continuation_token=token)
        found.update(state.instance_id for state in page.items)
        token = page.continuation_token
        if token is None:
            return found


# -- the workflow -------------------------------------------------------------------


@app.activity(name="WorkflowItem1")
def workflow_item1(item: SyncItem, *, settings: Settings) -> str:
    attempt = tl.activity_info().attempt
    log.info("WorkflowItem1 for %s (attempt %d)", item["sync_name"], attempt)
    time.sleep(settings.work_seconds)
    if item["id"] == 2:
        name = item["sync_name"]
        raise RuntimeError(f"sync item {item['id']} ({name}) failed on attempt {attempt}")
    return f"WorkflowItem1 done for {item['sync_name']}"


@app.activity(name="WorkflowItem2")
def workflow_item2(item: SyncItem, *, settings: Settings) -> str:
    log.info("WorkflowItem2 for %s", item["sync_name"])
    time.sleep(settings.work_seconds)
    return f"WorkflowItem2 done for {item['sync_name']}"


@app.activity(name="ReportFailure")
def report_failure(report: dict[str, Any]) -> None:
    """Where an operator hears of a failed step (a log line here; a ticket elsewhere)."""
    log.error("%s: %s failed: %s", report["instance_id"], report["step"], report["error"])


@app.orchestrator(name="MainWorkflow")
def main_workflow(ctx: tl.OrchestrationContext, item: SyncItem) -> Any:
    if not ctx.is_replaying:
        log.info("MainWorkflow %s started for %s", ctx.instance_id, item["sync_name"])
    result: dict[str, Any] = {"id": item["id"], "sync_name": item["sync_name"]}
    ctx.set_custom_status({"step": "WorkflowItem1"})
    try:
        result["WorkflowItem1"] = yield ctx.call_activity(
            workflow_item1, item, retry_policy=ITEM1_RETRY
        )
    except tl.TaskFailedError as exc:
        error = f"{exc.details.error_type}: {exc.details.message}"
        result["WorkflowItem1"] = {"failed": error}
        if not ctx.is_replaying:
            log.warning("%s: WorkflowItem1 failed after retries", ctx.instance_id)
        yield ctx.call_activity(
            report_failure,
            {"instance_id": ctx.instance_id, "step": "WorkflowItem1", "error": error},
        )
    ctx.set_custom_status({"step": "WorkflowItem2"})
    result["WorkflowItem2"] = yield ctx.call_activity(workflow_item2, item)
    ctx.set_custom_status({"step": "Done"})
    if not ctx.is_replaying:
        log.info("MainWorkflow %s completed", ctx.instance_id)
    return result
