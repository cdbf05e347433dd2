"""Fixtures for the integration tests: a real worker and a real client on a real store.

``env`` runs a :class:`Worker` on the test's event loop and gives an :class:`AsyncClient`
that has its own store connection (as a separate client process would). ``sync_env`` runs
the worker on a background thread's loop and gives the blocking :class:`taskloom.Client`.
Both are parametrized over SQLite and PostgreSQL through ``store_url``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from apps import app
from envs import OPTIONS, BackgroundWorker, Env, SyncEnv

import taskloom as tl
from taskloom.runtime.worker import Worker
from taskloom.storage import open_store


@pytest.fixture
async def env(store_url: str, hub: str) -> AsyncIterator[Env]:
    store = open_store(store_url, hub=hub)
    await store.open()
    worker = Worker(app, store, options=OPTIONS)
    await worker.start()
    client = tl.AsyncClient(store_url, hub=hub)
    try:
        yield Env(client, worker, store, store_url, hub)
    finally:
        await client.close()
        await worker.stop(drain_timeout=2)
        await store.close()


@pytest.fixture
def sync_env(store_url: str, hub: str) -> Iterator[SyncEnv]:
    background = BackgroundWorker(store_url, hub)
    background.start()
    client = tl.Client(store_url, hub=hub)
    try:
        yield SyncEnv(client, store_url, hub)
    finally:
        client.close()
        background.stop()
