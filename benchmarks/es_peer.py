"""The ``eventsourcing`` peer of ``benchmarks/events.py``: the same appends and reads, made
with the library's application recorders directly (no aggregates, no mapper).

Runs inside ``benchmarks/.venv-es`` (``benchmarks/events.py`` creates it) and never imports
taskloom. Prints one JSON line, ``{phase: {"appends", "events", "seconds"}}``:

    es_peer.py sqlite FILE [sizes]         a fresh file-based SQLite database, WAL
    es_peer.py postgres DBNAME [sizes]     an empty PostgreSQL database on 127.0.0.1:5432

Each event's state is its JSON data encoded to bytes, and decoded again on reading, the
least a mapper would do. An append writes the versions after the stream's current one, so
the table's (originator_id, originator_version) key refuses a stale writer, as an exact
expected version does.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
)

TOPIC = "bench:Happened"
STREAMS = 1000
BATCH = 10
TASKS = 8
PAGE = 1000


class NormalSyncPool(SQLiteConnectionPool):
    """The library's pool, with ``synchronous = NORMAL`` as taskloom's store sets it."""

    def _create_connection(self) -> SQLiteConnection:
        conn = super()._create_connection()
        conn._sqlite_conn.execute("PRAGMA synchronous = NORMAL")
        return conn


def event(stream: str, version: int, i: int) -> StoredEvent:
    state = json.dumps({"i": i, "stream": stream}).encode()
    return StoredEvent(originator_id=stream, originator_version=version, topic=TOPIC, state=state)


def timed(appends: int, events: int, body: Callable[[], None]) -> dict[str, float]:
    began = time.perf_counter()
    body()
    return {"appends": appends, "events": events, "seconds": time.perf_counter() - began}


def one_stream(rec: ApplicationRecorder, n: int) -> None:
    for i in range(n):
        rec.insert_events([event("one", i + 1, i)])


def round_robin(rec: ApplicationRecorder, n: int, prefix: str, batch: int) -> None:
    for i in range(n):
        sid = f"{prefix}-{i % STREAMS}"
        base = (i // STREAMS) * batch
        rec.insert_events([event(sid, base + j + 1, i) for j in range(batch)])


def concurrent(rec: ApplicationRecorder, n: int) -> None:
    """``TASKS`` threads, each appending batches round-robin over streams of its own."""
    per_task, mine = n // TASKS, STREAMS // TASKS
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_task):
                sid = f"conc-{t}-{i % mine}"
                base = (i // mine) * BATCH
                rec.insert_events([event(sid, base + j + 1, i) for j in range(BATCH)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(TASKS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


def read_streams(rec: ApplicationRecorder, prefix: str) -> int:
    count = 0
    for k in range(STREAMS):
        for e in rec.select_events(f"{prefix}-{k}"):
            json.loads(e.state)
            count += 1
    return count


def read_all(rec: ApplicationRecorder) -> int:
    count, after = 0, 0
    while page := rec.select_notifications(after, PAGE, inclusive_of_start=False):
        for n in page:
            json.loads(n.state)
        count += len(page)
        after = page[-1].id
    return count


def run(rec: ApplicationRecorder, args: argparse.Namespace, pg: bool) -> dict[str, Any]:
    rec.create_table()
    out: dict[str, Any] = {}
    out["one_stream"] = timed(args.one, args.one, lambda: one_stream(rec, args.one))
    out["round_robin"] = timed(args.rr, args.rr, lambda: round_robin(rec, args.rr, "rr", 1))
    out["batched"] = timed(
        args.batches, args.batches * BATCH, lambda: round_robin(rec, args.batches, "batch", BATCH)
    )
    if pg:
        n = args.batches // TASKS * TASKS
        out["batched_concurrent"] = timed(n, n * BATCH, lambda: concurrent(rec, n))
    counted: dict[str, int] = {}
    began = time.perf_counter()
    counted["streams"] = read_streams(rec, "batch")
    out["read_stream"] = {
        "appends": STREAMS,
        "events": counted["streams"],
        "seconds": time.perf_counter() - began,
    }
    began = time.perf_counter()
    counted["all"] = read_all(rec)
    out["read_all"] = {
        "appends": 0,
        "events": counted["all"],
        "seconds": time.perf_counter() - began,
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("engine", choices=["sqlite", "postgres"])
    parser.add_argument("target", help="SQLite file, or PostgreSQL database name")
    parser.add_argument("--one", type=int, default=5000, help="appends to one stream")
    parser.add_argument("--rr", type=int, default=5000, help="appends round-robin")
    parser.add_argument("--batches", type=int, default=2000, help="appends of 10 events")
    parser.add_argument("--sync", choices=["normal", "full"], default="normal")
    args = parser.parse_args()
    if args.engine == "sqlite":
        sqlite = SQLiteDatastore(args.target, originator_id_type="text")
        if args.sync == "normal":
            sqlite.pool = NormalSyncPool(db_name=args.target)
        figures = run(SQLiteApplicationRecorder(sqlite), args, pg=False)
        sqlite.close()
    else:
        pg = PostgresDatastore(
            args.target,
            "127.0.0.1",
            5432,
            "postgres",
            "",
            pool_size=TASKS,
            originator_id_type="text",
        )
        try:
            figures = run(PostgresApplicationRecorder(pg), args, pg=True)
        finally:
            pg.close()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
