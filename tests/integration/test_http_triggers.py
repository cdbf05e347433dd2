"""Schedules and queues over HTTP, and restart through the client."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx

import taskloom as tl

BASE = "/runtime/webhooks/durabletask"


def make_app() -> tuple[tl.App, list[Any]]:
    app = tl.App("httptriggers")
    seen: list[Any] = []

    @app.schedule(every=timedelta(hours=6))
    def report(client: tl.Client, tick: Any) -> None:
        seen.append(("tick", tick))

    @app.queue_trigger("inbox")
    def on_message(message: Any, client: tl.Client) -> None:
        seen.append(("message", message))

    @app.orchestrator
    def echo(ctx: tl.OrchestrationContext, value: Any) -> Any:
        return value

    return app, seen


def wait_for(predicate: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_schedules_and_queues_over_http() -> None:
    app, seen = make_app()
    with tl.testing.TestEnv(app, http=True) as env, httpx.Client(base_url=env.base_url) as http:
        listed = http.get(f"{BASE}/schedules")
        assert listed.status_code == 200
        assert [s["name"] for s in listed.json()] == ["report"]
        assert listed.json()[0]["paused"] is False

        assert http.post(f"{BASE}/schedules/report/pause").status_code == 202
        assert http.get(f"{BASE}/schedules").json()[0]["paused"] is True
        resumed = http.post(f"{BASE}/schedules/report/resume")
        assert resumed.status_code == 202 and "nextTick" in resumed.json()
        assert http.post(f"{BASE}/schedules/report/trigger").status_code == 202
        wait_for(lambda: any(kind == "tick" for kind, _ in seen))

        missing = http.post(f"{BASE}/schedules/nope/pause")
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
        assert http.post(f"{BASE}/schedules/report/explode").status_code == 400

        delayed = http.post(f"{BASE}/queues/later/messages?delaySeconds=60", json={"n": 2})
        assert delayed.status_code == 202
        peeked = http.get(f"{BASE}/queues/later/messages").json()
        assert [m["body"] for m in peeked] == [{"n": 2}]
        assert peeked[0]["dequeueCount"] == 0

        sent = http.post(f"{BASE}/queues/inbox/messages", json={"n": 1})
        assert sent.status_code == 202
        wait_for(lambda: ("message", {"n": 1}) in seen)
        bad = http.post(
            f"{BASE}/queues/inbox/messages",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 400


def test_restart_reuses_input_under_a_new_or_the_same_id() -> None:
    app, _ = make_app()
    with tl.testing.TestEnv(app) as env:
        first = env.client.start_new("echo", {"x": 1}, instance_id="e-1")
        env.client.wait_for_completion(first, timeout=20)
        again = env.client.restart(first)
        assert again != first
        assert env.client.wait_for_completion(again, timeout=20).output == {"x": 1}
        same = env.client.restart(first, new_instance_id=False)
        assert same == first
        assert env.client.wait_for_completion(same, timeout=20).output == {"x": 1}


def test_schedule_and_queue_routes_check_roles() -> None:
    from taskloom import manage

    app, _ = make_app()
    with tl.testing.TestEnv(app, http=True) as env, httpx.Client(base_url=env.base_url) as http:
        keys = {
            role: env.run(manage.create_key(env.store, role, None, env.now())).key
            for role in ("reader", "contributor")
        }
        routes = [
            ("GET", f"{BASE}/schedules", "read"),
            ("GET", f"{BASE}/queues/inbox/messages", "read"),
            ("POST", f"{BASE}/schedules/report/pause", "write"),
            ("POST", f"{BASE}/schedules/report/resume", "write"),
            ("POST", f"{BASE}/queues/elsewhere/messages", "write"),
        ]
        for method, path, needs in routes:
            assert http.request(method, path).status_code == 401, path
            as_reader = http.request(method, path, headers=_bearer(keys["reader"]))
            assert as_reader.status_code == (403 if needs == "write" else 200), path
            as_contributor = http.request(method, path, headers=_bearer(keys["contributor"]))
            assert as_contributor.status_code in (200, 202), (path, as_contributor.text)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_keyless_loopback_host_refuses_foreign_pages_and_rebound_names() -> None:
    app, _ = make_app()
    with tl.testing.TestEnv(app, http=True) as env, httpx.Client(base_url=env.base_url) as http:
        start = f"{BASE}/orchestrators/echo"
        assert http.post(start, json=1).status_code == 202
        assert http.post(start, json=1, headers={"Origin": "http://localhost:3000"}).is_success
        cross_site = http.post(start, json=1, headers={"Origin": "https://evil.example"})
        assert cross_site.status_code == 403 and "cross-site" in cross_site.json()["detail"]
        rebound = http.post(start, json=1, headers={"Host": "evil.example"})
        assert rebound.status_code == 403 and "localhost" in rebound.json()["detail"]
        # With a key, callers are known and the names they use do not matter.
        from taskloom import manage

        key = env.run(manage.create_key(env.store, "contributor", None, env.now())).key
        keyed = http.post(
            start, json=1, headers={"Host": "tasks.example", "Authorization": f"Bearer {key}"}
        )
        assert keyed.status_code == 202
