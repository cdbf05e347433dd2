"""The worker registry with real ``taskloom serve`` processes: a running worker is
listed with what it serves, a cleanly stopped one leaves at once, a SIGKILLed one
expires after three missed heartbeats."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from crash_app import Workers, wait_until

from taskloom.storage import open_store
from taskloom.storage.host_base import HostStore, WorkerRecord


def live(url: str, hub: str) -> list[WorkerRecord]:
    async def read() -> list[WorkerRecord]:
        store = open_store(url, hub=hub)
        await store.open()
        try:
            assert isinstance(store, HostStore)
            return await store.list_workers(datetime.now(UTC))
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.fixture
def workers(store_url: str, hub: str, tmp_path: Path) -> Iterator[Workers]:
    made = Workers(store_url, hub, tmp_path / "activities.log", tmp_path)
    try:
        yield made
    finally:
        made.close()


def test_workers_register_leave_and_expire(workers: Workers, store_url: str, hub: str) -> None:
    stopped = workers.start("--heartbeat-every", "0.2")
    killed = workers.start("--heartbeat-every", "0.2")
    found = wait_until(lambda: len(live(store_url, hub)) == 2, 30, "both workers to register")
    assert found
    records = {r.pid: r for r in live(store_url, hub)}
    assert set(records) == {stopped.pid, killed.pid}
    record = records[stopped.pid]
    assert record.kind == "native" and record.host == socket.gethostname()
    assert {"chain", "timer", "fanout"} <= set(record.orchestrations)
    assert {"inc", "double", "square"} <= set(record.activities)
    assert record.slots > 0 and 0 <= record.busy <= record.slots
    assert record.started_at <= record.last_seen < record.expires_at
    assert record.worker_id.startswith(f"{socket.gethostname()}:{stopped.pid}:")
    # Heartbeats move last_seen on.
    first_seen = record.last_seen
    wait_until(
        lambda: any(
            r.pid == stopped.pid and r.last_seen > first_seen for r in live(store_url, hub)
        ),
        30,
        "a second heartbeat",
    )

    os.kill(stopped.pid, signal.SIGTERM)
    assert stopped.wait(30) == 0, workers.output()
    # A clean stop deletes the row itself: no waiting for an expiry.
    assert [r.pid for r in live(store_url, hub)] == [killed.pid]

    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(10)
    wait_until(lambda: live(store_url, hub) == [], 30, "the killed worker's row to expire")


def test_a_negative_heartbeat_interval_is_refused(store_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from crash_app import APP_SPEC, ROOT

    cmd = [sys.executable, "-m", "taskloom", "serve", APP_SPEC, "--store", store_url]
    cmd += ["--no-http", "--heartbeat-every", "-1"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "heartbeat_every must be >= 0 seconds (0 turns the heartbeat off)" in done.stderr
