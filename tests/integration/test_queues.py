"""Queue triggers on real stores: decoded messages and the client, delays, retries with a
growing dequeue count, poison queues, and redelivery after a host is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from host_helpers import Host, start_host, wait_until

import taskloom as tl
from taskloom.storage.host_base import QueueMessage

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SyncItem:
    """Seed 001's MySyncItem: a user type the converter must round-trip."""

    id: int
    sync_name: str
    trigger_date_utc: datetime


async def _true(value: bool) -> bool:
    return value


async def test_handlers_get_decoded_message_and_client(store_url: str, hub: str) -> None:
    app = tl.App("queues")
    got: list[tuple[str, Any, type]] = []

    @app.queue_trigger("output-queue")
    def sync_handler(message: SyncItem, client: tl.Client) -> None:
        got.append(("sync", message, type(client)))

    @app.queue_trigger("async-queue")
    async def async_handler(message: Any, client: tl.AsyncClient) -> None:
        got.append(("async", message, type(client)))
        await client.enqueue(
            "output-queue", SyncItem(2, "Orders", datetime(2024, 5, 1, tzinfo=UTC))
        )

    host = await start_host(app, store_url, hub)
    try:
        item = SyncItem(1, "Customers", datetime(2024, 5, 1, 12, tzinfo=UTC))
        await host.client.enqueue("output-queue", item)
        await host.client.enqueue("async-queue", {"n": 1, "tags": ["a"]})
        await wait_until(lambda: _true(len(got) == 3), 10, "three deliveries")
        assert ("sync", item, tl.Client) in got
        assert ("async", {"n": 1, "tags": ["a"]}, tl.AsyncClient) in got
        assert any(kind == "sync" and m.id == 2 for kind, m, _ in got)
        await wait_until(lambda: _no_messages(host, "output-queue"), 5, "output acknowledged")
        await wait_until(lambda: _no_messages(host, "async-queue"), 5, "async acknowledged")
    finally:
        await host.stop()


async def test_delay_is_honoured(store_url: str, hub: str) -> None:
    app = tl.App("queues")
    seen: list[float] = []

    @app.queue_trigger("later")
    async def later(message: Any, client: tl.AsyncClient) -> None:
        seen.append(time.monotonic())

    host = await start_host(app, store_url, hub)
    try:
        put = time.monotonic()
        await host.client.enqueue("later", "x", delay=timedelta(seconds=1.5))
        await wait_until(lambda: _true(bool(seen)), 10, "the delayed message")
        assert seen[0] - put >= 1.4
    finally:
        await host.stop()


async def test_failures_retry_then_poison_with_the_error(store_url: str, hub: str) -> None:
    app = tl.App("queues")
    calls: dict[str, int] = {"flaky": 0, "broken": 0}

    @app.queue_trigger("flaky", max_dequeue_count=3)
    async def flaky(message: Any, client: tl.AsyncClient) -> None:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise RuntimeError(f"transient {calls['flaky']}")

    @app.queue_trigger("broken", max_dequeue_count=3)
    def broken(message: Any, client: tl.Client) -> None:
        calls["broken"] += 1
        raise ValueError(f"bad message {message!r}")

    host = await start_host(app, store_url, hub, backoff=0.3)
    try:
        await host.client.enqueue("flaky", 1)
        message_id = await host.client.enqueue("broken", {"id": 7})
        seen: list[QueueMessage] = []

        async def poisoned() -> bool:
            seen.extend(await host.host_store.queue_peek("broken"))
            return bool(await host.host_store.queue_peek("broken-poison"))

        await wait_until(poisoned, 15, "the poison message")
        counts = [m.dequeue_count for m in seen]
        assert counts == sorted(counts) and set(counts) >= {1, 2}, counts
        assert any(m.error == "ValueError: bad message {'id': 7}" for m in seen)
        [poison] = await host.host_store.queue_peek("broken-poison")
        assert poison.error == "ValueError: bad message {'id': 7}"
        assert poison.dequeue_count == 3
        assert tl.AsyncClient(host.store).converter.loads(poison.body) == {"id": 7}
        assert await host.host_store.queue_peek("broken") == []
        assert calls["broken"] == 3
        assert message_id > 0

        await wait_until(lambda: _true(calls["flaky"] == 3), 10, "flaky succeeded")
        await wait_until(lambda: _no_messages(host, "flaky"), 5, "flaky acknowledged")
        assert await host.host_store.queue_peek("flaky-poison") == []
    finally:
        await host.stop()


async def _no_messages(host: Host, queue: str) -> bool:
    return await host.host_store.queue_peek(queue) == [] and host.queues.in_flight == 0


async def test_sigkilled_host_message_is_delivered_again(
    store_url: str, hub: str, tmp_path: Path
) -> None:
    app = tl.App("killed")
    got: list[Any] = []

    @app.queue_trigger("slow", visibility_timeout=timedelta(seconds=1))
    async def slow(message: Any, client: tl.AsyncClient) -> None:
        got.append(message)

    sender = tl.AsyncClient(store_url, hub=hub)
    await sender.enqueue("slow", {"job": 42})
    marker = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "queue_host_script.py"), store_url, hub, str(marker)],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:

        async def started() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            return marker.exists()

        await wait_until(started, 60, "the first host to take the message")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert marker.read_text() == "{'job': 42}"
    [leased] = await _host_store(sender).queue_peek("slow")
    assert leased.dequeue_count == 1

    host = await start_host(app, store_url, hub)
    try:
        await wait_until(lambda: _true(bool(got)), 30, "redelivery to the second host")
        assert got == [{"job": 42}]
        await wait_until(lambda: _no_messages(host, "slow"), 15, "acknowledged")
    finally:
        await host.stop()
        await sender.close()


def _host_store(client: tl.AsyncClient) -> Any:
    return client.store


async def test_stop_waits_for_running_handlers(store_url: str, hub: str) -> None:
    app = tl.App("queues")
    finished: list[int] = []

    @app.queue_trigger("work")
    async def work(message: int, client: tl.AsyncClient) -> None:
        await asyncio.sleep(0.3)
        finished.append(message)

    host = await start_host(app, store_url, hub)
    try:
        for n in range(3):
            await host.client.enqueue("work", n)
        await wait_until(lambda: _true(host.queues.in_flight == 3), 10, "three in flight")
    finally:
        await host.stop()
    assert sorted(finished) == [0, 1, 2]
