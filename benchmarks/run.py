"""Benchmarks on embedded SQLite: ``python -m benchmarks.run [--quick]``.

Prints orchestrations/s for 2,000 MainWorkflows started at once on one worker,
start-to-completion latency for one at a time, and the time of 1,000- and
5,000-step sequential orchestrations. Everything runs in one process: the worker and
the client share an event loop and a store, as ``app.run`` plus a local client would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from benchmarks.workflows import app
from taskloom.client import AsyncClient
from taskloom.models import Status
from taskloom.runtime.worker import Worker, WorkerOptions
from taskloom.storage import open_store


@asynccontextmanager
async def running(url: str) -> AsyncIterator[AsyncClient]:
    store = open_store(url, hub=app.name)
    await store.open()
    worker = Worker(app, store, options=WorkerOptions())
    await worker.start()
    client = AsyncClient(store, hub=app.name)
    try:
        yield client
    finally:
        await worker.stop()
        await store.close()


async def burst(client: AsyncClient, count: int, prefix: str) -> float:
    """Start ``count`` MainWorkflows at once; orchestrations per second to all completed."""
    began = time.perf_counter()
    ids = await asyncio.gather(
        *(client.start_new("MainWorkflow", {"id": i}, f"{prefix}-{i}") for i in range(count))
    )
    for iid in ids:
        state = await client.wait_for_completion(iid, timeout=600)
        assert state.runtime_status is Status.COMPLETED, state.failure_details
    return count / (time.perf_counter() - began)


async def throughput(url: str, count: int) -> float:
    async with running(url) as client:
        return await burst(client, count, "tp")


async def latency(url: str, runs: int) -> list[float]:
    async with running(url) as client:
        samples = []
        for i in range(runs + 10):
            began = time.perf_counter()
            iid = await client.start_new("MainWorkflow", {"id": i}, f"lat-{i}")
            state = await client.wait_for_completion(iid, timeout=60)
            if i >= 10:  # the first runs warm caches and the page cache
                samples.append(time.perf_counter() - began)
            assert state.runtime_status is Status.COMPLETED
        return samples


async def long_chain(url: str, steps: int) -> float:
    async with running(url) as client:
        began = time.perf_counter()
        iid = await client.start_new("chain", steps, f"chain-{steps}")
        state = await client.wait_for_completion(iid, timeout=600)
        assert state.output == steps, state
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    args = parser.parse_args()
    n_tp, n_lat, chains = (200, 50, (100, 500)) if args.quick else (2000, 200, (1000, 5000))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as folder:

        def url(name: str) -> str:
            return f"sqlite:///{Path(folder) / name}.db"

        rate = asyncio.run(throughput(url("throughput"), n_tp))
        print(f"throughput: {n_tp} MainWorkflows started at once: {rate:,.0f} orchestrations/s")
        samples = sorted(asyncio.run(latency(url("latency"), n_lat)))
        p50 = statistics.median(samples) * 1000
        p99 = samples[int(len(samples) * 0.99) - 1] * 1000
        print(f"latency: one at a time, {n_lat} runs: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        for steps in chains:
            seconds = asyncio.run(long_chain(url(f"chain{steps}"), steps))
            print(
                f"sequential: {steps} activities in one orchestration: {seconds:.2f} s "
                f"({seconds / steps * 1000:.2f} ms/step)"
            )


if __name__ == "__main__":
    main()
