"""The DBOS Transact peer: the benchmarks' MainWorkflow written for DBOS.

Runs inside ``benchmarks/.venv-dbos`` (``benchmarks/crossproc.py`` creates it) and never
imports taskloom. One mode per shape; the measuring modes print one JSON line:

    dbos_peer.py inproc URL --count N --runs M    workflows started in this process
    dbos_peer.py worker URL                       a queue worker; prints "ready", stops on SIGTERM
    dbos_peer.py client URL --count N --runs M    enqueues with DBOSClient, waits for results
    dbos_peer.py reset URL                        drops the system database (prints JSON)

URL is the DBOS system database (``sqlite:///FILE`` or ``postgresql://...``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions

QUEUE = "bench"
WARMUP = 10


@DBOS.step(name="WorkflowItem1")
def workflow_item1(item: dict[str, Any]) -> str:
    return f"item1:{item['id']}"


@DBOS.step(name="WorkflowItem2")
async def workflow_item2(item: dict[str, Any]) -> str:
    return f"item2:{item['id']}"


@DBOS.workflow(name="MainWorkflow")
async def main_workflow(item: dict[str, Any]) -> list[str]:
    # The sync step runs in a thread, as taskloom runs its sync activities.
    first = await asyncio.to_thread(workflow_item1, item)
    second = await workflow_item2(item)
    return [first, second]


def launch(url: str) -> None:
    config: DBOSConfig = {
        "name": "taskloom-bench",
        "system_database_url": url,
        "log_level": "WARNING",
        "executor_id": f"bench-{os.getpid()}",  # several workers must not recover each other
    }
    DBOS(config=config)
    DBOS.launch()


async def timed(
    one: Callable[[int], Awaitable[list[str]]],
    start: Callable[[int], Awaitable[Any]],
    finish: Callable[[list[Any]], Awaitable[Any]],
    count: int,
    runs: int,
) -> dict[str, Any]:
    """Latency of ``runs`` one-at-a-time workflows after a warm-up, then a burst of ``count``."""
    assert await asyncio.wait_for(one(-1), 120) == ["item1:-1", "item2:-1"]
    samples = []
    for i in range(WARMUP + runs):
        began = time.perf_counter()
        await asyncio.wait_for(one(i), 60)
        if i >= WARMUP:
            samples.append((time.perf_counter() - began) * 1000)
    began = time.perf_counter()
    handles = await asyncio.gather(*(start(i) for i in range(count)))
    started = time.perf_counter()
    await asyncio.wait_for(finish(handles), 600)
    done = time.perf_counter()
    return {
        "count": count,
        "starts_s": started - began,
        "burst_s": done - began,
        "latency_ms": samples,
    }


async def in_process(count: int, runs: int) -> dict[str, Any]:
    async def start(i: int) -> Any:
        return await DBOS.start_workflow_async(main_workflow, {"id": i})

    async def one(i: int) -> list[str]:
        result: list[str] = await (await start(i)).get_result()
        return result

    async def finish(handles: list[Any]) -> None:
        await asyncio.gather(*(h.get_result() for h in handles))

    return await timed(one, start, finish, count, runs)


async def across(url: str, count: int, runs: int, poll: float) -> dict[str, Any]:
    client = DBOSClient(system_database_url=url)
    options: EnqueueOptions = {"workflow_name": "MainWorkflow", "queue_name": QUEUE}

    async def start(i: int) -> Any:
        return await client.enqueue_async(options, {"id": i})

    async def one(i: int) -> list[str]:
        result: list[str] = await (await start(i)).get_result(polling_interval_sec=poll)
        return result

    async def finish(handles: list[Any]) -> None:
        await asyncio.gather(*(h.get_result(polling_interval_sec=poll) for h in handles))

    try:
        return await timed(one, start, finish, count, runs)
    finally:
        client.destroy()


def serve(url: str, poll: float, max_seconds: float) -> None:
    launch(url)
    DBOS.register_queue(QUEUE, polling_interval_sec=poll, on_conflict="always_update")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait(max_seconds)
    DBOS.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["inproc", "worker", "client", "reset"])
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--poll", type=float, default=0.01, help="queue and result polling, s")
    parser.add_argument("--max-seconds", type=float, default=3600, help="worker lifetime cap")
    args = parser.parse_args()
    if args.mode == "reset":
        DBOS.reset_system_database(system_database_url=args.url)
        print(json.dumps({"reset": args.url}), flush=True)
        return
    if args.mode == "worker":
        serve(args.url, args.poll, args.max_seconds)
        return
    if args.mode == "inproc":
        launch(args.url)
        try:
            figures = asyncio.run(in_process(args.count, args.runs))
        finally:
            DBOS.destroy()
    else:
        figures = asyncio.run(across(args.url, args.count, args.runs, args.poll))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
