"""``taskloom serve`` as a process: open on loopback without keys, refusing other
addresses without keys, SIGTERM draining, --no-http / --no-workers, JSON logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from http_server import (
    APP,
    HUB,
    PREFIX,
    ROOT,
    create_keys,
    free_port,
    running,
    start_server,
    stop_server,
    wait_status,
)

import taskloom as tl


def test_open_on_loopback_until_the_first_key(tmp_path: Path) -> None:
    with running(tmp_path) as server, server.client() as http:
        assert http.post(f"{PREFIX}/orchestrators/add_one/open-1", json=1).status_code == 202
        assert wait_status(http, "open-1", "Completed")["output"] == 3
        created = http.post(f"{PREFIX}/keys", json={"name": "first", "role": "admin"})
        assert created.status_code == 201
        time.sleep(2.2)  # the "any keys?" answer is cached for two seconds at most
        assert http.get(f"{PREFIX}/instances").status_code == 401
        key = created.json()["key"]
        headers = {"Authorization": f"Bearer {key}"}
        assert http.get(f"{PREFIX}/instances", headers=headers).status_code == 200


def test_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'x.db'}"
    command = [
        sys.executable, "-m", "taskloom", "serve", APP, "--store", store,
        "--host", "0.0.0.0", "--port", str(free_port()),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "without API keys" in result.stderr and "127.0.0.1" in result.stderr


def test_serves_a_public_address_with_keys(tmp_path: Path) -> None:
    with running(tmp_path, roles=("reader",), host="0.0.0.0") as server:
        assert httpx.get(f"{server.base_url}{PREFIX}/instances").status_code == 401
        with server.client("reader") as http:
            assert http.get(f"{PREFIX}/instances").status_code == 200


def test_sigterm_lets_running_activities_finish(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    server = start_server(tmp_path)
    with server.client() as http:
        http.post(f"{PREFIX}/orchestrators/slow/slow-1", json=str(mark))
        wait_status(http, "slow-1", "Running")
        time.sleep(0.3)  # the activity is running now
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    assert mark.read_text() == "done"
    assert "stopped" in server.log()


def test_no_http_runs_only_the_workers(tmp_path: Path) -> None:
    server = start_server(tmp_path, args=("--no-http",))
    try:
        with tl.Client(server.store_url, hub=HUB) as client:
            iid = client.start_new("add_one", 4)
            assert client.wait_for_completion(iid, 30).output == 9
        try:
            httpx.get(f"{server.base_url}/openapi.json", timeout=1)
            raise AssertionError("--no-http served HTTP")
        except httpx.ConnectError:
            pass
    finally:
        assert stop_server(server) == 0


def test_no_workers_runs_only_http(tmp_path: Path) -> None:
    with running(tmp_path, args=("--no-workers",)) as server, server.client() as http:
        assert http.post(f"{PREFIX}/orchestrators/add_one/idle-1", json=1).status_code == 202
        time.sleep(1)
        assert http.get(f"{PREFIX}/instances/idle-1").json()["runtimeStatus"] == "Pending"


def test_json_logs_name_instance_ids(tmp_path: Path) -> None:
    with running(tmp_path, args=("--json-logs",)) as server, server.client() as http:
        http.post(f"{PREFIX}/orchestrators/add_one/json-1", json=1)
        wait_status(http, "json-1", "Completed")
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any(r.get("instance_id") == "json-1" for r in records)


def test_two_hosts_share_one_store(tmp_path: Path) -> None:
    keys = create_keys(f"sqlite:///{tmp_path / 'http.db'}", ("contributor",))
    first = start_server(tmp_path)
    second = start_server(tmp_path, args=("--no-http",))
    try:
        headers = {"Authorization": f"Bearer {keys['contributor']}"}
        with httpx.Client(base_url=first.base_url, headers=headers, timeout=10) as http:
            for n in range(6):
                http.post(f"{PREFIX}/orchestrators/add_one/shared-{n}", json=n)
            for n in range(6):
                assert wait_status(http, f"shared-{n}", "Completed")["output"] == 2 * n + 1
    finally:
        stop_server(second)
        stop_server(first)
