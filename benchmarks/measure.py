"""The timed taskloom client of ``benchmarks.crossproc``.

``python -m benchmarks.measure URL [--count N] [--runs M]`` runs against worker processes
already serving URL and prints its :class:`Figures` as one JSON line; the in-process shape
calls :func:`measure` directly. ``benchmarks/dbos_peer.py`` prints the same fields.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.workflows import app
from taskloom.client import AsyncClient
from taskloom.models import Status

WARMUP = 10


@dataclass
class Figures:
    count: int  # instances in the burst
    starts_s: float  # the burst's start calls alone
    burst_s: float  # first start to last completion
    latency_ms: list[float]  # one at a time, start to completion

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figures:
        return cls(data["count"], data["starts_s"], data["burst_s"], data["latency_ms"])

    @property
    def rate(self) -> float:
        return self.count / self.burst_s

    @property
    def p50(self) -> float:
        return statistics.median(self.latency_ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.latency_ms)
        return ordered[math.ceil(len(ordered) * 0.99) - 1]


async def run_one(client: AsyncClient, iid: str, timeout: float) -> None:
    await client.start_new("MainWorkflow", {"id": iid}, iid)
    state = await client.wait_for_completion(iid, timeout=timeout)
    assert state.runtime_status is Status.COMPLETED, state.failure_details


async def measure(client: AsyncClient, count: int, runs: int) -> Figures:
    """One warm-up run (which also shows a worker is serving), ``runs`` timed one at a
    time after ``WARMUP`` more, then ``count`` started at once."""
    tag = uuid.uuid4().hex[:8]  # instance ids never clash with an earlier run's
    await run_one(client, f"{tag}-ready", timeout=120)
    samples = []
    for i in range(WARMUP + runs):
        began = time.perf_counter()
        await run_one(client, f"{tag}-lat-{i}", timeout=60)
        if i >= WARMUP:
            samples.append((time.perf_counter() - began) * 1000)
    began = time.perf_counter()
    ids = await asyncio.gather(
        *(client.start_new("MainWorkflow", {"id": i}, f"{tag}-b-{i}") for i in range(count))
    )
    started = time.perf_counter()
    states = await asyncio.gather(*(client.wait_for_completion(i, timeout=600) for i in ids))
    done = time.perf_counter()
    assert all(s.runtime_status is Status.COMPLETED for s in states)
    return Figures(count, started - began, done - began, samples)


async def measure_url(url: str, count: int, runs: int) -> Figures:
    async with AsyncClient(url, hub=app.name) as client:
        return await measure(client, count, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    figures = asyncio.run(measure_url(args.url, args.count, args.runs))
    print(json.dumps(asdict(figures)), flush=True)


if __name__ == "__main__":
    main()
