"""taskloom in process and across processes, beside DBOS Transact on the same workload:
``python -m benchmarks.crossproc [--quick] [--backend sqlite|postgres|both] [--no-peer]``.

Shapes: SQLite in process (worker and client share a loop and a store); SQLite with one
``taskloom serve`` worker process and the client in another process; PostgreSQL with two
worker processes and a client process; PostgreSQL in process. Each measures seed 001's
MainWorkflow started 2,000 at once (first start to last completion, and the starts alone)
and one at a time (start-to-completion p50/p99). DBOS 3.4.0 runs the same shapes from
``benchmarks/dbos_peer.py`` in ``benchmarks/.venv-dbos``, installed here on first use.
Ratios are taskloom/DBOS for throughput and DBOS/taskloom for times: above 1, taskloom is
better.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procs
from benchmarks.measure import Figures, measure
from benchmarks.run import running

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
DBOS_PG_URL = "postgresql://postgres@127.0.0.1:5432/dbos_bench"  # DBOS's own database
CLIENT_TIMEOUT = 1200.0  # seconds for one whole client run


@dataclass
class Shape:
    title: str
    backend: str  # "sqlite" or "postgres"
    workers: int  # worker processes; 0 means in process


SHAPES = [
    Shape("SQLite, in process", "sqlite", 0),
    Shape("SQLite, 1 worker process, client in another process", "sqlite", 1),
    Shape("PostgreSQL, 2 worker processes, client in another process", "postgres", 2),
    Shape("PostgreSQL, in process", "postgres", 0),
]


@dataclass
class Sizes:
    count: int
    runs: int

    def args(self) -> list[str]:
        return ["--count", str(self.count), "--runs", str(self.runs)]


async def in_process(url: str, sizes: Sizes) -> Figures:
    async with running(url) as client:
        return await measure(client, sizes.count, sizes.runs)


def taskloom_figures(shape: Shape, url: str, sizes: Sizes) -> Figures:
    asyncio.run(procs.prepare(url))
    if shape.workers == 0:
        return asyncio.run(in_process(url, sizes))
    with procs.started([procs.taskloom_worker(url)] * shape.workers):
        client = [sys.executable, "-m", "benchmarks.measure", url, *sizes.args()]
        return Figures.from_json(procs.run_json(client, CLIENT_TIMEOUT))


def dbos_figures(python: Path, shape: Shape, url: str, sizes: Sizes, poll: float) -> Figures:
    peer = [str(python), str(procs.DBOS_PEER)]
    if url.startswith("postgresql"):
        procs.run_json([*peer, "reset", url], 120)
    polling = ["--poll", str(poll)]
    if shape.workers == 0:
        return Figures.from_json(
            procs.run_json([*peer, "inproc", url, *sizes.args()], CLIENT_TIMEOUT)
        )
    with procs.started([[*peer, "worker", url, *polling]] * shape.workers, ready_line="ready"):
        client = [*peer, "client", url, *sizes.args(), *polling]
        return Figures.from_json(procs.run_json(client, CLIENT_TIMEOUT))


ROWS: list[tuple[str, Callable[[Figures], float], str, bool]] = [
    ("started at once", lambda f: f.rate, "/s", True),  # True: higher is better
    ("  the starts alone", lambda f: f.starts_s, " s", False),
    ("one at a time, p50", lambda f: f.p50, " ms", False),
    ("one at a time, p99", lambda f: f.p99, " ms", False),
]


def report(shape: Shape, ours: Figures, theirs: Figures | None) -> None:
    print(f"\n{shape.title}: {ours.count:,} at once; {len(ours.latency_ms)} one at a time")
    heading = "" if theirs is None else f"{'DBOS ' + procs.DBOS_VERSION:>17}{'ratio':>12}"
    print(f"  {'':<22}{'taskloom':>14}{heading}")
    for label, figure, unit, higher_is_better in ROWS:
        mine = figure(ours)
        cells = f"  {label:<22}{mine:>11,.2f}{unit:<3}"
        if theirs is not None:
            other = figure(theirs)
            ratio = mine / other if higher_is_better else other / mine
            cells += f"{other:>14,.2f}{unit:<3}{ratio:>8.2f}x"
        print(cells, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--no-peer", action="store_true", help="skip DBOS")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--dbos-pg-url", default=DBOS_PG_URL)
    parser.add_argument("--dbos-poll", type=float, default=0.01, help="DBOS polling, s")
    args = parser.parse_args()
    sizes = Sizes(200, 20) if args.quick else Sizes(2000, 200)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    python = None
    if not args.no_peer:
        try:
            python = procs.dbos_python()
            poll = f"{args.dbos_poll * 1000:g} ms"
            print(
                f"DBOS {procs.DBOS_VERSION} ({procs.DBOS_VENV.name}): in process, "
                "start_workflow_async and the handles awaited; across processes, worker "
                f"processes on a queue polled every {poll} and a DBOSClient that enqueues "
                f"and polls results every {poll}; system database: a fresh SQLite file, "
                f"or {args.dbos_pg_url} dropped first"
            )
        except procs.PeerUnavailable as exc:
            print(f"DBOS peer unavailable, taskloom figures only: {exc}")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory() as folder:
        for shape in (s for s in SHAPES if s.backend in backends):
            run_shape(shape, Path(folder), args, sizes, python)


def run_shape(
    shape: Shape, folder: Path, args: argparse.Namespace, sizes: Sizes, python: Path | None
) -> None:
    url, peer_url = args.pg_url, args.dbos_pg_url
    if shape.backend == "sqlite":  # a fresh file per shape and per system
        url = f"sqlite:///{folder / f'w{shape.workers}'}.db"
        peer_url = f"sqlite:///{folder / f'w{shape.workers}'}-dbos.sqlite"
    try:
        ours = taskloom_figures(shape, url, sizes)
    except Exception as exc:
        print(f"\n{shape.title}: taskloom failed: {type(exc).__name__}: {exc}")
        return
    theirs = None
    if python is not None:
        try:
            theirs = dbos_figures(python, shape, peer_url, sizes, args.dbos_poll)
        except Exception as exc:
            print(f"\n{shape.title}: DBOS failed: {type(exc).__name__}: {exc}")
    report(shape, ours, theirs)


if __name__ == "__main__":
    main()
