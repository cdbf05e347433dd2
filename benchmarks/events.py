"""taskloom's event store beside the ``eventsourcing`` library, on SQLite and PostgreSQL:
``python -m benchmarks.events [--quick] [--backend sqlite|postgres|both] [--no-peer]``.

Phases, each timed from its first append (or read) to its last:

- one stream: sequential appends of one event, each with the exact expected version;
- round-robin: sequential appends of one event over 1,000 streams, exact expected versions;
- batched: sequential appends of 10 events over 1,000 streams, exact expected versions;
- batched, 8 and 64 tasks (PostgreSQL only): the same appends from 8 (64) concurrent
  tasks, each over streams of its own; taskloom's concurrent appends share transactions
  (group commit), eventsourcing's threads get a pooled connection each;
- read_stream: every stream of the batched phase read whole;
- read_all: the whole log paged 1,000 events at a time.

``eventsourcing`` 9.5.6 makes the same appends and reads from ``benchmarks/es_peer.py`` in
``benchmarks/.venv-es`` (installed here on first use), with its application recorders and
threads in place of tasks. Each system gets a fresh SQLite file (WAL, ``synchronous =
NORMAL`` for both), or a fresh PostgreSQL database of its own. Ratios are
taskloom/eventsourcing: above 1, taskloom is faster.

Subscription lag: a worker process (``taskloom serve benchmarks.events_lag_app:app
--no-http``) runs one subscription and one asynchronous projection; this process appends
one event at a time, ``LAG_RATE`` a second for ``LAG_SECONDS`` (steady), then ``LAG_BURST``
back to back (burst). Lag is the time from an append's return to the handler's call in
the worker (both ``time.monotonic()``, system-wide on Linux): p50/p99 of the steady
appends, and the burst's drain (its first append to the last event handled).
eventsourcing's peer on PostgreSQL follows with its recorder's ``subscribe()``
(LISTEN/NOTIFY and a pull thread) in a process of its own; its SQLite recorder has no
subscription. The floor: a bare ``sqlite3`` loop of ``BEGIN IMMEDIATE; INSERT; COMMIT``
on a fresh WAL file (``synchronous = NORMAL``), the most any one-transaction-per-append
store could reach here.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import taskloom as tl
from taskloom.errors import ConfigurationError

ROOT = Path(__file__).resolve().parent.parent
ES_VENV = ROOT / "benchmarks" / ".venv-es"
ES_PEER = ROOT / "benchmarks" / "es_peer.py"
ES_VERSION = "9.5.6"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PG_DB, ES_PG_DB = "evbench", "evbench_es"
HUB = "bench"
STREAMS, BATCH, TASKS, MANY, PAGE = 1000, 10, 8, 64, 1000
PEER_TIMEOUT = 1800.0
LAG_APP, LAG_HUB = "benchmarks.events_lag_app:app", "evlag"
LAG_STREAMS, LAG_TIMEOUT = 100, 120.0

Phase = dict[str, float]  # appends, events, seconds


class PeerUnavailable(Exception):
    """eventsourcing could not be installed or run."""


@dataclass
class Sizes:
    one: int  # appends to one stream
    rr: int  # appends round-robin over STREAMS
    batches: int  # appends of BATCH events

    def args(self) -> list[str]:
        return ["--one", str(self.one), "--rr", str(self.rr), "--batches", str(self.batches)]


def events(stream: str, i: int, n: int) -> list[tl.NewEvent]:
    return [tl.NewEvent("Happened", {"i": i, "stream": stream}) for _ in range(n)]


def expected(version: int) -> Any:
    return version if version else tl.NO_STREAM


async def timed(appends: int, count: int, body: Callable[[], Awaitable[object]]) -> Phase:
    began = time.perf_counter()
    await body()
    return {"appends": appends, "events": count, "seconds": time.perf_counter() - began}


async def one_stream(es: tl.AsyncEventStore, n: int) -> None:
    for i in range(n):
        await es.append("one", events("one", i, 1), expected_version=expected(i))


async def round_robin(es: tl.AsyncEventStore, n: int, prefix: str, batch: int) -> None:
    for i in range(n):
        sid = f"{prefix}-{i % STREAMS}"
        version = (i // STREAMS) * batch
        await es.append(sid, events(sid, i, batch), expected_version=expected(version))


async def concurrent(es: tl.AsyncEventStore, n: int, tasks: int, prefix: str) -> None:
    """``tasks`` tasks, each appending batches round-robin over streams of its own."""
    per_task, mine = n // tasks, STREAMS // tasks

    async def work(t: int) -> None:
        for i in range(per_task):
            sid = f"{prefix}-{t}-{i % mine}"
            version = (i // mine) * BATCH
            await es.append(sid, events(sid, i, BATCH), expected_version=expected(version))

    await asyncio.gather(*(work(t) for t in range(tasks)))


async def read_streams(es: tl.AsyncEventStore, prefix: str) -> int:
    return sum([len(await es.read_stream(f"{prefix}-{k}")) for k in range(STREAMS)])


async def read_all(es: tl.AsyncEventStore) -> int:
    count, after = 0, 0
    while page := await es.read_all(after=after, limit=PAGE):
        count += len(page)
        after = page[-1].position
    return count


async def taskloom_figures(url: str, sizes: Sizes, pg: bool) -> dict[str, Phase]:
    out: dict[str, Phase] = {}
    async with tl.AsyncEventStore(url, hub=HUB) as es:
        out["one_stream"] = await timed(sizes.one, sizes.one, lambda: one_stream(es, sizes.one))
        out["round_robin"] = await timed(
            sizes.rr, sizes.rr, lambda: round_robin(es, sizes.rr, "rr", 1)
        )
        n = sizes.batches
        out["batched"] = await timed(n, n * BATCH, lambda: round_robin(es, n, "batch", BATCH))
        if pg:
            for key, tasks in (("batched_concurrent", TASKS), ("batched_many", MANY)):
                n = sizes.batches // tasks * tasks
                body = functools.partial(concurrent, es, n, tasks, f"conc{tasks}")
                out[key] = await timed(n, n * BATCH, body)
        began = time.perf_counter()
        got = await read_streams(es, "batch")
        out["read_stream"] = {
            "appends": STREAMS,
            "events": got,
            "seconds": time.perf_counter() - began,
        }
        began = time.perf_counter()
        got = await read_all(es)
        out["read_all"] = {"appends": 0, "events": got, "seconds": time.perf_counter() - began}
    return out


@dataclass
class LagSizes:
    rate: int  # steady appends a second
    seconds: float
    burst: int

    def args(self) -> list[str]:
        return [
            "--rate",
            str(self.rate),
            "--seconds",
            str(self.seconds),
            "--burst",
            str(self.burst),
        ]

    @property
    def steady(self) -> range:
        return range(int(self.rate * self.seconds))

    @property
    def bursting(self) -> range:
        n = len(self.steady)
        return range(n, n + self.burst)


Lag = dict[str, float]  # p50_ms, p99_ms, missing, burst_appended_s, drain_s, after_last_s


def arrivals(path: Path) -> dict[str, dict[int, float]]:
    """``{consumer: {k: first time seen}}`` from the lines the handlers wrote."""
    out: dict[str, dict[int, float]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.setdefault(parts[0], {}).setdefault(int(parts[1]), float(parts[2]))
    return out


def have_all(path: Path, consumers: list[str], keys: range) -> bool:
    got = arrivals(path)
    return all(sum(k in got.get(c, {}) for k in keys) == len(keys) for c in consumers)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def lag_figures(
    returned: dict[int, float], seen: dict[int, float], sizes: LagSizes, burst_began: float
) -> Lag:
    lags = [(seen[k] - returned[k]) * 1000 for k in sizes.steady if k in seen]
    burst = [seen[k] for k in sizes.bursting if k in seen]
    last = returned[sizes.bursting[-1]]
    return {
        "p50_ms": percentile(lags, 0.5) if lags else float("nan"),
        "p99_ms": percentile(lags, 0.99) if lags else float("nan"),
        "missing": len(sizes.steady) + len(sizes.bursting) - len(lags) - len(burst),
        "burst_appended_s": last - burst_began,
        "drain_s": (max(burst) - burst_began) if burst else float("nan"),
        "after_last_s": (max(burst) - last) if burst else float("nan"),
    }


async def taskloom_lag(url: str, folder: Path, sizes: LagSizes) -> dict[str, Lag]:
    """Lag of the subscription and the projection of ``benchmarks/events_lag_app.py``."""
    from benchmarks.procs import started

    out = folder / f"lag-{time.monotonic_ns()}.txt"
    consumers = ["sub", "proj"]
    returned: dict[int, float] = {}
    async with tl.AsyncEventStore(url, hub=LAG_HUB) as es:

        async def append(k: int) -> None:
            await es.append(f"lag-{k % LAG_STREAMS}", [tl.NewEvent("Tick", {"k": k})])
            returned[k] = time.monotonic()

        os.environ["TASKLOOM_LAG_OUT"] = str(out)
        command = [sys.executable, "-m", "taskloom", "serve", LAG_APP, "--no-http"]
        with started([[*command, "--store", url]]):
            # Warm-up: until both consumers have leased their partitions and handle events.
            deadline, k = time.monotonic() + LAG_TIMEOUT, -1
            while not have_all(out, consumers, range(k, k + 1)):
                if time.monotonic() > deadline:
                    raise TimeoutError("the lag worker handled no event in time")
                k -= 1
                await append(k)
                await asyncio.sleep(0.2)
            began = time.monotonic()
            for k in sizes.steady:
                await asyncio.sleep(max(0.0, began + k / sizes.rate - time.monotonic()))
                await append(k)
            burst_began = time.monotonic()
            for k in sizes.bursting:
                await append(k)
            deadline = time.monotonic() + LAG_TIMEOUT
            while not have_all(out, consumers, range(0, sizes.bursting[-1] + 1)):
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.02)
    got = arrivals(out)
    return {c: lag_figures(returned, got.get(c, {}), sizes, burst_began) for c in consumers}


def peer_lag(python: Path, target: str, sizes: LagSizes) -> dict[str, Lag]:
    command = [str(python), str(ES_PEER), "lag", target, *sizes.args()]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=PEER_TIMEOUT)
    if done.returncode != 0 or not done.stdout.strip():
        last = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise PeerUnavailable(f"es_peer lag exited with {done.returncode}: {last}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    returned = {int(k): v for k, v in raw["returned"].items()}
    seen = {int(k): v for k, v in raw["seen"].items()}
    return {"subscribe": lag_figures(returned, seen, sizes, raw["burst_began"])}


def sqlite_floor(folder: Path, n: int) -> float:
    """Appends a second of a bare ``BEGIN IMMEDIATE; INSERT; COMMIT`` loop in ``sqlite3``."""
    import sqlite3

    conn = sqlite3.connect(folder / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, stream TEXT, data TEXT)")
    began = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (stream, data) VALUES (?, ?)", ("one", f'{{"i":{i}}}'))
        conn.execute("COMMIT")
    seconds = time.perf_counter() - began
    conn.close()
    return n / seconds


def es_python() -> Path:
    """The peer venv's interpreter; creates the venv and installs eventsourcing on first use."""
    python = ES_VENV / "bin" / "python"
    probe = "import importlib.metadata as m, psycopg; print(m.version('eventsourcing'))"
    try:
        if not python.exists():
            command = [sys.executable, "-m", "venv", str(ES_VENV)]
            subprocess.run(command, check=True, capture_output=True, timeout=300)
        have = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
        if have.stdout.strip() != ES_VERSION:
            print(f"installing eventsourcing=={ES_VERSION} into {ES_VENV} ...", flush=True)
            spec = f"eventsourcing[postgres]=={ES_VERSION}"
            pip = [str(python), "-m", "pip", "install", "-q", spec]
            subprocess.run(pip, check=True, capture_output=True, text=True, timeout=900)
    except subprocess.CalledProcessError as exc:
        raise PeerUnavailable(f"{exc}: {str(exc.stderr)[-1500:]}") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise PeerUnavailable(str(exc)) from exc
    return python


