"""Quick start: seed 001's MainWorkflow on embedded SQLite, with a worker in this process.

Run with ``make run`` (or ``python -m examples.quickstart``).
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import taskloom as tl

app = tl.App("quickstart")
log = logging.getLogger("quickstart")


@dataclass
class SyncItem:
    id: int
    sync_name: str
    trigger_date_utc: datetime


@app.activity(name="WorkflowItem1")
def workflow_item1(item: SyncItem) -> str:
    if item.id == 2:
        raise RuntimeError(f"sync item {item.id} ({item.sync_name}) cannot be processed")
    return f"item1 done for {item.sync_name}"


@app.activity(name="WorkflowItem2")
def workflow_item2(item: SyncItem) -> str:
    return f"item2 done for {item.sync_name}"


@app.orchestrator(name="MainWorkflow")
def main_workflow(ctx: tl.OrchestrationContext, item: SyncItem):  # type: ignore[no-untyped-def]
    if not ctx.is_replaying:
        log.info("MainWorkflow %s started for %s", ctx.instance_id, item.sync_name)
    retry = tl.RetryPolicy(timedelta(milliseconds=100), max_number_of_attempts=3)
    try:
        first = yield ctx.call_activity(workflow_item1, item, retry_policy=retry)
    except tl.TaskFailedError as exc:
        first = f"WorkflowItem1 failed after retries: {exc.details.message}"
    second = yield ctx.call_activity(workflow_item2, item)
    return {"WorkflowItem1": first, "WorkflowItem2": second}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    folder = Path(tempfile.mkdtemp(prefix="taskloom-quickstart-"))
    url = f"sqlite:///{folder / 'taskloom.db'}"
    stop = threading.Event()
    worker = threading.Thread(target=_worker, args=(url, stop), daemon=True)
    worker.start()
    today = datetime.now(UTC)
    with app.client(url) as client:
        ids = []
        for item in (SyncItem(1, "Customers", today), SyncItem(2, "Orders", today)):
            iid = f"Workflow-{item.id}-{item.sync_name}-{today:%Y%m%d}"
            ids.append(client.start_new("MainWorkflow", item, iid))
        for iid in ids:
            state = client.wait_for_completion(iid, timeout=30)
            print(f"{iid}: {state.runtime_status.value} -> {state.output}")
    stop.set()
    worker.join(10)
    print(f"store: {url}")


def _worker(url: str, stop: threading.Event) -> None:
    import asyncio

    from taskloom.runtime.runner import serve_worker
    from taskloom.runtime.worker import WorkerOptions

    async def run() -> None:
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (stop.wait(), loop.call_soon_threadsafe(done.set))).start()
        await serve_worker(app, url, WorkerOptions(), done)

    asyncio.run(run())


if __name__ == "__main__":
    main()
