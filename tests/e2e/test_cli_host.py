"""The host's CLI commands, run as a user runs them: keys, schedules, queues, purge-many."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import taskloom as tl
from taskloom.security import hash_key
from taskloom.storage import open_store
from taskloom.storage.host_base import HostStore
from taskloom.testing import TestEnv

ROOT = Path(__file__).resolve().parents[2]


def taskloom(
    store_url: str, hub: str, *args: str, ok: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", *args, "--store", store_url, "--hub", hub],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def lines(done: subprocess.CompletedProcess[str]) -> list[Any]:
    return [json.loads(line) for line in done.stdout.splitlines()]


async def _on_store(store_url: str, hub: str, action: Any) -> Any:
    store = open_store(store_url, hub=hub)
    await store.open()
    try:
        assert isinstance(store, HostStore)
        return await action(store)
    finally:
        await store.close()


def test_keys_create_list_revoke(store_url: str, hub: str) -> None:
    created = taskloom(store_url, hub, "keys", "create", "--role", "contributor", "--name", "ci")
    [key] = created.stdout.split()
    assert key.startswith("tlk_") and len(key) > 40
    assert "not shown again" in created.stderr
    taskloom(store_url, hub, "keys", "create", "--role", "reader")

    listed = taskloom(store_url, hub, "keys", "list")
    assert key not in listed.stdout and hash_key(key) not in listed.stdout
    rows = lines(listed)
    assert (rows[0]["name"], rows[0]["role"], rows[0]["revokedAt"]) == ("ci", "contributor", None)
    assert len(rows) == 2

    async def lookup(store: HostStore) -> Any:
        return await store.key_lookup(hash_key(key))

    record = asyncio.run(_on_store(store_url, hub, lookup))
    assert record is not None and record.id == rows[0]["id"]  # only the hash is stored

    taskloom(store_url, hub, "keys", "revoke", rows[0]["id"])
    revoked = lines(taskloom(store_url, hub, "keys", "list"))[0]
    assert revoked["revokedAt"] is not None
    assert asyncio.run(_on_store(store_url, hub, lookup)) is None

    bad = taskloom(store_url, hub, "keys", "create", "--role", "root", ok=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    missing = taskloom(store_url, hub, "keys", "revoke", "nope", ok=False)
    assert missing.returncode == 2 and "nope" in missing.stderr


def test_schedules_list_pause_resume_trigger(store_url: str, hub: str) -> None:
    tick = datetime.now(UTC) + timedelta(days=1)

    async def register(store: HostStore) -> None:
        await store.schedule_upsert("nightly", "cron:0 0 3 * * *", tick)

    asyncio.run(_on_store(store_url, hub, register))
    [row] = lines(taskloom(store_url, hub, "schedules", "list"))
    assert row["name"] == "nightly" and row["spec"] == "cron:0 0 3 * * *"
    assert row["paused"] is False and row["lastTick"] is None

    taskloom(store_url, hub, "schedules", "pause", "nightly")
    assert lines(taskloom(store_url, hub, "schedules", "list"))[0]["paused"] is True
    resumed = taskloom(store_url, hub, "schedules", "resume", "nightly")
    assert "next tick" in resumed.stderr
    [row] = lines(taskloom(store_url, hub, "schedules", "list"))
    assert row["paused"] is False
    assert datetime.fromisoformat(row["nextTick"]).hour == 3

    message_id = int(taskloom(store_url, hub, "schedules", "trigger", "nightly").stdout)
    [queued] = lines(taskloom(store_url, hub, "queue", "peek", "taskloom-schedules"))
    assert queued["id"] == message_id
    assert queued["body"]["schedule"] == "nightly" and queued["body"]["kind"] == "manual"

    unknown = taskloom(store_url, hub, "schedules", "trigger", "nope", ok=False)
    assert unknown.returncode == 2 and "no schedule 'nope'" in unknown.stderr


def test_queue_put_and_peek(store_url: str, hub: str) -> None:
    first = taskloom(store_url, hub, "queue", "put", "output-queue", "--message", '{"id": 1}')
    taskloom(store_url, hub, "queue", "put", "output-queue", "--message", '"two"', "--delay", "60")
    rows = lines(taskloom(store_url, hub, "queue", "peek", "output-queue"))
    assert [r["body"] for r in rows] == [{"id": 1}, "two"]
    assert rows[0]["id"] == int(first.stdout)
    assert all(r["dequeueCount"] == 0 and r["error"] is None for r in rows)
    assert lines(taskloom(store_url, hub, "queue", "peek", "other")) == []
    bad = taskloom(store_url, hub, "queue", "put", "q", "--message", "{oops", ok=False)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr


@pytest.mark.slow
def test_purge_many_shows_progress(store_url: str, hub: str) -> None:
    app = tl.App(hub)

    @app.orchestrator
    def quick(ctx: tl.OrchestrationContext) -> Any:
        return "done"
        yield  # a generator

    with TestEnv(app, store=store_url) as env:
        ids = [env.client.start_new("quick") for _ in range(230)]
        for iid in ids:
            env.client.wait_for_completion(iid, timeout=30)
        env.client.start_new("quick", start_at=datetime.now(UTC) + timedelta(days=1))

    done = taskloom(store_url, hub, "purge-many", "--status", "Completed", "--page-size", "50")
    assert done.stdout.strip() == "230"
    # The bar is redrawn in place with "\r" (read back as line breaks in text mode).
    bars = [line for line in done.stderr.splitlines() if "purged" in line]
    assert bars[0] == "[" + "." * 30 + "] 0/230 purged"
    assert bars[1] == "[" + "#" * 6 + "." * 24 + "] 50/230 purged"
    assert bars[-1] == "[" + "#" * 30 + "] 230/230 purged"
    assert len(bars) == 1 + 5  # the start and one per page
    remaining = taskloom(store_url, hub, "list")
    assert len(remaining.stdout.splitlines()) == 1  # the Pending instance stays

    again = taskloom(store_url, hub, "purge-many", "--created-to", "2000-01-01")
    assert again.stdout.strip() == "0"
