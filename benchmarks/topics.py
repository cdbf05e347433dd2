"""CloudEvents topics across processes: ``python -m benchmarks.topics [--quick]
[--backend sqlite|postgres|both]``.

The shape users deploy: ``taskloom serve benchmarks/topics_app.py:app`` (the HTTP API,
the workers and the topic runner, with one event trigger that only receives) in one
process, the publishers in this one, a webhook receiver (``benchmarks/topics_receiver``)
in a third. Phases, each timed from its first publish to its last event delivered:

- HTTP, one event per request: ``POST /api/topics/bench/events`` in structured mode from
  16 concurrent connections; figures: accepted events/s and delivered to the trigger/s;
- HTTP, batches of 100 (``application/cloudevents-batch+json``), 4 connections;
- webhook, one event per POST, then batches of up to 100 (``maxEventsPerBatch``): events
  published with ``client.publish`` in lists of 100, delivered/s counted by the receiver.

There is no peer: Azure Event Grid has no local emulator to run beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

import taskloom as tl
from benchmarks.events import fresh_database
from benchmarks.procs import ROOT, _stop, read_line
from taskloom.topics.specs import WebhookSpec

HUB = "bench-topics"
TOPIC = "bench"


def _serve(url: str, port: int) -> list[str]:
    app = "benchmarks/topics_app.py:app"
    return [sys.executable, "-m", "taskloom", "serve", app, "--store", url, "--port", str(port)]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _until(check: Any, timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(every)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


async def _drained(client: tl.AsyncClient, name: str) -> bool:
    for sub in await client.subscriptions(TOPIC):
        if sub.name == name:
            return sub.lag == 0 and sub.pending == 0
    return False


def _event(i: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"e{i}",
        "source": "/bench",
        "type": "bench.t",
        "data": {"i": i, "pad": "x" * 64},
    }


async def _http_phase(
    base: str, client: tl.AsyncClient, n: int, batch: int, conns: int, offset: int
) -> dict[str, float]:
    import json

    bodies = []
    for start in range(offset, offset + n, batch):
        events = [_event(i) for i in range(start, min(start + batch, offset + n))]
        if batch == 1:
            bodies.append(("application/cloudevents+json", json.dumps(events[0]).encode()))
        else:
            bodies.append(("application/cloudevents-batch+json", json.dumps(events).encode()))
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=conns)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:

        async def worker() -> None:
            while not queue.empty():
                kind, body = queue.get_nowait()
                r = await http.post(
                    f"/api/topics/{TOPIC}/events", content=body, headers={"content-type": kind}
                )
                if r.status_code >= 300:
                    raise RuntimeError(f"publish answered {r.status_code}: {r.text[:200]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        t1 = time.perf_counter()
    # Every 50 ms: a listing reads the store, and polling it harder loads what we measure.
    await _until(lambda: _drained(client, "receive"), 600, "delivery to the trigger", 0.05)
    t2 = time.perf_counter()
    return {"published_per_s": n / (t1 - t0), "delivered_per_s": n / (t2 - t0)}


async def _webhook_phase(
    client: tl.AsyncClient, receiver: str, n: int, per_post: int, name: str
) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=receiver) as http:
        before = int((await http.get("/count")).text)
        spec = WebhookSpec(endpoint=f"{receiver}/hook", max_events_per_batch=per_post)
        await client.subscribe(TOPIC, name, spec)
        t0 = time.perf_counter()
        for start in range(0, n, 100):
            await client.publish(
                TOPIC,
                [
                    tl.CloudEvent("bench.w", "/bench", {"i": i}, id=f"{name}-{i}")
                    for i in range(start, min(start + 100, n))
                ],
            )

        async def arrived() -> bool:
            return int((await http.get("/count")).text) - before >= n

        await _until(arrived, 600, f"webhook {name} deliveries")
        t1 = time.perf_counter()
        await client.unsubscribe(name)
    return {"delivered_per_s": n / (t1 - t0)}


async def _backend(url: str, n: int) -> dict[str, dict[str, float]]:
    port = _free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.topics_receiver"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    serve = subprocess.Popen(_serve(url, port), cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        hook = f"http://127.0.0.1:{read_line(receiver, time.monotonic() + 60).split()[1]}"
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as probe:

            async def up() -> bool:
                try:
                    return (await probe.get("/openapi.json")).status_code == 200
                except httpx.TransportError:
                    return False

            await _until(up, 120, "taskloom serve to answer")
        async with tl.AsyncClient(url, hub=HUB) as client:
            await _until(lambda: _drained(client, "receive"), 60, "the trigger to register")
            out = {
                "http, 1 event/request": await _http_phase(base, client, n, 1, 16, 0),
                "http, 100 events/request": await _http_phase(base, client, n * 4, 100, 4, n),
                "webhook, 1 event/POST": await _webhook_phase(client, hook, n, 1, "w1"),
                "webhook, up to 100 events/POST": await _webhook_phase(
                    client, hook, n * 4, 100, "w100"
                ),
            }
    finally:
        _stop(serve)
        _stop(receiver)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the events")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = parser.parse_args()
    n = 300 if args.quick else 3000
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    for backend in backends:
        if backend == "sqlite":
            url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='tpbench-')) / 'bench.db'}"
        else:
            url = fresh_database("tpbench")
        figures = asyncio.run(_backend(url, n))
        print(f"\n{backend} ({n:,} events per phase; batches phases 4x that)")
        for phase, values in figures.items():
            shown = ", ".join(f"{k.replace('_per_s', '')} {v:,.0f}/s" for k, v in values.items())
            print(f"  {phase:32} {shown}")


if __name__ == "__main__":
    main()
