"""The dashboard's operational views over HTTP, against ``TestEnv(http=True)`` (a real
uvicorn socket, worker, schedule, queue and consumer runners on a real store): workers,
schedules (pause, resume, trigger), queues (depth, poison, peek, redrive), entities,
event streams, projections and subscriptions with their lag, and API keys (admin only)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest

import taskloom as tl
from taskloom import manage
from taskloom.testing import TestEnv

SIGNED = re.compile(r'name="csrf" value="([0-9a-f]+)"')


@dataclass
class Views:
    env: TestEnv
    web: httpx.Client
    failing: list[bool] = field(default_factory=lambda: [True])
    admin_key: str = ""

    def csrf(self, path: str) -> str:
        page = self.web.get(path)
        assert page.status_code == 200, page.text
        found = SIGNED.search(page.text)
        assert found, page.text
        return found.group(1)

    def post(self, path: str, form_page: str, **data: str) -> httpx.Response:
        return self.web.post(path, data={"csrf": self.csrf(form_page), **data})


def make_app(hub: str, failing: list[bool]) -> tl.App:
    app = tl.App(hub)

    @app.entity
    def counter(ctx: Any) -> None:
        ctx.set_state((ctx.get_state(0) or 0) + (ctx.get_input() or 0))

    @app.schedule(every=timedelta(hours=1), name="hourly")
    def hourly(client: Any, when: Any) -> None:
        return None

    @app.queue_trigger("orders", max_dequeue_count=1)
    def orders(message: Any, client: Any) -> None:
        if failing[0]:
            raise RuntimeError("orders are closed <today>")

    @app.projection("totals")
    def totals(event: Any, view: Any) -> None:
        return None

    return app


@pytest.fixture
def views(store_url: str, hub: str) -> Iterator[Views]:
    failing = [True]
    with TestEnv(make_app(hub, failing), store=store_url, http=True, triggers=True) as env:
        assert env.base_url is not None
        # PostgreSQL's shared database holds other hubs' keys, which close an open host:
        # sign in with an admin key of this hub on both backends.
        admin = env.run(manage.create_key(env.store, "admin", "admin-ann", env.now())).key
        with httpx.Client(base_url=env.base_url, timeout=10, follow_redirects=True) as web:
            sign_in(web, admin)
            yield Views(env, web, failing, admin)
        if store_url.startswith("postgres"):
            env.client.purge_many()


def sign_in(web: httpx.Client, key: str) -> None:
    form = web.get("/dashboard/signin")
    found = SIGNED.search(form.text)
    assert found, form.text
    done = web.post("/dashboard/signin", data={"csrf": found.group(1), "key": key})
    assert done.status_code == 200 and "Sign in" not in done.text, done.text


def wait_until(probe: Any, what: str, timeout: float = 15.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_workers_view_says_when_the_registry_is_missing(views: Views) -> None:
    page = views.web.get("/dashboard/workers")
    assert page.status_code == 200
    store = views.env.store
    if hasattr(store, "list_workers"):  # the registry: the TestEnv's worker heartbeats
        assert 'id="workers"' in page.text
        wait_until(lambda: "data-worker=" in views.web.get("/dashboard/workers").text, "a row")
    else:
        assert 'id="no-registry"' in page.text


def test_schedules_pause_resume_and_trigger(views: Views) -> None:
    page = wait_until(
        lambda: (p := views.web.get("/dashboard/schedules")) and "hourly" in p.text and p,
        "the schedule row",
    )
    assert "every:3600" in page.text and "active" in page.text
    done = views.post("/dashboard/schedules/hourly/pause", "/dashboard/schedules")
    assert done.status_code == 200 and "Done: paused hourly" in done.text
    assert "paused" in views.web.get("/dashboard/schedules").text
    done = views.post("/dashboard/schedules/hourly/resume", "/dashboard/schedules")
    assert "Done: resumed hourly; next tick" in done.text
    done = views.post("/dashboard/schedules/hourly/trigger", "/dashboard/schedules")
    assert "Done: triggered hourly once" in done.text
    missing = views.post("/dashboard/schedules/nope/pause", "/dashboard/schedules")
    assert missing.status_code == 404 and "no schedule" in missing.text
    bad = views.post("/dashboard/schedules/hourly/explode", "/dashboard/schedules")
    assert bad.status_code == 400 and "unknown schedule action" in bad.text
    forged = views.web.post("/dashboard/schedules/hourly/pause", data={"csrf": "0" * 64})
    assert forged.status_code == 403


def test_queues_depth_poison_peek_and_redrive(views: Views) -> None:
    views.env.client.enqueue("orders", {"order": "<b>1</b>"})
    listing = wait_until(
        lambda: (
            (p := views.web.get("/dashboard/queues"))
            and re.search(r'data-queue="orders">.*?data-poison>1<', p.text, re.S)
            and p
        ),
        "the order to be poisoned",
    )
    assert "taskloom-schedules" in listing.text
    page = views.web.get("/dashboard/queues/orders")
    assert "orders are closed &lt;today&gt;" in page.text
    assert "&lt;b&gt;1&lt;/b&gt;" in page.text and "<b>1</b>" not in page.text
    views.failing[0] = False
    done = views.post("/dashboard/queues/orders/redrive", "/dashboard/queues/orders")
    assert done.status_code == 200 and "Done: redrove 1 message(s)" in done.text

    def drained() -> bool:
        text = views.web.get("/dashboard/queues").text
        return bool(
            re.search(r'data-queue="orders"><td>.*?data-depth>0<.*?data-poison>0<', text, re.S)
        )

    wait_until(drained, "the redriven order to be handled")
    other = views.web.get("/dashboard/queues", params={"queue": "elsewhere"})
    assert 'data-queue="elsewhere"' in other.text


def test_entities_streams_and_consumers(views: Views) -> None:
    client = views.env.client
    client.signal_entity(tl.EntityId("counter", "k<1>"), "add", 5)
    wait_until(
        lambda: client.read_entity_state(tl.EntityId("counter", "k<1>")).entity_exists, "state"
    )
    listing = views.web.get("/dashboard/entities", params={"name": "count"})
    assert "k&lt;1&gt;" in listing.text and ">5<" in listing.text
    entity = views.web.get("/dashboard/entities/" + "%40counter%40k%3C1%3E")
    assert entity.status_code == 200 and 'id="entity-state">5<' in entity.text
    assert views.web.get("/dashboard/entities/nope").status_code == 404
    client.signal_entity(tl.EntityId("counter", "a/b"), "add", 2)  # a key with a slash
    wait_until(lambda: client.read_entity_state(tl.EntityId("counter", "a/b")).entity_exists, "b")
    slashed = views.web.get("/dashboard/entities/%40counter%40a%2Fb")
    assert slashed.status_code == 200 and 'id="entity-state">2<' in slashed.text
    assert views.web.get("/dashboard/entities", params={"name": "a@b"}).status_code == 400

    stream = f"order-{uuid.uuid4().hex[:6]}"
    client.events.append(stream, [tl.NewEvent("OrderPlaced", {"n": i}) for i in range(3)])
    streams = views.web.get("/dashboard/streams")
    assert stream in streams.text
    opened = views.web.get("/dashboard/streams", params={"id": stream})
    assert opened.status_code == 200 and "OrderPlaced" in opened.text
    assert '{"n": 2}' in opened.text.replace("&#34;", '"')
    last = client.events.stream_version(stream)
    later = views.web.get(f"/dashboard/streams/{stream}", params={"from": str(last)})
    assert later.text.count("OrderPlaced") == 1
    bad = views.web.get(f"/dashboard/streams/{stream}", params={"from": "-1"})
    assert bad.status_code == 400

    views.env.wait_for_consumers()
    consumers = views.web.get("/dashboard/consumers")
    assert consumers.status_code == 200
    assert re.search(r'data-consumer="projection:totals">.*?data-lag><b>0<', consumers.text, re.S)


def test_keys_are_admin_only_and_shown_once(views: Views) -> None:
    created = views.post("/dashboard/keys", "/dashboard/keys", role="reader", name="ro <x>")
    assert created.status_code == 201, created.text
    key = re.search(r'id="new-key-value">(tlk_[A-Za-z0-9_-]+)<', created.text)
    assert key and "ro &lt;x&gt;" in created.text
    listing = views.web.get("/dashboard/keys")
    assert "ro &lt;x&gt;" in listing.text and key.group(1) not in listing.text
    sign_in(views.web, key.group(1))
    refused = views.web.get("/dashboard/keys")
    assert refused.status_code == 403
    assert key.group(1) not in refused.text
    forged = views.web.post(
        "/dashboard/keys", data={"csrf": views.csrf("/dashboard/schedules"), "role": "admin"}
    )
    assert forged.status_code == 403
    sign_in(views.web, views.admin_key)
    row = re.search(
        r'<tr data-id="([0-9a-f]+)"><td><code>[0-9a-f]+</code></td><td>ro &lt;x&gt;',
        views.web.get("/dashboard/keys").text,
    )
    assert row
    done = views.post(f"/dashboard/keys/{row.group(1)}/revoke", "/dashboard/keys")
    assert f"Done: revoked {row.group(1)}" in done.text
    form = views.web.get("/dashboard/signin")
    token = SIGNED.search(form.text).group(1)  # type: ignore[union-attr]
    again = views.web.post("/dashboard/signin", data={"csrf": token, "key": key.group(1)})
    assert again.status_code == 401