def peer_figures(python: Path, engine: str, target: str, sizes: Sizes) -> dict[str, Phase]:
    command = [str(python), str(ES_PEER), engine, target, *sizes.args()]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=PEER_TIMEOUT)
    if done.returncode != 0 or not done.stdout.strip():
        last = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise PeerUnavailable(f"es_peer {engine} exited with {done.returncode}: {last}")
    figures: dict[str, Phase] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def fresh_database(name: str) -> str:
    """Drop and create PostgreSQL database ``name``; its URL."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


ROWS = [
    ("one_stream", "one stream, 1 event/append"),
    ("round_robin", f"{STREAMS:,} streams, 1 event/append"),
    ("batched", f"{STREAMS:,} streams, {BATCH} events/append"),
    ("batched_concurrent", f"  the same, {TASKS} tasks"),
    ("batched_many", f"  the same, {MANY} tasks"),
    ("read_stream", f"read_stream x {STREAMS:,}"),
    ("read_all", f"read_all, pages of {PAGE:,}"),
]


def rate(phase: Phase, key: str) -> float:
    return phase[key] / phase["seconds"]


def report(title: str, ours: dict[str, Phase] | None, theirs: dict[str, Phase] | None) -> None:
    print(f"\n{title}")
    head = f"  {'':<34}{'':>9}{'taskloom':>12}"
    if theirs is not None:
        head += f"{'eventsourcing':>15}{'ratio':>9}"
    print(head)
    for key, label in ROWS:
        if key not in (ours or theirs or {}):
            continue
        kinds = ["appends", "events"] if key not in ("read_stream", "read_all") else ["events"]
        for kind in kinds:
            name = label if kind == kinds[0] else ""
            mine = None if ours is None else rate(ours[key], kind)
            cells = f"  {name:<34}{kind + '/s':>9}"
            cells += f"{'pending':>12}" if mine is None else f"{mine:>12,.0f}"
            if theirs is not None and key in theirs:
                other = rate(theirs[key], kind)
                cells += f"{other:>15,.0f}"
                cells += "" if mine is None else f"{mine / other:>8.2f}x"
            print(cells, flush=True)


def report_lag(lags: dict[str, Lag], sizes: LagSizes) -> None:
    print(
        f"  subscription lag ({sizes.rate}/s for {sizes.seconds:g} s, then a burst of "
        f"{sizes.burst:,}; append returned -> handler called in another process):"
    )
    for name, lag in lags.items():
        print(
            f"    {name:<22} steady p50 {lag['p50_ms']:7.1f} ms  p99 {lag['p99_ms']:7.1f} ms | "
            f"burst appended in {lag['burst_appended_s']:.2f} s, drained "
            f"{lag['drain_s']:.2f} s after its start ({lag['after_last_s']:.2f} s after the "
            f"last append)" + (f" | {lag['missing']:.0f} missing" if lag["missing"] else ""),
            flush=True,
        )


def run_backend(
    backend: str,
    folder: Path,
    sizes: Sizes,
    lag_sizes: LagSizes | None,
    python: Path | None,
    results: dict[str, Any],
) -> None:
    pg = backend == "postgres"
    if pg:
        url, target = fresh_database(PG_DB), ES_PG_DB
        fresh_database(ES_PG_DB)
        title = f"PostgreSQL (databases {PG_DB} and {ES_PG_DB})"
    else:
        url, target = f"sqlite:///{folder / 'taskloom.db'}", str(folder / "es.sqlite")
        title = "SQLite (a fresh file each, WAL)"
    ours = None
    try:
        ours = asyncio.run(taskloom_figures(url, sizes, pg))
    except ConfigurationError as exc:
        print(f"\n{title}: taskloom's event store is not available here yet: {exc}")
    theirs = None
    if python is not None:
        try:
            theirs = peer_figures(python, backend, target, sizes)
        except (PeerUnavailable, subprocess.SubprocessError) as exc:
            print(f"\n{title}: eventsourcing failed: {exc}")
    report(title, ours, theirs)
    results[backend] = {"taskloom": ours, "eventsourcing": theirs}
    if not pg:
        floor = sqlite_floor(folder, 20000)
        print(f"  bare sqlite3 BEGIN IMMEDIATE; INSERT; COMMIT: {floor:,.0f}/s", end="")
        if theirs is not None:
            aim = 10 * rate(theirs["one_stream"], "appends")
            print(f" (10x eventsourcing's one-stream rate would be {aim:,.0f}/s)", end="")
        print(flush=True)
        results[backend]["floor"] = floor
    if lag_sizes is None:
        return
    lags: dict[str, Lag] = {}
    lag_url = fresh_database(PG_DB + "_lag") if pg else f"sqlite:///{folder / 'lag.db'}"
    try:
        for name, lag in asyncio.run(taskloom_lag(lag_url, folder, lag_sizes)).items():
            lags[f"taskloom {'subscription' if name == 'sub' else 'projection'}"] = lag
    except (TimeoutError, RuntimeError, ConfigurationError) as exc:
        print(f"  taskloom lag failed: {exc}")
    if python is not None and pg:
        try:
            fresh_database(ES_PG_DB + "_lag")
            lags["eventsourcing subscribe()"] = peer_lag(python, ES_PG_DB + "_lag", lag_sizes)[
                "subscribe"
            ]
        except (PeerUnavailable, subprocess.SubprocessError) as exc:
            print(f"  eventsourcing lag failed: {exc}")
    report_lag(lags, lag_sizes)
    results[backend]["lag"] = lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--no-peer", action="store_true", help="skip eventsourcing")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-lag", action="store_true", help="skip subscription lag")
    args = parser.parse_args()
    sizes = Sizes(500, 1000, 1000) if args.quick else Sizes(5000, 5000, 2000)
    lag_sizes = None if args.no_lag else LagSizes(200, 2 if args.quick else 5, 5000)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"sizes: {sizes.one:,} appends to one stream, {sizes.rr:,} round-robin, "
        f"{sizes.batches:,} of {BATCH} events"
    )
    python = None
    if not args.no_peer:
        try:
            python = es_python()
            print(f"eventsourcing {ES_VERSION} ({ES_VENV.name}): application recorders")
        except PeerUnavailable as exc:
            print(f"eventsourcing unavailable, taskloom figures only: {exc}")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for backend in backends:
            run_backend(backend, Path(folder), sizes, lag_sizes, python, results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
