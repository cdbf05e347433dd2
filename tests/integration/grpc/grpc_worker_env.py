"""A real ``taskloom serve --grpc`` subprocess and SDK workers for the worker-side tests.

:func:`serving` starts ``python -m taskloom serve [APP] --grpc PORT`` on the test's store
and hub (API keys created first: the shared PostgreSQL database holds other tests' keys,
so a keyless hub would be refused), waits with a deadline until the sidecar answers
Hello, and stops it with SIGTERM. :func:`sdk_worker` runs a
``durabletask.worker.TaskHubGrpcWorker`` in this process with a ``worker`` key. :class:`Stream`
speaks the work-item protocol directly (no SDK worker).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from durabletask import worker as sdk
from durabletask.internal import orchestrator_service_pb2 as pb
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from google.protobuf import empty_pb2

from taskloom import manage
from taskloom.storage import open_store

HERE = Path(__file__).parent
ROOT = HERE.parent.parent.parent
ROLES = ("worker", "reader", "admin")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def create_keys(store_url: str, hub: str) -> dict[str, str]:
    async def create() -> dict[str, str]:
        store = open_store(store_url, hub=hub)
        await store.open()
        try:
            now = datetime.now(UTC)
            tag = uuid.uuid4().hex[:6]  # one set of keys per sidecar started on the hub
            return {
                role: (await manage.create_key(store, role, f"{hub}-{role}-{tag}", now)).key
                for role in ROLES
            }
        finally:
            await store.close()

    return asyncio.run(create())


@dataclass
class Sidecar:
    store_url: str
    hub: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    keys: dict[str, str]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metadata(self, role: str = "worker") -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.keys[role]}")]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stub(self) -> tuple[grpc.Channel, Any]:
        channel = grpc.insecure_channel(self.address)
        return channel, pb_grpc.TaskHubSidecarServiceStub(channel)  # type: ignore[no-untyped-call]


def _wait_ready(sidecar: Sidecar, deadline: float = 60.0) -> None:
    until = time.monotonic() + deadline
    channel, stub = sidecar.stub()
    try:
        while time.monotonic() < until:
            if sidecar.process.poll() is not None:
                raise RuntimeError(f"taskloom serve exited early:\n{sidecar.log()}")
            try:
                stub.Hello(empty_pb2.Empty(), timeout=1, metadata=sidecar.metadata("reader"))
                return
            except grpc.RpcError:
                time.sleep(0.05)
    finally:
        channel.close()
    raise RuntimeError(f"the sidecar was not ready within {deadline} s:\n{sidecar.log()}")


@contextmanager
def serving(
    tmp: Path, store_url: str, hub: str, *, app: str | None = None, args: tuple[str, ...] = ()
) -> Iterator[Sidecar]:
    """``taskloom serve [app] --grpc PORT`` on ``hub`` (the app's name must be ``hub``;
    apps read it from ``G1_HUB``)."""
    keys = create_keys(store_url, hub)
    port = free_port()
    log_path = tmp / f"serve-{port}.log"
    target = [app] if app else ["--hub", hub]
    command = [
        sys.executable, "-m", "taskloom", "serve", *target, "--store", store_url,
        "--grpc", str(port), "--no-http", "--poll-interval", "0.2", *args,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "G1_HUB": hub}
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    sidecar = Sidecar(store_url, hub, port, process, log_path, keys)
    try:
        _wait_ready(sidecar)
        yield sidecar
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def sdk_worker(
    sidecar: Sidecar,
    orchestrators: list[Callable[..., Any]] = (),  # type: ignore[assignment]
    activities: list[Callable[..., Any]] = (),  # type: ignore[assignment]
    *,
    entities: list[Callable[..., Any]] = (),  # type: ignore[assignment]
    filters: bool = False,
    versioning: sdk.VersioningOptions | None = None,
) -> Iterator[sdk.TaskHubGrpcWorker]:
    """An SDK worker in this process; ``filters``: send work item filters (only what it
    registered), as a worker sharing a hub must; ``versioning``: the worker's options."""
    w = sdk.TaskHubGrpcWorker(host_address=sidecar.address, metadata=sidecar.metadata())
    for fn in orchestrators:
        w.add_orchestrator(fn)
    for fn in activities:
        w.add_activity(fn)
    for fn in entities:
        w.add_entity(fn)
    if filters:
        w.use_work_item_filters()
    if versioning is not None:
        w.use_versioning(versioning)
    w.start()
    try:
        yield w
    finally:
        w.stop()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Stream:
    """A GetWorkItems call read on a thread, so the test can wait with deadlines."""

    def __init__(self, sidecar: Sidecar, role: str = "worker", **request: Any) -> None:
        self.channel, stub = sidecar.stub()
        self.call = stub.GetWorkItems(
            pb.GetWorkItemsRequest(**request), metadata=sidecar.metadata(role)
        )
        self.items: list[pb.WorkItem] = []
        self.error: grpc.RpcError | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for item in self.call:
                if not item.HasField("healthPing"):
                    self.items.append(item)
        except grpc.RpcError as exc:
            self.error = exc

    def take(self, kind: str, timeout: float = 30) -> pb.WorkItem:
        """The next work item of ``kind`` (``orchestratorRequest``, ``activityRequest``)."""
        found = wait_until(
            lambda: next((i for i in self.items if i.HasField(kind)), None),
            timeout,
            f"a {kind} work item",
        )
        self.items.remove(found)
        return found  # type: ignore[no-any-return]

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()
