"""Entity operations per second: ``python -m benchmarks.entities [--ops N] [--url URL]``.

One worker in process (as ``app.run`` plus a local client), on embedded SQLite and, with
``--url`` (default: the local test server, skipped when unreachable), PostgreSQL:

- **one hot entity**: N signals to one counter, enqueued up front in batches of 1,000;
  the time from the first enqueue to the counter reading N (one operation at a time, many
  per episode);
- **1,000 entities**: N signals spread round-robin over 1,000 counters, the same way;
- **calls**: 200 orchestrations that each call one of 20 counters 5 times in a row
  (a round trip orchestration -> entity -> orchestration per call).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import taskloom as tl
from taskloom import history as h
from taskloom.client import AsyncClient
from taskloom.entities import protocol as p
from taskloom.models import Status
from taskloom.runtime.worker import Worker, WorkerOptions
from taskloom.storage import open_store
from taskloom.storage.base import AT_ONCE, Message

app = tl.App("entitybench")


@app.entity
def counter(ctx: tl.EntityContext) -> Any:
    value = ctx.get_state(lambda: 0)
    if ctx.operation_name == "add":
        ctx.set_state(value + ctx.get_input())
    return value


@app.orchestrator
def caller(ctx: tl.OrchestrationContext, key: str) -> Any:
    total = 0
    for _ in range(5):
        total = yield ctx.call_entity(tl.EntityId("counter", key), "add", 1)
    return total


@asynccontextmanager
async def running(url: str, hub: str) -> AsyncIterator[AsyncClient]:
    store = open_store(url, hub=hub)
    await store.open()
    worker = Worker(app, store, options=WorkerOptions())
    await worker.start()
    client = AsyncClient(store, hub=hub)
    try:
        yield client
    finally:
        await worker.stop()
        await store.close()


async def signals(client: AsyncClient, ops: int, entities: int) -> float:
    """Operations per second for ``ops`` signals over ``entities`` counters."""
    ids = [tl.EntityId("counter", f"k{i}") for i in range(entities)]
    event = h.EventRaised(client.clock.now(), name=p.OPERATION, input=p.operation("add", "1"))
    began = time.perf_counter()
    for start in range(0, ops, 1000):
        batch = [
            Message(ids[k % entities].instance_id, event, AT_ONCE)
            for k in range(start, min(ops, start + 1000))
        ]
        await client.store.enqueue_messages(batch)
    while await applied(client) < ops:
        await asyncio.sleep(0.02)
    return ops / (time.perf_counter() - began)


async def applied(client: AsyncClient) -> int:
    """The sum of all counters, read a page of 1,000 at a time."""
    total, token = 0, None
    while True:
        page = await client.query_entities(page_size=1000, continuation_token=token)
        total += sum(m.state for m in page.items)
        token = page.continuation_token
        if token is None:
            return total


async def calls(client: AsyncClient, orchestrations: int = 200) -> float:
    began = time.perf_counter()
    iids = await asyncio.gather(
        *(client.start_new("caller", f"c{i % 20}") for i in range(orchestrations))
    )
    for iid in iids:
        state = await client.wait_for_completion(iid, timeout=600)
        assert state.runtime_status is Status.COMPLETED, state.failure_details
    return orchestrations * 5 / (time.perf_counter() - began)


async def bench(url: str, ops: int) -> dict[str, float]:
    figures = {}
    for label, entities in (("one hot entity", 1), ("1,000 entities", 1000)):
        async with running(url, "b" + uuid.uuid4().hex[:10]) as client:
            figures[label] = await signals(client, ops, entities)
    async with running(url, "b" + uuid.uuid4().hex[:10]) as client:
        figures["calls"] = await calls(client)
    return figures


async def reachable(url: str) -> bool:
    try:
        store = open_store(url, hub="probe")
        await asyncio.wait_for(store.open(), 5)
        await store.close()
        return True
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}")]
        if asyncio.run(reachable(args.url)):
            targets.append(("postgres", args.url))
        for name, url in targets:
            figures = asyncio.run(bench(url, args.ops))
            print(
                f"{name}: {args.ops} signals to one entity {figures['one hot entity']:,.0f} ops/s; "
                f"to 1,000 entities {figures['1,000 entities']:,.0f} ops/s; "
                f"calls from 200 orchestrations {figures['calls']:,.0f} calls/s"
            )


if __name__ == "__main__":
    main()
