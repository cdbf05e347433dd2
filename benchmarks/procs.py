"""Processes for the cross-process benchmarks: taskloom workers, client scripts, and the
virtualenv that holds the DBOS peer. Every wait has a deadline; every process started here
is stopped when its ``with`` block ends."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from benchmarks.workflows import app
from taskloom.client import AsyncClient

ROOT = Path(__file__).resolve().parent.parent
DBOS_VENV = ROOT / "benchmarks" / ".venv-dbos"
DBOS_PEER = ROOT / "benchmarks" / "dbos_peer.py"
DBOS_VERSION = "3.4.0"

Proc = subprocess.Popen[str]


class PeerUnavailable(Exception):
    """DBOS could not be installed."""


#: The tables a run churns through; vacuumed before each PostgreSQL run.
CHURNED = ("instances", "messages", "work_items", "history")


async def prepare(url: str) -> None:
    """Create the store's tables before any process races to, purge finished work, and
    on PostgreSQL vacuum what earlier runs left dead (DBOS gets a fresh database; without
    this, each run would pay for the dead index entries of the runs before it)."""
    async with AsyncClient(url, hub=app.name) as client:
        await client.purge_many()
    if url.startswith(("postgresql:", "postgres:")):
        import psycopg

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for table in CHURNED:
                await conn.execute(f"VACUUM taskloom.{table}")


def taskloom_worker(url: str) -> list[str]:
    serve = [sys.executable, "-m", "taskloom", "serve", "benchmarks.workflows:app"]
    return [*serve, "--no-http", "--store", url]


def read_line(proc: Proc, deadline: float) -> str:
    """The next line ``proc`` prints, waiting until the ``time.monotonic()`` deadline."""
    assert proc.stdout is not None
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            line = proc.stdout.readline()
            if line:
                return line.strip()
        if proc.poll() is not None:
            raise RuntimeError(f"{_name(proc)} exited with code {proc.returncode}")
    raise TimeoutError(f"{_name(proc)} printed nothing in time")


@contextmanager
def started(
    commands: list[list[str]], *, ready_line: str | None = None, timeout: float = 120.0
) -> Iterator[list[Proc]]:
    """Start ``commands``; with ``ready_line``, wait until each has printed it."""
    with ExitStack() as stack:
        procs: list[tuple[Proc, IO[str]]] = []
        for command in commands:
            log = stack.enter_context(tempfile.TemporaryFile("w+"))
            out = subprocess.PIPE if ready_line else subprocess.DEVNULL
            proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=log, text=True)
            stack.callback(_stop, proc)
            procs.append((proc, log))
        try:
            deadline = time.monotonic() + timeout
            for proc, _ in procs:
                while ready_line and read_line(proc, deadline) != ready_line:
                    pass
            yield [proc for proc, _ in procs]
        except BaseException:
            for proc, errors in procs:
                errors.seek(0)
                print(f"--- {_name(proc)} stderr:\n{errors.read()[-2000:]}", file=sys.stderr)
            raise


def _stop(proc: Proc) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def run_json(command: list[str], timeout: float) -> dict[str, Any]:
    """Run ``command`` to its end; the JSON object it printed last."""
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not done.stdout.strip():
        last = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"{' '.join(command[1:3])} exited with {done.returncode}: {last}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def dbos_python() -> Path:
    """The peer venv's interpreter; creates the venv and installs DBOS on first use."""
    python = DBOS_VENV / "bin" / "python"
    version = "import importlib.metadata as m; print(m.version('dbos'))"
    try:
        if not python.exists():
            command = [sys.executable, "-m", "venv", str(DBOS_VENV)]
            subprocess.run(command, check=True, capture_output=True, timeout=300)
        have = subprocess.run([python, "-c", version], capture_output=True, text=True, timeout=60)
        if have.stdout.strip() != DBOS_VERSION:
            print(f"installing dbos=={DBOS_VERSION} into {DBOS_VENV} ...", flush=True)
            pip = [str(python), "-m", "pip", "install", "-q", f"dbos=={DBOS_VERSION}"]
            subprocess.run(pip, check=True, capture_output=True, text=True, timeout=900)
    except subprocess.CalledProcessError as exc:
        raise PeerUnavailable(f"{exc}: {str(exc.stderr)[-1500:]}") from exc
    except (OSError, subprocess.SubprocessError) as exc:
        raise PeerUnavailable(str(exc)) from exc
    return python


def _name(proc: Proc) -> str:
    args = [str(a) for a in proc.args] if isinstance(proc.args, list) else [str(proc.args)]
    return " ".join(Path(a).name if "/" in a else a for a in args[:4])
