"""taskloom's event store beside the ``eventsourcing`` library, on SQLite and PostgreSQL:
``python -m benchmarks.events [--quick] [--backend sqlite|postgres|both] [--no-peer]``.

Phases, each timed from its first append (or read) to its last:

- one stream: sequential appends of one event, each with the exact expected version;
- round-robin: sequential appends of one event over 1,000 streams, exact expected versions;
- batched: sequential appends of 10 events over 1,000 streams, exact expected versions;
- batched, 8 tasks (PostgreSQL only): the same appends from 8 concurrent tasks, each over
  125 streams of its own;
- read_stream: every stream of the batched phase read whole;
- read_all: the whole log paged 1,000 events at a time.

``eventsourcing`` 9.5.6 makes the same appends and reads from ``benchmarks/es_peer.py`` in
``benchmarks/.venv-es`` (installed here on first use), with its application recorders and
threads in place of tasks. Each system gets a fresh SQLite file (WAL, ``synchronous =
NORMAL`` for both), or a fresh PostgreSQL database of its own. Ratios are
taskloom/eventsourcing: above 1, taskloom is faster. Subscription lag is not measured yet.
"""

from __future__ import annotations

import argparse
import asyncio
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
STREAMS, BATCH, TASKS, PAGE = 1000, 10, 8, 1000
PEER_TIMEOUT = 1800.0

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


async def concurrent(es: tl.AsyncEventStore, n: int) -> None:
    """``TASKS`` tasks, each appending batches round-robin over streams of its own."""
    per_task, mine = n // TASKS, STREAMS // TASKS

    async def work(t: int) -> None:
        for i in range(per_task):
            sid = f"conc-{t}-{i % mine}"
            version = (i // mine) * BATCH
            await es.append(sid, events(sid, i, BATCH), expected_version=expected(version))

    await asyncio.gather(*(work(t) for t in range(TASKS)))


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
            n = sizes.batches // TASKS * TASKS
            out["batched_concurrent"] = await timed(n, n * BATCH, lambda: concurrent(es, n))
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
    print(f"  {'subscription lag':<34}{'':>9}{'n/a':>12}")


def run_backend(
    backend: str, folder: Path, sizes: Sizes, python: Path | None, results: dict[str, Any]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--no-peer", action="store_true", help="skip eventsourcing")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    sizes = Sizes(500, 1000, 1000) if args.quick else Sizes(5000, 5000, 2000)
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
            run_backend(backend, Path(folder), sizes, python, results)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
