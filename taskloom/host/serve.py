"""``taskloom serve``: workers, schedule and queue triggers, and the HTTP API in one
process and one event loop.

Parts start in dependency order (store, client, worker, triggers, HTTP) and stop in the
reverse: on SIGTERM or SIGINT the HTTP server stops accepting and finishes its requests,
the triggers and the worker let running handlers and activities finish, then the store
closes. Several hosts on one PostgreSQL store share the work through the store's leases.

Without API keys the management API is open, which is only allowed on a loopback
address; bound elsewhere, serve refuses to start until a key exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from taskloom.client import AsyncClient
from taskloom.clock import Clock
from taskloom.errors import ConfigurationError
from taskloom.host import logs
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
) -> None:
    """Serve ``app`` from ``store_url`` until ``stop`` is set or a signal arrives."""
    if not (http or workers):
        raise ConfigurationError("nothing to run: --no-http and --no-workers together")
    if configure_logging:
        logs.configure(json_logs=json_logs)
    stop = stop or asyncio.Event()
    store = open_store(store_url, hub=app.name)
    await store.open()
    parts: list[_Runner] = []
    try:
        if http:
            await _check_exposure(store, host)
        client = AsyncClient(
            store, app.name, converter=app.converter, base_url=f"http://{_netloc(host)}:{port}"
        )
        if workers:
            chosen = options or app.worker_options()
            worker = Worker(app, store, options=chosen, client=client)
            parts.append(_WorkerPart(worker))
            runners = trigger_runners(app, store, client, lease_for=chosen.lease_for, webhooks=True)
            parts.extend(runners)
        _install_signals(stop)
        for part in parts:
            await part.start()
        server = None
        if http:
            server = await start_http(app, client, host, port)
        what = ", ".join(p for p, on in (("HTTP", http), ("workers and triggers", workers)) if on)
        where = f" on http://{_netloc(host)}:{port}" if http else ""
        log.info("serving hub %r from %s%s: %s", app.name, redact(store_url), where, what)
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
        if server is not None:
            waiters.append(server.task)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        log.info("stopping: finishing requests, handlers and activities in flight")
        if server is not None:
            await server.stop()
        waiters[0].cancel()
    finally:
        for part in reversed(parts):
            try:
                await part.stop()
            except Exception:
                log.exception("error while stopping %s", type(part).__name__)
        await store.close()
        log.info("stopped")


async def _check_exposure(store: Store, host: str) -> None:
    if is_loopback(host):
        return
    if not isinstance(store, HostStore):
        raise ConfigurationError(f"{store!r} holds no API keys; cannot serve HTTP on {host}")
    if not any(k.revoked_at is None for k in await store.key_list()):
        raise ConfigurationError(
            f"refusing to serve the management API on {host} without API keys: anyone who "
            f"can reach {host} could start and stop workflows. Create a key first "
            f"(taskloom keys create --role admin --hub {store.hub} --store URL), or bind to "
            "127.0.0.1"
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


async def start_http(app: App, client: AsyncClient, host: str, port: int) -> HttpServer:
    import uvicorn

    from taskloom.http.api import create_asgi_app

    asgi = create_asgi_app(app, client, open_without_keys=is_loopback(host))
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

    return QuietServer(config)


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
