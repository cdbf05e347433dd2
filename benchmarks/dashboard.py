"""Dashboard page times: ``python -m benchmarks.dashboard [--instances N] [--events N]``.

A hub of 100,000 instances (by default) and one of them with a 10,000-event history, on
SQLite (a temporary file) and PostgreSQL (``--url``, default the local test server,
skipped when unreachable). The rows are written straight into the store's tables in
batches (``executemany`` on SQLite, ``COPY`` on PostgreSQL) after the store created its
schema: starting 100,000 orchestrations through a worker would take minutes and measure
the worker, not the dashboard.

The dashboard runs in process as ``taskloom dashboard`` would (``standalone_app``) on a
real uvicorn socket; a signed-in httpx client requests each page ``--repeat`` times after
two warm-up requests. The time reported is the **server's** time per request, taken by a
small ASGI middleware from the request's arrival to the last body byte sent, so client
and HTTP overheads are left out; median and p95 in milliseconds.

Pages: the instance list (first page, a status filter, a name filter, a page deep in the
keyset, an id prefix), the detail page of the 10,000-event instance, and its history JSON
(the first 200 events cold, i.e. the first read of that history in the process, then
warm pages at the start and the end).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from taskloom import history as h
from taskloom import manage
from taskloom.client import AsyncClient
from taskloom.storage import open_store

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
NAMES = ("OrderWorkflow", "Billing", "Shipment", "Refund", "Nightly")
#: (status, share of the instances)
MIX = (("Completed", 0.70), ("Running", 0.20), ("Failed", 0.05), ("Pending", 0.05))
BIG = "big-history"

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


class Timed:
    """ASGI middleware recording each request's server time (arrival to last byte)."""

    def __init__(self, app: ASGI) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()

        async def timed_send(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.times.append(time.perf_counter() - began)

        await self.app(scope, receive, timed_send)


def _rows(hub: str, count: int, start: datetime) -> list[tuple[Any, ...]]:
    rows = []
    statuses = [s for s, share in MIX for _ in range(round(share * 100))]
    for i in range(count):
        created = start + timedelta(seconds=i * 8)  # spread over about nine days
        status = statuses[i % len(statuses)]
        name = NAMES[i % len(NAMES)]
        output = '{"ok": true}' if status == "Completed" else None
        rows.append(
            (
                hub,
                f"i-{i:06d}",
                uuid.uuid4().hex,
                name,
                status,
                f'{{"n": {i}}}',
                output,
                created,
                created + timedelta(seconds=3),
                3,
            )
        )
    return rows


def _history(count: int, start: datetime) -> list[str]:
    """A realistic history of ``count`` events: activities one after another."""
    events: list[h.HistoryEvent] = [
        h.OrchestratorStarted(start),
        h.ExecutionStarted(start, -1, "OrderWorkflow", BIG, "e1", '{"n": 0}'),
    ]
    task = 0
    moment = start
    while len(events) < count:
        moment += timedelta(milliseconds=20)
        events.append(h.TaskScheduled(moment, task, "step", f'{{"step": {task}}}'))
        events.append(
            h.TaskCompleted(moment + timedelta(milliseconds=5), -1, task, f'{{"done": {task}}}')
        )
        task += 1
    return [h.dumps_event(e) for e in events[:count]]


def _us(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def fill_sqlite(path: str, hub: str, count: int, events: int) -> None:
    start = datetime.now(UTC) - timedelta(days=10)
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany(
            "INSERT INTO instances (hub, instance_id, execution_id, name, status, input, "
            "output, created_at, updated_at, history_len) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(*r[:7], _us(r[7]), _us(r[8]), r[9]) for r in _rows(hub, count, start)],
        )
        conn.execute(
            "INSERT INTO instances (hub, instance_id, execution_id, name, status, input, "
            "created_at, updated_at, history_len) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                hub,
                BIG,
                "e1",
                "OrderWorkflow",
                "Running",
                '{"n": 0}',
                _us(start),
                _us(start),
                events,
            ),
        )
        conn.executemany(
            "INSERT INTO history (hub, instance_id, seq, event) VALUES (?,?,?,?)",
            [(hub, BIG, seq, text) for seq, text in enumerate(_history(events, start))],
        )
    conn.close()


def fill_postgres(url: str, schema: str, hub: str, count: int, events: int) -> None:
    import psycopg

    start = datetime.now(UTC) - timedelta(days=10)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        columns = (
            "hub, instance_id, execution_id, name, status, input, output, created_at, "
            "updated_at, history_len"
        )
        with cur.copy(f'COPY "{schema}".instances ({columns}) FROM STDIN') as copy:
            for row in _rows(hub, count, start):
                copy.write_row(row)
            copy.write_row(
                (hub, BIG, "e1", "OrderWorkflow", "Running", '{"n": 0}', None, start, start, events)
            )
        with cur.copy(f'COPY "{schema}".history (hub, instance_id, seq, event) FROM STDIN') as copy:
            for seq, text in enumerate(_history(events, start)):
                copy.write_row((hub, BIG, seq, text))
        cur.execute(f'ANALYZE "{schema}".instances')


def clean_postgres(url: str, schema: str, hub: str) -> None:
    """Delete this run's rows (its own hub only)."""
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table in ("history", "instances", "api_keys"):
            cur.execute(f'DELETE FROM "{schema}".{table} WHERE hub = %s', (hub,))


async def measure(
    store_url: str, hub: str, repeat: int, count: int, events: int
) -> list[tuple[str, float, float]]:
    from taskloom.dashboard.app import standalone_app

    store = open_store(store_url, hub=hub)
    await store.open()
    client = AsyncClient(store, hub)
    key = (await manage.create_key(store, "reader", "bench", datetime.now(UTC))).key
    timed = Timed(standalone_app(client, open_without_keys=False))
    config = uvicorn.Config(timed, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    results = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as web:
            form = await web.get("/dashboard/signin")
            csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text)
            assert csrf, form.text
            await web.post("/dashboard/signin", data={"csrf": csrf.group(1), "key": key})
            half = max(1, count // 2)
            prefix = f"i-{half:06d}"[:5]
            middle = await store.query_instances(_query(), half, None)
            deep = middle.continuation_token
            dry = {"dry": "1", "action": "terminate", "status": "Running"}
            named = {**dry, "name": "Refund"}
            pages: list[tuple[str, str, dict[str, str]]] = [
                ("list: first page", "/dashboard/", {}),
                ("list: status=Running", "/dashboard/", {"status": "Running"}),
                ("list: name=Refund", "/dashboard/", {"name": "Refund"}),
                (f"list: page {half // 50 + 1:,} (keyset)", "/dashboard/", {"after": deep or ""}),
                (f"list: id prefix {prefix}", "/dashboard/", {"prefix": prefix}),
                (f"detail: {events:,}-event instance", f"/dashboard/instances/{BIG}", {}),
                ("bulk dry run: terminate Running", "/dashboard/bulk", dry),
                ("bulk dry run: terminate Running Refund", "/dashboard/bulk", named),
            ]
            # The first history read of the process fills the per-process history cache.
            timed.times.clear()
            cold = await web.get("/dashboard/api/history", params={"id": BIG, "limit": "200"})
            assert cold.status_code == 200, cold.text[:500]
            results.append(("history JSON: 200 events, cold", timed.times[0] * 1000, float("nan")))
            pages += [
                ("history JSON: events 0-199", "/dashboard/api/history", {"id": BIG}),
                (
                    "history JSON: events 9,800-9,999",
                    "/dashboard/api/history",
                    {"id": BIG, "from": "9800"},
                ),
            ]
            for label, path, params in pages:
                for _ in range(2):
                    warm = await web.get(path, params=params)
                    assert warm.status_code == 200, (label, warm.status_code, warm.text[:300])
                timed.times.clear()
                for _ in range(repeat):
                    await web.get(path, params=params)
                ms = sorted(t * 1000 for t in timed.times)
                p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
                results.append((label, statistics.median(ms), p95))
    finally:
        server.should_exit = True
        await task
        await store.close()
    return results


def _query() -> Any:
    from taskloom.storage.base import InstanceQuery

    return InstanceQuery(newest_first=True)  # the list's default order


def report(backend: str, rows: list[tuple[str, float, float]]) -> None:
    print(f"\n{backend}")
    print(f"  {'page':40} {'median ms':>10} {'p95 ms':>10}")
    for label, median, p95 in rows:
        tail = "" if p95 != p95 else f"{p95:10.1f}"
        print(f"  {label:40} {median:10.1f} {tail:>10}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--url", default=PG_URL, help="PostgreSQL URL ('' to skip)")
    args = parser.parse_args()
    hub = "dashbench" + uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        url = f"sqlite:///{path}"
        store = open_store(url, hub=hub)
        await store.open()
        await store.close()
        began = time.perf_counter()
        fill_sqlite(path, hub, args.instances, args.events)
        print(
            f"SQLite: {args.instances:,} instances and a {args.events:,}-event history "
            f"inserted in {time.perf_counter() - began:.1f} s"
        )
        report("SQLite", await measure(url, hub, args.repeat, args.instances, args.events))
    if not args.url:
        return
    try:
        store = open_store(args.url, hub=hub)
        await store.open()
    except Exception as exc:  # an unreachable server skips the backend
        print(f"\nPostgreSQL skipped: {exc}")
        return
    schema = str(getattr(store, "schema", "taskloom"))
    await store.close()
    try:
        began = time.perf_counter()
        fill_postgres(args.url, schema, hub, args.instances, args.events)
        print(f"\nPostgreSQL: rows inserted in {time.perf_counter() - began:.1f} s")
        rows = await measure(args.url, hub, args.repeat, args.instances, args.events)
        report("PostgreSQL", rows)
    finally:
        clean_postgres(args.url, schema, hub)


if __name__ == "__main__":
    asyncio.run(main())
