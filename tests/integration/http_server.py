"""Start ``python -m taskloom serve tests/integration/http_app.py:app`` as a subprocess
and wait until it answers HTTP, with a deadline; stop it with SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from taskloom import security
from taskloom.storage import open_store
from taskloom.storage.host_base import HostStore, KeyRecord

HERE = Path(__file__).parent
APP = f"{HERE / 'http_app.py'}:app"
HUB = "httptest"
PREFIX = "/runtime/webhooks/durabletask"
ROOT = HERE.parent.parent


@dataclass
class Server:
    base_url: str
    store_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    keys: dict[str, str]

    def client(self, role: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_keys(store_url: str, roles: tuple[str, ...]) -> dict[str, str]:
    """One key per role, written straight into the store."""

    async def create() -> dict[str, str]:
        store = open_store(store_url, hub=HUB)
        await store.open()
        assert isinstance(store, HostStore)
        keys = {}
        try:
            for role in roles:
                key = security.new_key()
                record = KeyRecord(
                    id=f"test-{role}",
                    name=f"test-{role}",
                    role=role,
                    key_hash=security.hash_key(key),
                    created_at=datetime.now(UTC),
                )
                await store.key_create(record)
                keys[role] = key
        finally:
            await store.close()
        return keys

    return asyncio.run(create())


def start_server(
    tmp: Path, *, args: tuple[str, ...] = (), roles: tuple[str, ...] = (), host: str = "127.0.0.1"
) -> Server:
    store_url = f"sqlite:///{tmp / 'http.db'}"
    keys = create_keys(store_url, roles) if roles else {}
    port = free_port()
    log_path = tmp / "serve.log"
    command = [
        sys.executable, "-m", "taskloom", "serve", APP, "--store", store_url,
        "--host", host, "--port", str(port), "--poll-interval", "0.05", *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = (
        f"http://127.0.0.1:{port}" if host in ("127.0.0.1", "0.0.0.0") else f"http://{host}:{port}"
    )
    server = Server(base_url, store_url, process, log_path, keys)
    if "--no-http" not in args:
        wait_ready(server)
    return server


def wait_ready(server: Server, deadline: float = 60.0) -> None:
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        if server.process.poll() is not None:
            raise RuntimeError(f"taskloom serve exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    stop_server(server)
    raise RuntimeError(f"taskloom serve was not ready within {deadline} s:\n{server.log()}")


def stop_server(server: Server, timeout: float = 20.0) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


@contextmanager
def running(tmp: Path, **kwargs: object) -> Iterator[Server]:
    server = start_server(tmp, **kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        stop_server(server)


def wait_status(
    http: httpx.Client, iid: str, wanted: str, timeout: float = 15.0
) -> dict[str, object]:
    until = time.monotonic() + timeout
    body: dict[str, object] = {}
    while time.monotonic() < until:
        response = http.get(f"{PREFIX}/instances/{iid}")
        body = response.json()
        if body.get("runtimeStatus") == wanted:
            return body
        time.sleep(0.05)
    raise AssertionError(f"instance {iid} did not reach {wanted}; last: {body}")
