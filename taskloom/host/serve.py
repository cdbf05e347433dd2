"""``taskloom serve``: workers, schedule and queue triggers, and the HTTP API in one
process and one event loop.

Parts start in dependency order (store, client, worker, triggers, HTTP) and stop in the
reverse: on SIGTERM or SIGINT the HTTP server stops accepting and finishes its requests,
the triggers and the worker let running handlers and activities finish, then the store
closes. Several hosts on one PostgreSQL store share the work through the store's leases.

Without API keys the management API is open, which is only allowed on a loopback
address; bound elsewhere, serve refuses to start until a key exists. Keys belong to one
hub, but any key in the store, for any hub, closes the API: a store with keys for other
hubs and none for this one makes serve refuse to start (nobody could call it, and running
open would ignore what the keys were made for). ``local_port`` adds a key-free listener on
127.0.0.1 only, like the Functions host's RPC port, for SDKs that send no key. Serve logs
at startup which hub it serves and whether keys are required, and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from taskloom.client import AsyncClient
from taskloom.clock import Clock
from taskloom.errors import ConfigurationError
from taskloom.host import logs
from taskloom.observability import spans
from taskloom.runtime.runner import redact
from taskloom.runtime.worker import Worker, WorkerOptions
from taskloom.storage import open_store
from taskloom.storage.host_base import HostStore

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.storage.base import Store

log = logging.getLogger("taskloom.serve")


class _Runner(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(app: App, store_url: str, **kwargs: Any) -> None:
    """Run :func:`serve` until a stop signal (the ``taskloom serve`` command)."""
    asyncio.run(serve(app, store_url, **kwargs))


async def serve(
    app: App,
    store_url: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    http: bool = True,
    workers: bool = True,
    json_logs: bool = False,
    options: WorkerOptions | None = None,
    stop: asyncio.Event | None = None,
    configure_logging: bool = True,
    local_port: int | None = None,
    otlp_endpoint: str | None = None,
    grpc_port: int | None = None,
) -> None:
    """Serve ``app`` from ``store_url`` until ``stop`` is set or a signal arrives;
    ``local_port``: also serve the API without keys on 127.0.0.1 at that port;
    ``otlp_endpoint``: export spans there (else where ``OTEL_EXPORTER_OTLP_ENDPOINT``
    says, if set); ``grpc_port``: also serve the Durable Task sidecar protocol on
    ``host`` at that port (``docs/grpc.md``), the native worker then taking only what
    ``app`` registered."""
    if not (http or workers or grpc_port is not None):
        raise ConfigurationError("nothing to run: --no-http and --no-workers together")
    if grpc_port is not None and http and grpc_port == port:
        raise ConfigurationError(f"--grpc {grpc_port} is the HTTP port too; choose another port")
    if local_port is not None and not http:
        raise ConfigurationError("--local-port needs the HTTP API: drop --no-http")
    if local_port is not None and local_port == port and is_loopback(host):
        raise ConfigurationError(
            f"--local-port {local_port} is the public port too; choose another port"
        )
    if configure_logging:
        logs.configure(json_logs=json_logs)
    spans.configure_otlp(otlp_endpoint, service_name=app.name)
    stop = stop or asyncio.Event()
    store = open_store(store_url, hub=app.name)
    await store.open()
    parts: list[_Runner] = []
    servers: list[HttpServer] = []
    try:
        exposure = None
        if http or grpc_port is not None:
            exposure = await _check_exposure(store, host)
        client = AsyncClient(
            store,
            app.name,
            converter=app.converter,
            base_url=f"http://{_netloc(host)}:{port}",
            default_version=app.versioning.start_version,
        )
        if workers:
            chosen = options or app.worker_options()
            if grpc_port is not None:  # SDK workers share the hub: take only our names
                chosen = dataclasses.replace(chosen, registered_only=True)
            worker = Worker(app, store, options=chosen, client=client)
            parts.append(_WorkerPart(worker))
            runners = trigger_runners(app, store, client, lease_for=chosen.lease_for, webhooks=True)
            parts.extend(runners)
        _install_signals(stop)
        if grpc_port is not None:
            assert exposure is not None
            lease_for = (options or app.worker_options()).lease_for
            parts.append(_grpc_part(store_url, store, host, grpc_port, exposure.open, lease_for))
        for part in parts:
            await part.start()
        if exposure is not None and http:
            servers.append(
                await start_http(app, client, host, port, open_without_keys=exposure.open)
            )
            if local_port is not None:
                servers.append(await start_http(app, client, "127.0.0.1", local_port, local=True))
        what = ", ".join(
            p
            for p, on in (
                ("HTTP", http),
                ("workers and triggers", workers),
                (f"gRPC sidecar on {_netloc(host)}:{grpc_port}", grpc_port is not None),
            )
            if on
        )
        where = f" on http://{_netloc(host)}:{port}" if http else ""
        log.info("serving hub %r from %s%s: %s", app.name, redact(store_url), where, what)
        if exposure is not None:
            level = logging.WARNING if exposure.open else logging.INFO
            log.log(level, "hub %r, http://%s:%d: %s", app.name, _netloc(host), port, exposure.why)
        if local_port is not None:
            log.warning(
                "hub %r, http://127.0.0.1:%d: NO KEYS REQUIRED (--local-port): every "
                "program on this machine may call it as admin",
                app.name,
                local_port,
            )
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        waiters.extend(s.task for s in servers)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: finishing requests, handlers and activities in flight")
        for server in servers:
            await server.stop()
        waiters[0].cancel()
    finally:
        for server in servers:
            if not server.task.done():
                await server.stop()
        for part in reversed(parts):
            try:
                await part.stop()
            except Exception:
                log.exception("error while stopping %s", type(part).__name__)
        await store.close()
        spans.shutdown()  # flush the spans of the last episodes
        log.info("stopped")


@dataclass(frozen=True)
class Exposure:
    """How the public listener admits callers: ``open`` (no key needed) or not, and why."""

    open: bool
    why: str


async def _check_exposure(store: Store, host: str) -> Exposure:
    """Keys required when the store holds keys for this hub; open only on loopback and
    only while the store holds no keys at all; otherwise a :class:`ConfigurationError`."""
    if not isinstance(store, HostStore):
        raise ConfigurationError(f"{store!r} holds no API keys; cannot serve HTTP on {host}")
    hub = store.hub
    per_hub = await store.key_hubs()
    create = f"taskloom keys create --role admin --hub {hub} --store URL"
    if per_hub.get(hub):
        return Exposure(False, f"API keys required ({per_hub[hub]} key(s) for this hub)")
    if per_hub:
        others = ", ".join(f"{h!r} ({n})" for h, n in sorted(per_hub.items()))
        raise ConfigurationError(
            f"refusing to serve hub {hub!r}: the store holds API keys for hub(s) {others} "
            f"but none for {hub!r}, and a key is valid for its own hub only. Serving open "
            f"would ignore those keys; requiring keys would refuse every caller. Create a "
            f"key for this hub ({create}), or serve the app whose name is the keys' hub"
        )
    if is_loopback(host):
        return Exposure(
            True,
            "OPEN: the store holds no API keys, so every caller on this machine acts as "
            f"admin (loopback only); create a key to require keys ({create})",
        )
    raise ConfigurationError(
        f"refusing to serve the management API on {host} without API keys: anyone who "
        f"can reach {host} could start and stop workflows. Create a key first "
        f"({create}), or bind to 127.0.0.1"
    )


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def trigger_runners(
    app: App,
    store: Store,
    client: AsyncClient,
    clock: Clock | None = None,
    *,
    lease_for: float = 30.0,
    webhooks: bool = False,
) -> list[_Runner]:
    """The schedule, queue, event-consumer and topic runners the app needs (schedule
    ticks travel by queue); ``webhooks`` also delivers the hub's webhook subscriptions."""
    from taskloom.host.queues import QueueRunner
    from taskloom.host.schedules import ScheduleRunner

    runners: list[_Runner] = []
    if app.schedules:
        runners.append(ScheduleRunner(app, store, client, clock=clock))
    if app.schedules or app.queue_triggers:
        runners.append(QueueRunner(app, store, client, clock=clock))
    if app.projections or app.subscriptions:
        from taskloom.events.runner import ConsumerRunner

        # Partition leases last as long as the workers' leases, so a killed host's
        # partitions are taken over as soon as its episodes are.
        runners.append(ConsumerRunner(app, store, client, clock=clock, lease_ttl=lease_for))
    if app.event_triggers or webhooks:
        from taskloom.topics.runner import TopicRunner

        runners.append(
            TopicRunner(app, store, client, clock=clock, lease_ttl=lease_for, webhooks=webhooks)
        )
    return runners


