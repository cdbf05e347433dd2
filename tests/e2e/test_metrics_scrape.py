"""``/metrics`` of a real ``taskloom serve``: the text parses, the figures move with the
work, the backlog rises and drains, and (with keys) a reader key may scrape."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from crash_app import wait_until
from prom_text import Exposition, parse

import taskloom as tl
from taskloom import security
from taskloom.storage import open_store
from taskloom.storage.host_base import HostStore, KeyRecord

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_reader_key(store_url: str, hub: str) -> str:
    async def create() -> str:
        store = open_store(store_url, hub=hub)
        await store.open()
        try:
            assert isinstance(store, HostStore)
            key = security.new_key()
            record = KeyRecord(
                "scraper", "prometheus", "reader", security.hash_key(key), datetime.now(UTC)
            )
            await store.key_create(record)
            return key
        finally:
            await store.close()

    return asyncio.run(create())


class Host:
    def __init__(self, store_url: str, hub: str, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "serve.log"
        self.gate = tmp / "gate"
        env = dict(os.environ, TASKLOOM_TEST_HUB=hub, PYTHONUNBUFFERED="1")
        env["TASKLOOM_TEST_GATE"] = str(self.gate)
        cmd = [sys.executable, "-m", "taskloom", "serve", f"{HERE / 'metrics_app.py'}:app"]
        cmd += ["--store", store_url, "--port", str(self.port), "--poll-interval", "0.2"]
        cmd += ["--max-concurrent-activities", "1", "--heartbeat-every", "0.5"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
            )
        wait_until(self._up, 60, "taskloom serve to listen")

    def _up(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text()
        try:
            httpx.get(self.base + "/metrics", timeout=2)
        except httpx.HTTPError:
            return False
        return True

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


@pytest.fixture
def host_factory(tmp_path: Path) -> Iterator[list[Host]]:
    made: list[Host] = []
    try:
        yield made
    finally:
        for h in made:
            h.stop()


def scrape(host: Host, key: str) -> Exposition:
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.get(host.base + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def test_metrics_move_with_the_work(
    store_url: str, hub: str, tmp_path: Path, host_factory: list[Host]
) -> None:
    key = create_reader_key(store_url, hub)  # readers may scrape; nobody without a key
    host = Host(store_url, hub, tmp_path)
    host_factory.append(host)
    anonymous = httpx.get(host.base + "/metrics", timeout=10)
    assert anonymous.status_code == 401, anonymous.text
    before = scrape(host, key)
    assert before.value("taskloom_worker_slots", kind="activity") == 1
    assert before.value("taskloom_workers", kind="native") == 1
    assert before.value("taskloom_orchestrations_total", name="job", status="Completed") == 0

    with tl.Client(store_url, hub=hub) as client:
        # One activity slot, held until the gate opens: the others queue behind it.
        ids = [client.start_new("job", 0.1) for _ in range(5)]
        doomed = client.start_new("doomed")

        def backlog() -> bool:
            return scrape(host, key).value("taskloom_backlog_depth", kind="activity") >= 2

        wait_until(backlog, 60, "activities to queue behind the one slot")
        busy = scrape(host, key)
        assert busy.value("taskloom_backlog_oldest_age_seconds", kind="activity") > 0
        assert busy.value("taskloom_worker_slots_busy", kind="activity") == 1
        host.gate.touch()
        for iid in ids:
            state = client.wait_for_completion(iid, timeout=120)
            assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        assert client.wait_for_completion(doomed, timeout=60).runtime_status is tl.Status.FAILED

    def drained() -> bool:
        return scrape(host, key).value("taskloom_backlog_depth", kind="activity") == 0

    wait_until(drained, 60, "the backlog to drain")
    after = scrape(host, key)
    assert after.value("taskloom_orchestrations_total", name="job", status="Completed") == 5
    assert after.value("taskloom_orchestrations_total", name="doomed", status="Failed") == 1
    assert after.value("taskloom_activities_total", name="work", outcome="completed") == 5
    assert after.value("taskloom_activities_total", name="broken", outcome="failed") == 1
    assert (
        after.value("taskloom_activity_duration_seconds_count", name="work", outcome="completed")
        == 5
    )
    assert (
        after.value("taskloom_activity_duration_seconds_sum", name="work", outcome="completed")
        >= 1.5
    )
    assert after.value("taskloom_activity_schedule_to_start_seconds_count", name="work") == 5
    # Five jobs behind one slot of 0.3 s: the last one waited at least 4 x 0.3 s.
    assert (
        after.value("taskloom_activity_schedule_to_start_seconds_bucket", name="work", le="1") < 5
    )
    assert (
        after.value("taskloom_orchestration_duration_seconds_count", name="job", status="Completed")
        == 5
    )
    assert after.value("taskloom_timer_lag_seconds_count") >= 5
    assert after.total("taskloom_episodes_total") > before.total("taskloom_episodes_total")
    assert after.value("taskloom_episode_replayed_events_count") > 0
    assert after.value("taskloom_episode_schedule_to_start_seconds_count") > 0
    for operation in ("lease_episodes", "complete_episodes", "complete_activities"):
        assert after.value("taskloom_store_operation_seconds_count", operation=operation) > 0
    assert after.value("taskloom_backlog_depth", kind="orchestration") == 0
    assert after.value("taskloom_worker_slots_busy", kind="activity") == 0
    text = "\n".join(f"{n} {dict(ls)}" for n, ls in after.samples)
    for iid in [*ids, doomed]:
        assert iid not in text, "no instance id in any label"
