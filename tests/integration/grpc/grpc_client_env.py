"""A real sidecar for the client RPC tests: :class:`~taskloom.grpc.GrpcServer` on a free
port and, beside it, a native taskloom worker running the integration tests' app on the
same store, both on one background event loop thread (as ``taskloom serve --grpc PORT
MODULE:APP`` runs them). Tests talk to it with the SDK's own blocking client."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

import grpc
from apps import app
from durabletask.client import TaskHubGrpcClient
from durabletask.internal import orchestrator_service_pb2_grpc as pb_grpc
from durabletask.worker import TaskHubGrpcWorker
from envs import OPTIONS

import taskloom as tl
from taskloom import manage
from taskloom.grpc import GrpcServer
from taskloom.runtime.worker import Worker
from taskloom.storage import Store, open_store


class SidecarEnv:
    """``start()``, then ``client()`` for SDK clients, ``stop()`` at the end."""

    def __init__(
        self,
        store_url: str,
        hub: str,
        *,
        native_worker: bool = True,
        native_app: tl.App = app,
        registered_only: bool = False,
        lease_for: float = 30.0,
    ) -> None:
        self.store_url = store_url
        self.hub = hub
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.store: Store = open_store(store_url, hub=hub)
        options = dataclasses.replace(OPTIONS, registered_only=registered_only)
        self.worker = Worker(native_app, self.store, options=options) if native_worker else None
        self.server = GrpcServer(
            store_url,
            port=0,
            default_hub=hub,
            stores=[self.store],
            open_without_keys=True,
            lease_for=lease_for,
        )
        self._clients: list[TaskHubGrpcClient] = []
        self._workers: list[TaskHubGrpcWorker] = []
        self.metadata: list[tuple[str, str]] = []
        self.worker_metadata: list[tuple[str, str]] = []

    def call(self, coro: Awaitable[Any], timeout: float = 30) -> Any:
        """Run ``coro`` on the sidecar's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def start(self) -> SidecarEnv:
        self.thread.start()
        self.call(self.store.open())
        if self.worker is not None:
            self.call(self.worker.start())
        self.call(self.server.start())
        # An admin key: a shared PostgreSQL database holds other tests' keys, so keyless
        # calls would be refused there.
        now = datetime.now(UTC)
        created = self.call(manage.create_key(self.store, "admin", f"grpc-{self.hub}", now))
        self.metadata = [("authorization", f"Bearer {created.key}")]
        worker = self.call(manage.create_key(self.store, "worker", f"grpc-w-{self.hub}", now))
        self.worker_metadata = [("authorization", f"Bearer {worker.key}")]
        return self

    def client(self, **options: Any) -> TaskHubGrpcClient:
        """An SDK client on the sidecar; closed by :meth:`stop`."""
        options.setdefault("metadata", self.metadata)
        c = TaskHubGrpcClient(host_address=self.address, **options)
        self._clients.append(c)
        return c

    def sdk_worker(self, **options: Any) -> TaskHubGrpcWorker:
        """An SDK worker on the sidecar (with a worker key); the caller starts it and
        :meth:`stop` stops it."""
        options.setdefault("metadata", self.worker_metadata)
        w = TaskHubGrpcWorker(host_address=self.address, **options)
        self._workers.append(w)
        return w

    def stub(self, channel: grpc.Channel) -> Any:
        """The raw service stub on ``channel``, every call carrying the admin key."""
        return _KeyedStub(pb_grpc.TaskHubSidecarServiceStub(channel), self.metadata)

    def stop(self) -> None:
        try:
            for w in self._workers:
                w.stop()
            for c in self._clients:
                c.close()
            self.call(self.server.stop(grace=1))
            if self.worker is not None:
                self.call(self.worker.stop(drain_timeout=2))
            self.call(self.store.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class _KeyedStub:
    def __init__(self, stub: Any, metadata: list[tuple[str, str]]) -> None:
        self._stub = stub
        self._metadata = metadata

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._metadata, **kw)
