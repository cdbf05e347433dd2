"""A bulk terminate survives a SIGKILL of the host running it: a new host replays the
``taskloom.bulk`` job and carries on from its last recorded page; every instance is
terminated exactly once and appears once in the job's audit.

The host is a real ``taskloom serve`` process (``tests/e2e/crash_app.py``, whose
``waiter`` orchestration waits for an event until it is terminated)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import taskloom as tl
from taskloom import history as h
from taskloom.dashboard import bulk_job as bulk
from taskloom.storage import open_store

ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = f"{ROOT / 'tests' / 'e2e' / 'crash_app.py'}:app"
COUNT = 30


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Hosts:
    def __init__(self, store_url: str, hub: str, tmp: Path) -> None:
        self.store_url, self.hub, self.tmp = store_url, hub, tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, TASKLOOM_TEST_HUB=self.hub, PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "taskloom", "serve", APP_SPEC, "--store", self.store_url]
        cmd += ["--no-http", "--lease-for", "2", "--poll-interval", "0.1"]
        with open(self.tmp / f"host-{len(self.procs)}.log", "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def output(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.tmp.glob("host-*.log"))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


@pytest.fixture
def hosts(store_url: str, hub: str, tmp_path: Path) -> Iterator[Hosts]:
    h = Hosts(store_url, hub, tmp_path)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def client(store_url: str, hub: str) -> Iterator[tl.Client]:
    c = tl.Client(store_url, hub=hub)
    try:
        yield c
    finally:
        if store_url.startswith("postgres"):
            c.purge_many()
        c.close()


def _status(client: tl.Client, iid: str) -> tl.Status | None:
    state = client.get_status(iid)
    return None if state is None else state.runtime_status


def _signed(store_url: str, hub: str, request: bulk.BulkRequest) -> dict[str, Any]:
    """The job's input as the dashboard makes it (signed with the store's secret)."""

    async def sign() -> dict[str, Any]:
        store = open_store(store_url, hub=hub)
        await store.open()
        try:
            return await bulk.signed_input(store, request)
        finally:
            await store.close()

    return asyncio.run(sign())


def test_sigkill_mid_job_then_a_new_host_finishes_it(
    hosts: Hosts, client: tl.Client, store_url: str, hub: str
) -> None:
    targets = [client.start_new("waiter", instance_id=f"crashT-{i:03d}") for i in range(COUNT)]
    first = hosts.start()
    wait_until(lambda: all(_status(client, i) is tl.Status.RUNNING for i in targets), 30, "waiters")
    # 5 per page at 10 per second: a page every half second, six pages.
    request = bulk.BulkRequest(
        action="terminate",
        filter=bulk.BulkFilter(instance_id_prefix="crashT-"),
        requested_at=datetime.now(UTC),
        by_key_id="k-ops",
        by_name="ops",
        by_role="operator",
        rate=10.0,
        page_size=5,
    )
    job = client.start_new(
        bulk.BULK, _signed(store_url, hub, request), instance_id=bulk.new_job_id(request)
    )

    def progressed() -> bool:
        state = client.get_status(job)
        custom = state.custom_status if state is not None else None
        return bool(custom) and custom["applied"] + custom["already"] >= 10  # type: ignore[index]

    wait_until(progressed, 30, f"two pages of the job\n{hosts.output()}")
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    assert _status(client, job) is tl.Status.RUNNING, "the job finished before the kill"
    left = [i for i in targets if _status(client, i) is tl.Status.RUNNING]
    assert left, "every instance was terminated before the kill: nothing to resume"

    hosts.start()
    state = client.wait_for_completion(job, timeout=60)
    assert state.runtime_status is tl.Status.COMPLETED, (state.failure, hosts.output())
    out = state.output
    assert out["selected"] == COUNT and out["skipped"] == 0
    assert out["applied"] + out["already"] == COUNT
    pages = bulk.pages_of(client.get_history(job), client.async_client.converter.loads)
    audited = [i for p in pages for i in (*p.applied, *p.already)]
    assert sorted(audited) == targets, "an instance is missing from the audit or listed twice"
    for iid in targets:
        wait_until(lambda i=iid: _status(client, i) is tl.Status.TERMINATED, 30, iid)  # type: ignore[misc]
        terminations = [e for e in client.get_history(iid) if isinstance(e, h.ExecutionTerminated)]
        assert len(terminations) == 1, f"{iid} was terminated {len(terminations)} times"
