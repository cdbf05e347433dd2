"""Wake-ups across processes (issue 8): an idle ``taskloom serve`` worker in one process
picks up work a client in another process writes, without waiting for a poll.

The worker polls once an hour (``--poll-interval 3600``) and the client gives up after a
minute, so a client that finishes with Completed proves the worker was woken (by
doorbell sockets on SQLite, by NOTIFY on PostgreSQL), not that it polled: this is a check
of behaviour, not a timing. With ``--fallback 3600`` the client's own safety check is
an hour apart too, so its wait can only end by a wake-up from the worker's process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crash_app import ROOT, Workers, wait_until

import taskloom as tl
from taskloom.storage.doorbell import folder_for, hub_key

PEER = Path(__file__).resolve().parent / "wake_peer.py"
#: The worker's fallback poll: far beyond any deadline of these tests.
NO_POLL = "3600"
#: How long the client waits for completion; much less than NO_POLL.
CLIENT_TIMEOUT = 60.0


@pytest.fixture
def idle_worker(store_url: str, hub: str, tmp_path: Path) -> Iterator[Workers]:
    """One ``taskloom serve`` process of the crash app, idle, with an hour-long poll."""
    workers = Workers(store_url, hub, tmp_path / "activities.log", tmp_path, sleep=0.0)
    try:
        workers.start("--poll-interval", NO_POLL)
        workers.wait_running(1)
        yield workers
    finally:
        workers.close()


def run_client(workers: Workers, *args: str, fallback: float | None = None) -> dict[str, Any]:
    """Run ``wake_peer.py client`` in its own process; its JSON report."""
    cmd = [sys.executable, str(PEER), "client", workers.store_url, workers.hub, *args]
    cmd.append(str(CLIENT_TIMEOUT))
    if fallback is not None:
        cmd += ["--fallback", str(fallback)]
    done = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, timeout=CLIENT_TIMEOUT + 30
    )
    assert done.returncode == 0, f"client failed:\n{done.stderr}\n{workers.output()}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(
    "fallback", [pytest.param(None, id="user-client"), pytest.param(3600.0, id="no-client-poll")]
)
def test_start_from_another_process_wakes_an_idle_worker(
    idle_worker: Workers, fallback: float | None
) -> None:
    report = run_client(idle_worker, "start", "chain2", "1", fallback=fallback)
    assert report["status"] == "Completed", (report, idle_worker.output())
    assert report["output"] == (1 + 1) * 2
    # chain2 made two round trips through the worker, each begun by a wake-up.
    with tl.Client(idle_worker.store_url, hub=idle_worker.hub) as client:
        kinds = [e.kind for e in client.get_history(report["instance_id"])]
    assert kinds.count("TaskCompleted") == 2, kinds


@pytest.mark.parametrize(
    "fallback", [pytest.param(None, id="user-client"), pytest.param(3600.0, id="no-client-poll")]
)
def test_event_from_another_process_wakes_an_idle_worker(
    idle_worker: Workers, fallback: float | None
) -> None:
    with tl.Client(idle_worker.store_url, hub=idle_worker.hub) as client:
        iid = client.start_new("waiter")
        state = client.wait_for_start(iid, timeout=30)
        assert state.runtime_status is tl.Status.RUNNING, state
    report = run_client(idle_worker, "event", iid, "Go", '{"n": 7}', fallback=fallback)
    assert report["status"] == "Completed", (report, idle_worker.output())
    assert report["output"] == {"got": {"n": 7}}


def _socket_of(folder: str, hub: str, pid: int) -> Path | None:
    prefix = f"{hub_key(hub)}.{pid}."
    names = [n for n in os.listdir(folder) if n.startswith(prefix)] if os.path.isdir(folder) else []
    assert len(names) <= 1, names
    return Path(folder, names[0]) if names else None


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_stale_doorbell_of_a_killed_listener_is_removed_by_the_next_ring(
    store_url: str, hub: str, tmp_path: Path
) -> None:
    database = store_url.removeprefix("sqlite:///")
    folder = folder_for(database)
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(2):
            log = tmp_path / f"listener-{i}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, str(PEER), "listen", store_url, hub],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            procs.append((proc, log))
        for _, log in procs:
            wait_until(lambda log=log: "ready" in _read(log), 30, f"{log.name} ready")  # type: ignore[misc]
        (victim, _), (survivor, survivor_log) = procs
        stale = _socket_of(folder, hub, victim.pid)
        live = _socket_of(folder, hub, survivor.pid)
        assert stale is not None and live is not None, os.listdir(folder)

        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        assert stale.exists(), "SIGKILL leaves the socket file behind; nothing to test"

        # Any write rings the hub's doorbells: here a start (no worker runs it).
        with tl.Client(store_url, hub=hub) as client:
            client.start_new("chain2", 1)
            wait_until(lambda: not stale.exists(), 10, "the stale doorbell to be removed")
        assert live.exists(), os.listdir(folder)
        wait_until(lambda: "woken" in _read(survivor_log), 10, "the live listener to be rung")
        assert survivor.poll() is None, _read(survivor_log)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
