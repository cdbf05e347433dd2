"""A ``taskloom serve tests/integration/dashboard_app.py:app`` subprocess for the
dashboard's tests (page tests and browser tests), on SQLite or PostgreSQL, and a signed-in
``httpx`` session."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from http_server import free_port

from taskloom import security
from taskloom.client import Client
from taskloom.storage import open_store
from taskloom.storage.host_base import HostStore, KeyRecord

HERE = Path(__file__).parent
APP = f"{HERE / 'dashboard_app.py'}:app"
ROOT = HERE.parent.parent


@dataclass
class DashServer:
    base_url: str
    store_url: str
    hub: str
    process: subprocess.Popen[bytes]
    log_path: Path
    keys: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self) -> Client:
        return Client(self.store_url, hub=self.hub)

    def browser(self, role: str | None = None) -> httpx.Client:
        """An HTTP session signed in with ``role``'s key (none: an open host)."""
        http = httpx.Client(base_url=self.base_url, timeout=20)
        if role is not None:
            page = http.get("/dashboard/signin")
            reply = http.post(
                "/dashboard/signin", data={"csrf": csrf_of(page.text), "key": self.keys[role]}
            )
            assert reply.status_code == 303, reply.text
        return http


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)


def _create_keys(store_url: str, hub: str, roles: tuple[str, ...]) -> dict[str, str]:
    import asyncio
    from datetime import UTC, datetime

    async def create() -> dict[str, str]:
        store = open_store(store_url, hub=hub)
        await store.open()
        assert isinstance(store, HostStore)
        keys = {}
        try:
            for role in roles:
                key = security.new_key()
                record = KeyRecord(
                    id=f"{hub}-{role}",
                    name=f"{role}-key",
                    role=role,
                    key_hash=security.hash_key(key),
                    created_at=datetime.now(UTC),
                )
                await store.key_create(record)
                keys[role] = key
        finally:
            await store.close()
        return keys

    # In a thread of its own: the caller may be inside a running loop (Playwright's).
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, create()).result()


def start(tmp: Path, store_url: str, *, roles: tuple[str, ...] = ()) -> DashServer:
    hub = "d" + uuid.uuid4().hex[:12]
    keys = _create_keys(store_url, hub, roles) if roles else {}
    port = free_port()
    log_path = tmp / f"serve-{hub}.log"
    command = [
        sys.executable, "-m", "taskloom", "serve", APP, "--store", store_url,
        "--port", str(port), "--poll-interval", "0.05",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DASH_HUB": hub}
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = DashServer(f"http://127.0.0.1:{port}", store_url, hub, process, log_path, keys)
    until = time.monotonic() + 60
    while time.monotonic() < until:
        if process.poll() is not None:
            raise RuntimeError(f"taskloom serve exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/openapi.json", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    stop(server)
    raise RuntimeError(f"taskloom serve was not ready within 60 s:\n{server.log()}")


def stop(server: DashServer) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextmanager
def running(tmp: Path, store_url: str, **kwargs: object) -> Iterator[DashServer]:
    server = start(tmp, store_url, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        stop(server)


def wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    """Poll ``check()`` until true, failing with ``what`` after ``timeout`` seconds."""
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
