"""``app.run(store_url)``: a worker in this process until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING, Any

from taskloom.observability import spans
from taskloom.runtime.worker import Worker, WorkerOptions
from taskloom.storage import open_store

if TYPE_CHECKING:
    from taskloom.app import App

log = logging.getLogger("taskloom.worker")


def run_app(app: App, store_url: str, **options: Any) -> None:
    """Run ``app``'s worker until a stop signal; in-flight activities finish first."""
    asyncio.run(serve_worker(app, store_url, app.worker_options(**options)))


async def serve_worker(
    app: App, store_url: str, options: WorkerOptions, stop: asyncio.Event | None = None
) -> None:
    spans.configure_otlp(service_name=app.name)  # when OTEL_EXPORTER_OTLP_ENDPOINT is set
    store = open_store(store_url, hub=app.name)
    await store.open()
    worker = Worker(app, store, options=options)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    await worker.start()
    consumers = None
    if app.projections or app.subscriptions:
        # Workers spread the app's projections and subscriptions between them.
        from taskloom.client import AsyncClient
        from taskloom.events.runner import ConsumerRunner

        client = AsyncClient(
            store, converter=app.converter, default_version=app.versioning.start_version
        )
        client._opened = True
        # Partition leases last as long as the worker's, so a killed worker's
        # partitions are taken over as soon as its episodes are.
        consumers = ConsumerRunner(
            app, store, client, lease_ttl=options.lease_for, poll_interval=options.poll_interval
        )
        await consumers.start()
    topics = None
    if app.event_triggers:
        from taskloom.client import AsyncClient
        from taskloom.topics.runner import TopicRunner

        topic_client = AsyncClient(
            store, converter=app.converter, default_version=app.versioning.start_version
        )
        topic_client._opened = True
        topics = TopicRunner(
            app,
            store,
            topic_client,
            lease_ttl=options.lease_for,
            poll_interval=options.poll_interval,
        )
        await topics.start()
    log.info("hub %r on %s: worker running; Ctrl-C stops it", app.name, redact(store_url))
    try:
        await stop.wait()
    finally:
        log.info("stopping: letting running activities finish")
        if topics is not None:
            await topics.stop()
        if consumers is not None:
            await consumers.stop()
        await worker.stop()
        await store.close()
        spans.shutdown()


def redact(url: str) -> str:
    """``url`` without its password, fit for logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
