"""Seed 001's MainWorkflow run by the official ``durabletask`` SDK worker on taskloom
(``taskloom serve --grpc`` on SQLite and on PostgreSQL) and, in the same run, by the
same worker on the SDK's own in-memory sidecar (``durabletask.testing``).

One SDK worker (default concurrency) and one SDK client in this process; the sidecar in
its own process (taskloom) or in this one (in-memory). The client schedules ``-n``
orchestrations, then waits for each; the figure is orchestrations per second from the
first schedule to the last completion.

    .venv/bin/python -m benchmarks.grpc_sdk [-n 200] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

from durabletask import client as dt_client
from durabletask import task, worker

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

#: The SDK logs every schedule and completion at INFO; the figures are what matters here.
_QUIET = logging.getLogger("benchmarks.grpc_sdk.sdk")
_QUIET.setLevel(logging.ERROR)


# The SDK registers functions under their own names: these are the seed's.
def WorkflowItem1(ctx: task.ActivityContext, item: dict[str, Any]) -> str:
    return f"item1:{item['id']}"


def WorkflowItem2(ctx: task.ActivityContext, item: dict[str, Any]) -> str:
    return f"item2:{item['id']}"


def MainWorkflow(ctx: task.OrchestrationContext, item: dict[str, Any]) -> Any:
    first = yield ctx.call_activity("WorkflowItem1", input=item)
    second = yield ctx.call_activity("WorkflowItem2", input=item)
    return [first, second]


def _free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("taskloom serve exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def _keys(store_url: str, hub: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A worker key and a contributor key for ``hub`` (a shared PostgreSQL database
    holds other hubs' keys, so keyless calls are refused there)."""
    from taskloom import manage
    from taskloom.storage import open_store

    async def make() -> tuple[str, str]:
        store = open_store(store_url, hub=hub)
        await store.open()
        try:
            now = datetime.now(UTC)
            w = await manage.create_key(store, "worker", None, now)
            c = await manage.create_key(store, "contributor", None, now)
            return w.key, c.key
        finally:
            await store.close()

    work, contrib = asyncio.run(make())
    return [("authorization", f"Bearer {work}")], [("authorization", f"Bearer {contrib}")]


def run_once(address: str, n: int, worker_md: Any = None, client_md: Any = None) -> float:
    """Orchestrations per second for ``n`` MainWorkflows through the sidecar."""
    w = worker.TaskHubGrpcWorker(host_address=address, metadata=worker_md, logger=_QUIET)
    w.add_orchestrator(MainWorkflow)
    w.add_activity(WorkflowItem1)
    w.add_activity(WorkflowItem2)
    w.start()
    c = dt_client.TaskHubGrpcClient(host_address=address, metadata=client_md, logger=_QUIET)
    try:
        warm = c.schedule_new_orchestration("MainWorkflow", input={"id": -1})
        c.wait_for_orchestration_completion(warm, timeout=60)
        started = time.perf_counter()
        ids = [c.schedule_new_orchestration("MainWorkflow", input={"id": i}) for i in range(n)]
        for iid in ids:
            state = c.wait_for_orchestration_completion(iid, timeout=120)
            if state is None or state.runtime_status != dt_client.OrchestrationStatus.COMPLETED:
                raise RuntimeError(f"{iid} did not complete: {state}")
        return n / (time.perf_counter() - started)
    finally:
        c.close()
        w.stop()


def taskloom_rate(store_url: str, n: int) -> float:
    port = _free_port()
    hub = "gb" + uuid.uuid4().hex[:10]
    worker_md = client_md = None
    if store_url.startswith("postgres"):
        worker_md, client_md = _keys(store_url, hub)
    command = [sys.executable, "-m", "taskloom", "serve", "--grpc", str(port), "--no-http"]
    proc = subprocess.Popen(
        [*command, "--store", store_url, "--hub", hub],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        return run_once(f"127.0.0.1:{port}", n, worker_md, client_md)
    finally:
        proc.terminate()
        proc.wait(10)


def in_memory_rate(n: int) -> float:
    from durabletask.testing import create_test_backend

    port = _free_port()
    backend = create_test_backend(port=port)
    try:
        return run_once(f"127.0.0.1:{port}", n)
    finally:
        backend.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="orchestrations per run")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    rows: list[tuple[str, float]] = []
    memory = in_memory_rate(args.n)
    rows.append(("SDK in-memory sidecar", memory))
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("taskloom, SQLite", taskloom_rate(f"sqlite:///{tmp}/hub.db", args.n)))
    if not args.no_postgres:
        rows.append(("taskloom, PostgreSQL", taskloom_rate(PG_URL, args.n)))
    print(f"MainWorkflow x {args.n}, one SDK worker")
    for name, rate in rows:
        print(f"  {name:24} {rate:8.1f} orch/s   {rate / memory:5.2f} x in-memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
