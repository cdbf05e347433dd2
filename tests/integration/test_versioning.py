"""Orchestration versioning on real stores (SQLite and PostgreSQL through ``store_url``):
which worker runs which instance for each ``version_match``, what ``version_mismatch``
does with the others, the version stamped on starts and sub-orchestrations, and TestEnv."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import taskloom as tl
from taskloom.runtime.worker import Worker, WorkerOptions
from taskloom.storage import Store, open_store
from taskloom.testing import TestEnv
from taskloom.versioning import MISMATCH_ERROR

OPTIONS = WorkerOptions(poll_interval=0.05, lease_for=10.0)


def make_app(hub: str, **policy: Any) -> tl.App:
    app = tl.App(hub, **policy)

    @app.activity
    def tag(x: Any) -> Any:
        return x

    @app.orchestrator
    def report(ctx: tl.OrchestrationContext) -> Any:
        seen = yield ctx.call_activity("tag", ctx.version)
        return {"version": seen, "worker": policy.get("version")}

    @app.orchestrator
    def parent(ctx: tl.OrchestrationContext, child_version: str | None) -> Any:
        try:
            out = yield ctx.call_sub_orchestrator("report", version=child_version)
        except tl.TaskFailedError as exc:
            return {"failed": str(exc)}
        return {"child": out, "mine": ctx.version}

    return app


@asynccontextmanager
async def running(app: tl.App, store_url: str) -> AsyncIterator[tuple[Worker, list[str]]]:
    """A worker of ``app``; the list collects the ids of instances it abandoned."""
    store = open_store(store_url, hub=app.name)
    await store.open()
    abandoned: list[str] = []
    real = store.abandon_episode

    async def spy(instance_id: str, lease_token: int) -> None:
        abandoned.append(instance_id)
        await real(instance_id, lease_token)

    store.abandon_episode = spy  # type: ignore[method-assign]
    worker = Worker(app, store, options=OPTIONS)
    await worker.start()
    try:
        yield worker, abandoned
    finally:
        await worker.stop(drain_timeout=2)
        await store.close()


async def wait_done(client: tl.AsyncClient, iid: str, timeout: float = 15) -> tl.OrchestrationState:
    state = await client.wait_for_completion(iid, timeout)
    assert state is not None
    return state


async def status(client: tl.AsyncClient, iid: str) -> tl.Status:
    state = await client.get_status(iid)
    assert state is not None
    return state.runtime_status


async def eventually(probe: Callable[[], Any], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.fixture
async def client(store_url: str, hub: str) -> AsyncIterator[tl.AsyncClient]:
    c = tl.AsyncClient(store_url, hub=hub)
    try:
        yield c
    finally:
        await c.close()


async def test_exact_wait_leaves_other_versions_for_their_worker(
    store_url: str, hub: str, client: tl.AsyncClient
) -> None:
    v1 = make_app(hub, version="1", version_match="exact")
    async with running(v1, store_url) as (_, abandoned):
        one = await client.start_new("report", version="1")
        two = await client.start_new("report", version="2")
        plain = await client.start_new("report")  # no version: not exactly "1"
        assert (await wait_done(client, one)).output == {"version": "1", "worker": "1"}
        await asyncio.sleep(0.5)
        assert await status(client, two) is tl.Status.PENDING
        assert await status(client, plain) is tl.Status.PENDING
        assert abandoned == []  # filtered in the lease query: never leased
        v2 = make_app(hub, version="2", version_match="exact")
        async with running(v2, store_url) as (_, abandoned2):
            assert (await wait_done(client, two)).output == {"version": "2", "worker": "2"}
            assert abandoned2 == []
        assert await status(client, plain) is tl.Status.PENDING


async def test_current_or_older_runs_older_and_waits_for_newer(
    store_url: str, hub: str, client: tl.AsyncClient
) -> None:
    app = make_app(hub, version="1.10", version_match="current_or_older")
    async with running(app, store_url) as (worker, abandoned):
        done = [await client.start_new("report", version=v) for v in ("1.9", "1.10", None)]
        for iid in done:
            assert (await wait_done(client, iid)).runtime_status is tl.Status.COMPLETED
        first = await client.start_new("report", version="2")
        await eventually(lambda: asyncio.sleep(0, result=bool(abandoned)))
        assert abandoned == [first]
        # The foreign version is now filtered out: later ones are not leased at all.
        later = [await client.start_new("report", version="2") for _ in range(3)]
        newer = await client.start_new("report", version="1.11")
        await asyncio.sleep(0.5)
        assert abandoned == [first, newer]
        for iid in [first, *later, newer]:
            assert await status(client, iid) is tl.Status.PENDING
        assert worker.is_idle
    v2 = make_app(hub, version="2", version_match="current_or_older")
    async with running(v2, store_url):
        for iid in [first, *later, newer, *done]:
            assert (await wait_done(client, iid)).runtime_status is tl.Status.COMPLETED


async def test_fail_fails_foreign_instances_naming_both_versions(
    store_url: str, hub: str, client: tl.AsyncClient
) -> None:
    app = make_app(hub, version="1", version_match="exact", version_mismatch="fail")
    async with running(app, store_url) as (_, abandoned):
        two = await client.start_new("report", version="2")
        state = await wait_done(client, two)
        assert state.runtime_status is tl.Status.FAILED
        failure = state.failure_details
        assert failure is not None and failure.error_type == MISMATCH_ERROR
        assert "'2'" in failure.message and "'1'" in failure.message
        # A parent of the right version whose child has another one hears of the failure.
        p = await client.start_new("parent", "3", version="1")
        out = (await wait_done(client, p)).output
        assert "version '3'" in out["failed"] and "'1'" in out["failed"]
        ok = await client.start_new("parent", None, version="1")
        assert (await wait_done(client, ok)).output == {
            "child": {"version": "1", "worker": "1"},
            "mine": "1",
        }
        assert abandoned == []


async def test_any_runs_every_version(store_url: str, hub: str, client: tl.AsyncClient) -> None:
    app = make_app(hub, version="1")
    async with running(app, store_url):
        for v in ("1", "2", None, "zeta"):
            iid = await client.start_new("report", version=v)
            assert (await wait_done(client, iid)).output["version"] == v


async def test_worker_and_default_versions_stamp_starts(store_url: str, hub: str) -> None:
    app = make_app(hub, version="3")
    async with running(app, store_url) as (worker, _):
        stamped = await worker.client.start_new("report")
        explicit = await worker.client.start_new("report", version="5")
        child = await worker.client.start_new("parent", None)
        assert (await wait_done(worker.client, stamped)).output["version"] == "3"
        assert (await wait_done(worker.client, explicit)).output["version"] == "5"
        out = (await wait_done(worker.client, child)).output
        assert out == {"child": {"version": "3", "worker": "3"}, "mine": "3"}
    with_default = make_app(hub, version="3", default_version="2")
    async with running(with_default, store_url) as (worker, _):
        iid = await worker.client.start_new("parent", None)
        out = (await wait_done(worker.client, iid)).output
        assert out == {"child": {"version": "2", "worker": "3"}, "mine": "2"}
        iid = await worker.client.start_new("parent", "7", version="6")
        out = (await wait_done(worker.client, iid)).output
        assert out == {"child": {"version": "7", "worker": "3"}, "mine": "6"}


async def test_plain_store_lease_filter(store_url: str, hub: str, client: tl.AsyncClient) -> None:
    """The store alone: ``only`` and ``excluded`` of a VersionFilter."""
    from datetime import UTC, datetime

    from taskloom.storage.base import VersionFilter

    ids = {v: await client.start_new("report", version=v) for v in ("1", "2", None)}
    store: Store = open_store(store_url, hub=hub)
    await store.open()
    try:
        now = datetime.now(UTC)

        async def leased(versions: VersionFilter | None) -> set[str]:
            got = await store.lease_episodes(now, 10, 0.001, "me", versions)
            for e in got:
                await store.abandon_episode(e.instance.instance_id, e.lease_token)
            return {e.instance.instance_id for e in got}

        assert await leased(VersionFilter(only="2")) == {ids["2"]}
        assert await leased(VersionFilter(only="")) == {ids[None]}
        assert await leased(VersionFilter(excluded=frozenset({"1", ""}))) == {ids["2"]}
        assert await leased(None) == set(ids.values())
    finally:
        await store.close()


def test_testenv_ctx_version_and_stamping() -> None:
    app = make_app("envapp", version="4", default_version="3.1")
    with TestEnv(app) as env:
        iid = env.client.start_new("parent", None)
        state = env.client.wait_for_completion(iid, 10)
        assert state is not None and state.version == "3.1"
        assert state.output == {"child": {"version": "3.1", "worker": "4"}, "mine": "3.1"}
        iid = env.client.start_new("report", version="9")
        assert env.client.wait_for_completion(iid, 10).output["version"] == "9"  # type: ignore[union-attr]