def _grpc_part(
    store_url: str, store: Store, host: str, port: int, open_without_keys: bool, lease_for: float
) -> _Runner:
    from taskloom.grpc import GrpcServer

    return GrpcServer(
        store_url,
        host=host,
        port=port,
        default_hub=store.hub,
        open_without_keys=open_without_keys,
        stores=[store],
        lease_for=lease_for,
    )


class _WorkerPart:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def start(self) -> None:
        await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()


class HttpServer:
    def __init__(self, server: Any, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await self.task


async def start_http(
    app: App,
    client: AsyncClient,
    host: str,
    port: int,
    *,
    open_without_keys: bool | None = None,
    local: bool = False,
) -> HttpServer:
    """Serve the HTTP API on ``host:port``; ``open_without_keys`` defaults to whether
    ``host`` is loopback; ``local`` is the key-free loopback listener."""
    import uvicorn

    from taskloom.http.api import create_asgi_app

    if local and not is_loopback(host):
        raise ConfigurationError(f"the key-free listener binds to loopback only, not {host}")
    if open_without_keys is None:
        open_without_keys = is_loopback(host)
    asgi = create_asgi_app(app, client, open_without_keys=open_without_keys, local=local)
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    server = _quiet_server(config)
    task = asyncio.create_task(_serve(server), name="http")
    while not server.started:
        if task.done():
            raise ConfigurationError(f"could not serve HTTP on {host}:{port} (see the log above)")
        await asyncio.sleep(0.02)
    return HttpServer(server, task)


async def _serve(server: Any) -> None:
    # uvicorn exits when it cannot bind; _start_http reports it.
    with contextlib.suppress(SystemExit):
        await server.serve()


def _quiet_server(config: Any) -> Any:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn without its own signal handlers: :func:`serve` owns the signals."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def shutdown(self, sockets: Any = None) -> None:
            # The dashboard's event streams never end by themselves: end them first.
            sse = sys.modules.get("taskloom.dashboard.sse")
            if sse is not None:
                sse.close_streams()
            await super().shutdown(sockets)

    return QuietServer(config)


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
