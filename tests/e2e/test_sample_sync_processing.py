"""samples/sync_processing on virtual time: the 15-second timer queues sync items, the
queue trigger starts one MainWorkflow per item and minute and skips duplicates, and item
2's WorkflowItem1 fails, is retried, is reported, while WorkflowItem2 still runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sample_loader import load_sample

import taskloom as tl
from taskloom import history as h

START = datetime(2026, 1, 31, 9, 0, 1, tzinfo=UTC)  # the first tick comes at 09:00:15
CUSTOMERS = "Workflow-1-Customers-20260131-0900"
ORDERS = "Workflow-2-Orders-20260131-0900"


def wait_until(read: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def workflow_ids(env: tl.testing.TestEnv) -> list[str]:
    page = env.client.query(instance_id_prefix="Workflow-")
    return sorted(state.instance_id for state in page.items)


def test_ticks_start_each_workflow_once_and_item_2_fails_and_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sync_processing")
    sample = load_sample("sync_processing")
    sample.app.add_service("settings", sample.Settings(work_seconds=0.01))
    with tl.testing.TestEnv(sample.app, start=START) as env:
        assert workflow_ids(env) == []  # nothing before the first tick

        env.advance(timedelta(seconds=14))  # 09:00:15: the first tick
        wait_until(lambda: workflow_ids(env) == [CUSTOMERS, ORDERS], "the first tick's workflows")
        customers = env.client.wait_for_completion(CUSTOMERS, timeout=10)
        orders = env.client.wait_for_completion(ORDERS, timeout=10)  # retries on virtual time

        assert customers.runtime_status is tl.Status.COMPLETED
        assert customers.output["WorkflowItem1"] == "WorkflowItem1 done for Customers"
        assert customers.output["WorkflowItem2"] == "WorkflowItem2 done for Customers"
        assert orders.runtime_status is tl.Status.COMPLETED
        failure = "RuntimeError: sync item 2 (Orders) failed on attempt 3"
        assert orders.output["WorkflowItem1"] == {"failed": failure}
        assert orders.output["WorkflowItem2"] == "WorkflowItem2 done for Orders"
        scheduled = [
            e.name for e in env.client.get_history(ORDERS) if isinstance(e, h.TaskScheduled)
        ]
        assert scheduled == ["WorkflowItem1"] * 3 + ["ReportFailure", "WorkflowItem2"]
        assert sum(isinstance(e, h.TaskFailed) for e in env.client.get_history(ORDERS)) == 3
        reported = [
            r for r in caplog.records if r.name == "sync_processing" and r.levelno >= logging.ERROR
        ]
        assert [r.getMessage() for r in reported] == [f"{ORDERS}: WorkflowItem1 failed: {failure}"]
        # Logged once each, not once per replay:
        started = [r for r in caplog.records if r.getMessage().startswith("MainWorkflow")]
        assert len(started) == 4  # started and completed, for two workflows

        # The other ticks of 09:00 map to the same ids: their items are skipped.
        env.advance(timedelta(seconds=60) - timedelta(seconds=env.now().second))  # 09:01:00
        wait_until(lambda: len(workflow_ids(env)) == 4, "the 09:01 tick's workflows")
        assert workflow_ids(env) == sorted(
            [CUSTOMERS, ORDERS, CUSTOMERS[:-4] + "0901", ORDERS[:-4] + "0901"]
        )

        def skipped() -> bool:
            said = {r.getMessage() for r in caplog.records}
            return all(f"{iid} exists already; not starting it again" in said for iid in ids)

        ids = (CUSTOMERS, ORDERS)
        wait_until(skipped, "a later 09:00 tick's items to be skipped")
        # A redelivered message for a finished workflow does not start it again either.
        env.client.enqueue("output-queue", sample.sync_items(START)[0])
        wait_until(lambda: not env.client.peek_queue("output-queue"), "the queue to drain")
        history = env.client.get_history(CUSTOMERS)
        assert sum(isinstance(e, h.ExecutionStarted) for e in history) == 1
        assert len(workflow_ids(env)) == 4
