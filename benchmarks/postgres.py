"""PostgreSQL throughput with 1, 2 and 4 worker processes:
``python -m benchmarks.postgres [--url URL] [--count N] [--workers 1,2,4]``.

Each round purges the ``bench`` hub, starts N worker processes (``taskloom serve``),
starts ``count`` MainWorkflows at once from this process and times them to completion.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import subprocess
import sys
import time

from benchmarks.run import burst
from benchmarks.workflows import app
from taskloom.client import AsyncClient


async def round_trip(url: str, count: int) -> float:
    async with AsyncClient(url, hub=app.name) as client:
        return await burst(client, count, "pg")


async def purge(url: str) -> None:
    async with AsyncClient(url, hub=app.name) as client:
        await client.purge_many()


def workers(url: str, n: int) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "taskloom", "serve", "benchmarks.workflows:app", "--no-http"]
    return [
        subprocess.Popen([*command, "--store", url], stderr=subprocess.DEVNULL) for _ in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for n in (int(x) for x in args.workers.split(",")):
        asyncio.run(purge(args.url))
        procs = workers(args.url, n)
        try:
            time.sleep(1.0)  # let the workers connect; they would catch up anyway
            rate = asyncio.run(round_trip(args.url, args.count))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
        print(
            f"postgres: {n} worker process(es), {args.count} MainWorkflows: "
            f"{rate:,.0f} orchestrations/s"
        )


if __name__ == "__main__":
    main()
