"""10 MB inputs over the management API (``taskloom serve``'s HTTP, in a ``TestEnv``):
started, run and read back exact; a body above the store's payload limit is a 413 that
names the limit and stores nothing."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

import taskloom as tl
from taskloom import security
from taskloom.storage.host_base import HostStore, KeyRecord
from taskloom.testing import TestEnv

PREFIX = "/runtime/webhooks/durabletask"


def _app() -> tl.App:
    app = tl.App("big" + uuid.uuid4().hex[:8])

    @app.activity
    def measure(data: dict[str, Any]) -> int:
        return len(data["rows"])

    @app.orchestrator
    def echo(ctx: tl.OrchestrationContext) -> Any:
        data = ctx.get_input()
        count = yield ctx.call_activity("measure", data)
        return {"count": count, "data": data}

    return app


def admin_key(env: TestEnv) -> dict[str, str]:
    """An admin key of the env's hub (a shared PostgreSQL database may hold other hubs'
    keys, which close the keyless loopback API)."""
    key = security.new_key()
    record = KeyRecord("big-admin", "big-admin", "admin", security.hash_key(key), datetime.now(UTC))
    store = env.store
    assert isinstance(store, HostStore)
    env.run(store.key_create(record))
    return {"Authorization": f"Bearer {key}"}


def test_a_10_mb_start_over_http_round_trips(store_url: str) -> None:
    payload = {"rows": [{"n": n, "name": f"row-{n * 7919 % 100003}"} for n in range(400_000)]}
    body = json.dumps(payload).encode()
    assert len(body) > 10_000_000
    with TestEnv(_app(), store=store_url, http=True) as env:
        assert env.base_url is not None
        headers = admin_key(env)
        with httpx.Client(base_url=env.base_url, timeout=120, headers=headers) as http:
            started = http.post(
                f"{PREFIX}/orchestrators/echo",
                content=body,
                headers={"content-type": "application/json"},
            )
            assert started.status_code == 202, started.text[:500]
            instance = started.json()["id"]
            done = env.client.wait_for_completion(instance, timeout=120)
            assert done.output == {"count": 400_000, "data": payload}
            status = http.get(f"{PREFIX}/instances/{instance}")
            assert status.status_code == 200
            assert status.json()["output"]["data"] == payload


def test_a_body_above_the_payload_limit_is_413_and_stores_nothing(store_url: str) -> None:
    with TestEnv(_app(), store=store_url, http=True) as env:
        assert env.base_url is not None
        limit = env.store.payloads.limit  # type: ignore[attr-defined]
        body = b'{"x": "' + b"a" * (limit + 100_000) + b'"}'
        headers = admin_key(env)
        with httpx.Client(base_url=env.base_url, timeout=120, headers=headers) as http:
            refused = http.post(
                f"{PREFIX}/orchestrators/echo",
                content=body,
                headers={"content-type": "application/json"},
            )
            assert refused.status_code == 413
            detail = refused.json()["detail"]
            assert f"{limit + 64 * 1024:,} bytes" in detail
            assert "payload_limit" in detail
        assert env.client.query().items == []
