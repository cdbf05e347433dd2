"""Idle CPU of a worker process and of a client blocked in ``wait_for_completion``:
``python -m benchmarks.idle_cpu [--seconds 10] [--backend sqlite|postgres|both]``.

An idle ``taskloom serve`` worker runs; a client process starts ``wait_for_approval``,
waits until the worker has picked it up and then blocks in ``wait_for_completion``. After
a settle period both processes' CPU time (utime + stime from ``/proc/PID/stat``) is read
over the window and shown as % of one core. Then this process raises the event and checks
that the waiting client returns, and how soon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks import procs
from benchmarks.workflows import app
from taskloom.client import AsyncClient
from taskloom.models import Status

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def cpu_seconds(pid: int) -> float:
    # Fields after "(comm)" start at field 3; utime and stime are fields 14 and 15.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_as_client(url: str, iid: str, timeout: float) -> None:
    """The client process: start the instance, then block until it completes."""
    async with AsyncClient(url, hub=app.name) as client:
        await client.start_new("wait_for_approval", None, iid)
        await client.wait_for_start(iid, timeout=120)
        print("waiting", flush=True)
        state = await client.wait_for_completion(iid, timeout=timeout)
        print(json.dumps({"status": state.runtime_status.value, "output": state.output}))


async def approve(url: str, iid: str) -> None:
    async with AsyncClient(url, hub=app.name) as client:
        await client.raise_event(iid, "Approval", "approved")


def measure(name: str, url: str, seconds: float, settle: float) -> None:
    asyncio.run(procs.prepare(url))
    iid = f"idle-{uuid.uuid4().hex[:8]}"
    timeout = str(settle + seconds + 120)
    client_cmd = [sys.executable, "-m", "benchmarks.idle_cpu", "--client", url, iid, timeout]
    with (
        procs.started([procs.taskloom_worker(url)]) as (worker,),
        procs.started([client_cmd], ready_line="waiting", timeout=180) as (client,),
    ):
        time.sleep(settle)  # let start-up work (imports, first queries) finish
        began = time.monotonic()
        before = [cpu_seconds(p.pid) for p in (worker, client)]
        time.sleep(seconds)
        after = [cpu_seconds(p.pid) for p in (worker, client)]
        window = time.monotonic() - began
        raised = time.monotonic()
        asyncio.run(approve(url, iid))
        result = json.loads(procs.read_line(client, time.monotonic() + 60))
        woke = (time.monotonic() - raised) * 1000
    worker_pct, client_pct = ((a - b) / window * 100 for a, b in zip(after, before, strict=True))
    assert result == {"status": Status.COMPLETED.value, "output": "approved"}, result
    tick = 100 / os.sysconf("SC_CLK_TCK") / window
    print(
        f"{name}: over {window:.1f} s idle, worker {worker_pct:.2f}% of a core, "
        f"waiting client {client_pct:.2f}% (one clock tick is {tick:.2f}%); "
        f"event to client returned: {woke:.0f} ms",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before it")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument(
        "--client", nargs=3, metavar=("URL", "ID", "TIMEOUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.client:
        url, iid, timeout = args.client
        asyncio.run(wait_as_client(url, iid, float(timeout)))
        return
    print(f"clock ticks: {os.sysconf('SC_CLK_TCK')}/s, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as folder:
        if args.backend in ("sqlite", "both"):
            measure("sqlite", f"sqlite:///{Path(folder) / 'idle.db'}", args.seconds, args.settle)
        if args.backend in ("postgres", "both"):
            measure("postgres", args.pg_url, args.seconds, args.settle)


if __name__ == "__main__":
    main()
