"""Keys protect what a user expects: ``taskloom keys create`` names its hub, any key in the
store closes an open host, a host never serves a hub open or unreachable while the store
holds keys, and ``taskloom serve`` says at startup what it does and why."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from http_server import APP, HUB, PREFIX, ROOT, free_port, running

from taskloom import security
from taskloom.storage import open_store
from taskloom.storage.host_base import HostStore, KeyRecord


def taskloom(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def serve(store: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``taskloom serve`` expected to refuse: it exits at once."""
    return taskloom("serve", APP, "--store", store, "--port", str(free_port()), *extra)


def add_key(store_url: str, hub: str, key_id: str) -> str:
    async def create() -> str:
        store = open_store(store_url, hub=hub)
        await store.open()
        try:
            assert isinstance(store, HostStore)
            key = security.new_key()
            record = KeyRecord(key_id, key_id, "admin", security.hash_key(key), datetime.now(UTC))
            await store.key_create(record)
            return key
        finally:
            await store.close()

    return asyncio.run(create())


def test_keys_create_names_its_hub(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'k.db'}"
    missing = taskloom("keys", "create", "--role", "admin", "--store", store)
    assert missing.returncode == 2 and "--hub" in missing.stderr
    made = taskloom("keys", "create", "--role", "admin", "--hub", HUB, "--store", store)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("tlk_") and repr(HUB) in made.stderr


def test_serve_refuses_a_hub_without_keys_in_a_store_with_keys(tmp_path: Path) -> None:
    # The old trap: a key made for hub "default", then the app (hub "httptest") served open.
    store = f"sqlite:///{tmp_path / 'trap.db'}"
    made = taskloom("keys", "create", "--role", "admin", "--hub", "default", "--store", store)
    assert made.returncode == 0, made.stderr
    for extra in ((), ("--host", "0.0.0.0"), ("--local-port", str(free_port()))):
        refused = serve(store, *extra)
        assert refused.returncode == 2, refused.stderr
        assert "refusing to serve hub 'httptest'" in refused.stderr
        assert "'default' (1)" in refused.stderr
        assert f"--hub {HUB}" in refused.stderr
    # The key-free listener is part of the HTTP API.
    workers = taskloom(
        "serve", APP, "--store", store, "--no-http", "--local-port", "1", "--port", "1"
    )
    assert workers.returncode == 2 and "--local-port needs the HTTP API" in workers.stderr


def test_a_key_for_the_hub_is_required_and_the_startup_log_says_so(tmp_path: Path) -> None:
    with running(tmp_path, roles=("reader",)) as server:
        assert httpx.get(f"{server.base_url}{PREFIX}/instances").status_code == 401
        with server.client("reader") as http:
            assert http.get(f"{PREFIX}/instances").status_code == 200
        log = server.log()
    assert f"hub '{HUB}'" in log and "API keys required (1 key(s) for this hub)" in log
    assert "OPEN" not in log


def test_open_host_logs_loudly_and_closes_when_any_hub_gets_a_key(tmp_path: Path) -> None:
    with running(tmp_path) as server:
        url = f"{server.base_url}{PREFIX}/instances"
        assert httpx.get(url).status_code == 200
        assert "WARNING" in server.log() and "OPEN: the store holds no API keys" in server.log()
        add_key(server.store_url, "some-other-hub", "other-1")
        time.sleep(2.2)  # the "any keys?" answer is cached for two seconds at most
        closed = httpx.get(url)
        assert closed.status_code == 401
        assert closed.json()["ExceptionMessage"].startswith("an API key is required")


def test_local_port_serves_without_keys_on_loopback_only(tmp_path: Path) -> None:
    local = free_port()
    with running(tmp_path, roles=("reader",), args=("--local-port", str(local))) as server:
        local_url = f"http://127.0.0.1:{local}"
        until = time.monotonic() + 20
        while time.monotonic() < until:
            try:
                httpx.get(f"{local_url}/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        assert httpx.get(f"{server.base_url}{PREFIX}/instances").status_code == 401
        started = httpx.post(f"{local_url}{PREFIX}/orchestrators/add_one/local-1", json=1)
        assert started.status_code == 202, started.text
        assert httpx.get(f"{local_url}{PREFIX}/instances/").status_code == 200
        # A key sent to it is still checked; foreign names and pages are refused.
        bad = httpx.get(f"{local_url}{PREFIX}/instances", headers={"Authorization": "Bearer x"})
        assert bad.status_code == 401
        rebound = httpx.get(f"{local_url}{PREFIX}/instances", headers={"Host": "evil.example"})
        assert rebound.status_code == 403
        cross = httpx.get(f"{local_url}{PREFIX}/instances", headers={"Origin": "https://evil.x"})
        assert cross.status_code == 403
        assert f"127.0.0.1:{local}: NO KEYS REQUIRED (--local-port)" in server.log()
