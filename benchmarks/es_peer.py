"""The ``eventsourcing`` peer of ``benchmarks/events.py``: the same appends and reads, made
with the library's application recorders directly (no aggregates, no mapper).

Runs inside ``benchmarks/.venv-es`` (``benchmarks/events.py`` creates it) and never imports
taskloom. Prints one JSON line, ``{phase: {"appends", "events", "seconds"}}``:

    es_peer.py sqlite FILE [sizes]         a fresh file-based SQLite database, WAL
    es_peer.py postgres DBNAME [sizes]     an empty PostgreSQL database on 127.0.0.1:5432
    es_peer.py lag DBNAME [lag sizes]      subscription lag on PostgreSQL: appends here,
                                           ``subscribe()`` in a follower process

Each event's state is its JSON data encoded to bytes, and decoded again on reading, the
least a mapper would do. An append writes the versions after the stream's current one, so
the table's (originator_id, originator_version) key refuses a stale writer, as an exact
expected version does.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
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
TASKS, MANY = 8, 64
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


def concurrent(rec: ApplicationRecorder, n: int, tasks: int, prefix: str) -> None:
    """``tasks`` threads, each appending batches round-robin over streams of its own."""
    per_task, mine = n // tasks, STREAMS // tasks
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_task):
                sid = f"{prefix}-{t}-{i % mine}"
                base = (i // mine) * BATCH
                rec.insert_events([event(sid, base + j + 1, i) for j in range(BATCH)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(tasks)]
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
        for key, tasks in (("batched_concurrent", TASKS), ("batched_many", MANY)):
            n = args.batches // tasks * tasks
            body = functools.partial(concurrent, rec, n, tasks, f"conc{tasks}")
            out[key] = timed(n, n * BATCH, body)
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


LAG_STREAMS = 100


def datastore(dbname: str) -> PostgresDatastore:
    return PostgresDatastore(
        dbname, "127.0.0.1", 5432, "postgres", "", pool_size=MANY, originator_id_type="text"
    )


def follow(dbname: str, out: str) -> None:
    """Follow the recorder's notifications, writing ``es <k> <monotonic>`` per event."""
    pg = datastore(dbname)
    rec = PostgresApplicationRecorder(pg)
    with open(out, "a", buffering=1) as f, rec.subscribe(gt=rec.max_notification_id()) as sub:
        print("ready", flush=True)
        for n in sub:
            now = time.monotonic()
            f.write(f"es {json.loads(n.state)['k']} {now:.6f}\n")


def seen_keys(path: str) -> dict[int, float]:
    out: dict[int, float] = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                out.setdefault(int(parts[1]), float(parts[2]))
    return out


def lag(dbname: str, args: argparse.Namespace) -> dict[str, Any]:
    pg = datastore(dbname)
    rec = PostgresApplicationRecorder(pg)
    rec.create_table()
    versions: dict[str, int] = {}
    returned: dict[int, float] = {}

    def append(k: int) -> None:
        sid = f"lag-{k % LAG_STREAMS}"
        versions[sid] = versions.get(sid, 0) + 1
        state = json.dumps({"k": k}).encode()
        rec.insert_events([StoredEvent(sid, versions[sid], TOPIC, state)])
        returned[k] = time.monotonic()

    out = os.path.join(tempfile.mkdtemp(), "seen.txt")
    follower = subprocess.Popen(
        [sys.executable, __file__, "follow", dbname, "--out", out],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        if follower.stdout.readline().strip() != "ready":
            raise RuntimeError("the follower did not start")
        k = -1
        append(k)
        deadline = time.monotonic() + 60
        while k not in seen_keys(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        steady = int(args.rate * args.seconds)
        began = time.monotonic()
        for k in range(steady):
            time.sleep(max(0.0, began + k / args.rate - time.monotonic()))
            append(k)
        burst_began = time.monotonic()
        for k in range(steady, steady + args.burst):
            append(k)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len([k for k in seen_keys(out) if k >= 0]) >= steady + args.burst:
                break
            time.sleep(0.02)
    finally:
        follower.terminate()
        try:
            follower.wait(10)
        except subprocess.TimeoutExpired:
            follower.kill()
        pg.close()
    return {"returned": returned, "seen": seen_keys(out), "burst_began": burst_began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("engine", choices=["sqlite", "postgres", "lag", "follow"])
    parser.add_argument("target", help="SQLite file, or PostgreSQL database name")
    parser.add_argument("--one", type=int, default=5000, help="appends to one stream")
    parser.add_argument("--rr", type=int, default=5000, help="appends round-robin")
    parser.add_argument("--batches", type=int, default=2000, help="appends of 10 events")
    parser.add_argument("--sync", choices=["normal", "full"], default="normal")
    parser.add_argument("--rate", type=int, default=200, help="lag: steady appends a second")
    parser.add_argument("--seconds", type=float, default=5.0, help="lag: steady seconds")
    parser.add_argument("--burst", type=int, default=5000, help="lag: appends in the burst")
    parser.add_argument("--out", help="follow: the file of arrivals")
    args = parser.parse_args()
    if args.engine == "follow":
        follow(args.target, args.out)
        return
    if args.engine == "lag":
        print(json.dumps(lag(args.target, args)), flush=True)
        return
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
            pool_size=MANY,
            originator_id_type="text",
        )
        try:
            figures = run(PostgresApplicationRecorder(pg), args, pg=True)
        finally:
            pg.close()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
