"""The dashboard of a real ``taskloom serve`` over HTTP, on SQLite and PostgreSQL:
sign-in, roles and CSRF, the instances view's filters and keyset pages, the detail page,
the why-panel, the history and payload JSON, actions, and escaping."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from backends import PG_URL, require_postgres
from dashboard_server import APP, DashServer, csrf_of, running, wait_until
from http_server import free_port

from taskloom.client import Client
from taskloom.models import Status

HOSTILE = "<script>alert('x')</script>\"'&"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashServer]:
    tmp = tmp_path_factory.mktemp("dash")
    if request.param == "postgres":
        require_postgres()
        url = PG_URL
    else:
        url = f"sqlite:///{tmp / 'dash.db'}"
    with running(tmp, url, roles=("reader", "contributor", "admin")) as found:
        yield found


def _status(server: DashServer, iid: str) -> Status | None:
    with server.client() as client:
        state = client.get_status(iid)
    return None if state is None else state.runtime_status


def test_pages_need_a_key_and_a_wrong_key_is_refused(server: DashServer) -> None:
    http = server.browser()
    reply = http.get("/dashboard/")
    assert reply.status_code == 303 and reply.headers["location"].endswith("/dashboard/signin")
    page = http.get("/dashboard/signin")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    wrong = http.post("/dashboard/signin", data={"csrf": csrf_of(page.text), "key": "tlk_nope"})
    assert wrong.status_code == 401 and "Unknown or revoked" in wrong.text
    stale = http.post("/dashboard/signin", data={"csrf": "forged", "key": server.keys["reader"]})
    assert stale.status_code == 403
    # The key travels in the form body and an HttpOnly, SameSite=Strict cookie, never a URL.
    good = http.post(
        "/dashboard/signin", data={"csrf": csrf_of(page.text), "key": server.keys["reader"]}
    )
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert server.keys["reader"] not in server.log()
    assert http.get("/dashboard/").status_code == 200
    # Plain http to a name other than loopback: the Secure cookie would not be kept.
    other = server.browser()
    form = other.get("/dashboard/signin")
    remote = other.post(
        "/dashboard/signin",
        data={"csrf": csrf_of(form.text), "key": server.keys["reader"]},
        headers={"host": "dash.example"},
    )
    assert remote.status_code == 400 and "over https" in remote.text


def test_filters_and_keyset_pages(server: DashServer) -> None:
    with server.client() as client:
        ids = [client.start_new("chain", i, f"page-{i:03d}") for i in range(60)]
        client.start_new("approval", None, "filter-approval", version="2.0")
        for iid in ids:
            client.wait_for_completion(iid, 60)
    http = server.browser("reader")
    filters = {"prefix": "page-", "status": "Completed", "name": "chain"}
    newest = http.get("/dashboard/", params=filters)
    assert re.findall(r'data-id="(page-\d+)"', newest.text)[:2] == ["page-059", "page-058"]
    first = http.get("/dashboard/", params={**filters, "order": "oldest"})
    assert first.status_code == 200
    shown = re.findall(r'data-id="(page-\d+)"', first.text)
    assert shown == [f"page-{i:03d}" for i in range(50)]
    link = re.search(r'href="\?([^"]+)" rel="next"', first.text)
    assert link is not None
    second = http.get("/dashboard/?" + link.group(1).replace("&amp;", "&"))
    assert re.findall(r'data-id="(page-\d+)"', second.text) == [
        f"page-{i:03d}" for i in range(50, 60)
    ]
    assert 'rel="next"' not in second.text
    by_version = http.get("/dashboard/", params={"version": "2.0"})
    assert re.findall(r'data-id="([^"]+)"', by_version.text) == ["filter-approval"]
    by_name = http.get("/dashboard/", params={"name": "approval", "prefix": "filter-"})
    assert "filter-approval" in by_name.text and "page-001" not in by_name.text
    children = http.get("/dashboard/", params={"parent": "page-007"})
    assert re.findall(r'data-id="([^"]+)"', children.text) == ["page-007:0001"]
    bad = http.get("/dashboard/", params={"status": "Sleeping"})
    assert bad.status_code == 400 and "unknown runtime status" in bad.text
    bad_time = http.get("/dashboard/", params={"from": "yesterday"})
    assert bad_time.status_code == 400 and "not a time" in bad_time.text
    bad_token = http.get("/dashboard/", params={"after": "garbage"})
    assert bad_token.status_code == 400


def test_retrying_and_waiting_filters_and_the_why_panel(server: DashServer) -> None:
    with server.client() as client:
        client.start_new("retrying", None, "why-retrying")
        client.start_new("approval", None, "why-approval")
        client.start_new("chain", 1, "why-done")
        client.wait_for_completion("why-done", 60)
    http = server.browser("contributor")

    def third_attempt_pending() -> bool:  # after the 50 ms retry, a 5000 s one
        page = http.get("/dashboard/instances/why-retrying")
        return "attempt 3 is the next retry" in page.text

    wait_until(third_attempt_pending, "why-retrying to wait for its third attempt")
    retrying = http.get("/dashboard/", params={"retrying": "1", "prefix": "why-"})
    assert re.findall(r'data-id="(why-[a-z]+)"', retrying.text) == ["why-retrying"]
    waiting = http.get("/dashboard/", params={"waiting": "approve", "prefix": "why-"})
    assert re.findall(r'data-id="(why-[a-z]+)"', waiting.text) == ["why-approval"]

    detail = http.get("/dashboard/instances/why-retrying")
    assert "Why is this not finished?" in detail.text
    assert "2 failed attempt(s); attempt 3 is the next retry at" in detail.text
    assert detail.text.count("disk on fire") >= 2  # both failed attempts, with their errors
    approval = http.get("/dashboard/instances/why-approval")
    assert "<code>approve</code>" in approval.text
    # The worker registry: the host's worker serves the orchestration.
    assert re.search(r"orchestration <code>approval</code>:\s*served by \S+ pid \d+", approval.text)
    assert "/runtime/webhooks/durabletask/links/" in approval.text  # a signed link
    assert "Timer" in approval.text and "waiting for approval" in approval.text
    with server.client() as client:
        client.enqueue("approvals", {"instance": "why-approval", "bad": True})

    def poisoned() -> bool:
        page = http.get("/dashboard/instances/why-approval")
        return "Poisoned queue messages" in page.text

    wait_until(poisoned, "the queue message to be poisoned and shown")
    page = http.get("/dashboard/instances/why-approval")
    assert "the message is marked bad" in page.text and "approvals-poison" in page.text
    with server.client() as client:
        client.start_new("approval", None, "why-versioned", version="2.0")
    versioned = http.get("/dashboard/instances/why-versioned")
    assert "The instance is version 2.0; the live workers serving it run version(s) none" in (
        versioned.text
    )
    done = http.get("/dashboard/instances/why-done")
    assert "Why is this not finished?" not in done.text
    assert 'href="/dashboard/instances/' in done.text  # the child, as a link


def test_history_pages_and_payloads_as_json(server: DashServer) -> None:
    with server.client() as client:
        client.start_new("fan_out", 300, "json-fan")
        client.wait_for_completion("json-fan", 120)
        total = len(client.get_history("json-fan"))
    http = server.browser("reader")
    page = http.get("/dashboard/api/history", params={"id": "json-fan", "from": 0, "limit": 100})
    body = page.json()
    assert body["total"] == total and len(body["events"]) == 100
    assert body["events"][0]["kind"] == "OrchestratorStarted"
    tail = http.get("/dashboard/api/history", params={"id": "json-fan", "from": total - 5})
    assert len(tail.json()["events"]) == 5
    assert tail.json()["events"][-1]["kind"] == "ExecutionCompleted"
    seq = next(i for i, e in enumerate(body["events"]) if e["kind"] == "TaskScheduled")
    payload = http.get("/dashboard/api/payload", params={"id": "json-fan", "seq": seq}).json()
    assert payload["kind"] == "TaskScheduled" and "input" in payload["text"]
    output = http.get("/dashboard/api/payload", params={"id": "json-fan", "what": "output"})
    assert output.json()["text"] == str(sum(2 * i for i in range(300)))
    assert http.get("/dashboard/api/history", params={"id": "nobody"}).status_code == 404
    bad = http.get("/dashboard/api/history", params={"id": "json-fan", "limit": "lots"})
    assert bad.status_code == 400 and "whole number" in bad.json()["detail"]


def test_a_reader_sees_no_actions_and_a_forged_post_is_refused(server: DashServer) -> None:
    with server.client() as client:
        client.start_new("approval", None, "rbac-target")
    reader = server.browser("reader")
    page = reader.get("/dashboard/instances/rbac-target")
    assert page.status_code == 200
    assert "/dashboard/actions/" not in page.text
    assert "/links/" not in page.text  # signed links act: not for readers
    forged = reader.post(
        "/dashboard/actions/terminate", data={"csrf": csrf_of(page.text), "id": "rbac-target"}
    )
    assert forged.status_code == 403 and "needs &#39;write&#39;" in forged.text
    contributor = server.browser("contributor")
    page = contributor.get("/dashboard/instances/rbac-target")
    no_token = contributor.post("/dashboard/actions/terminate", data={"id": "rbac-target"})
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    # A token is bound to its session: the reader's does not work for the contributor.
    wrong = contributor.post(
        "/dashboard/actions/terminate",
        data={"csrf": csrf_of(reader.get("/dashboard/").text), "id": "rbac-target"},
    )
    assert wrong.status_code == 403
    assert _status(server, "rbac-target") is not Status.TERMINATED


def test_actions_through_the_client(server: DashServer) -> None:
    http = server.browser("contributor")
    token = csrf_of(http.get("/dashboard/").text)
    started = http.post(
        "/dashboard/actions/start",
        data={"csrf": token, "name": "approval", "input": "", "instance_id": "act-1"},
    )
    assert started.status_code == 303 and started.headers["location"].endswith("/act-1")
    bad = http.post(
        "/dashboard/actions/raise-event",
        data={"csrf": token, "id": "act-1", "event": "Approve", "data": "{yes"},
    )
    assert bad.status_code == 400 and "not valid JSON" in bad.text
    http.post("/dashboard/actions/suspend", data={"csrf": token, "id": "act-1"})
    wait_until(lambda: _status(server, "act-1") is Status.SUSPENDED, "act-1 suspended")
    http.post("/dashboard/actions/resume", data={"csrf": token, "id": "act-1"})
    wait_until(lambda: _status(server, "act-1") is Status.RUNNING, "act-1 resumed")
    raised = http.post(
        "/dashboard/actions/raise-event",
        data={"csrf": token, "id": "act-1", "event": "Approve", "data": "true"},
    )
    assert raised.status_code == 303
    wait_until(lambda: _status(server, "act-1") is Status.COMPLETED, "act-1 completed")
    restarted = http.post(
        "/dashboard/actions/restart", data={"csrf": token, "id": "act-1", "same_id": "1"}
    )
    assert restarted.status_code == 303
    wait_until(lambda: _status(server, "act-1") is Status.RUNNING, "act-1 running again")
    http.post("/dashboard/actions/terminate", data={"csrf": token, "id": "act-1", "reason": "x"})
    wait_until(lambda: _status(server, "act-1") is Status.TERMINATED, "act-1 terminated")
    early = http.post("/dashboard/actions/rewind", data={"csrf": token, "id": "nobody"})
    assert early.status_code == 404
    purged = http.post("/dashboard/actions/purge", data={"csrf": token, "id": "act-1"})
    assert purged.status_code == 303
    assert _status(server, "act-1") is None


def test_hostile_names_and_payloads_are_inert(server: DashServer) -> None:
    with server.client() as client:
        client.start_new("approval", {"html": HOSTILE}, HOSTILE)
    http = server.browser("admin")
    listing = http.get("/dashboard/", params={"prefix": "<script>"})
    assert "<script>alert" not in listing.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;&#39;&amp;" in listing.text
    detail = http.get("/dashboard/instances/" + httpx.URL(path=HOSTILE).raw_path.decode())
    assert detail.status_code == 200
    assert "<script>alert" not in detail.text
    assert detail.text.count("&lt;script&gt;") >= 2


def test_an_open_host_admits_local_callers_as_admin(tmp_path: Path) -> None:
    with running(tmp_path, f"sqlite:///{tmp_path / 'open.db'}") as server:
        http = server.browser()
        page = http.get("/dashboard/")
        assert page.status_code == 200 and "admin" in page.text
        foreign = http.get("/dashboard/", headers={"host": "evil.example"})
        assert foreign.status_code == 403
        token = csrf_of(page.text)
        cross = http.post(
            "/dashboard/actions/start",
            data={"csrf": token, "name": "chain"},
            headers={"origin": "http://evil.example"},
        )
        assert cross.status_code == 403


def test_live_updates_are_deltas_from_change_notifications(server: DashServer) -> None:
    with server.client() as client:
        client.start_new("approval", None, "live-1")
        client.start_new("approval", None, "live-2")
        client.wait_for_start("live-1", 30)
    http = server.browser("reader")
    with http.stream("GET", "/dashboard/events", params={"id": ["live-1", "live-2"]}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        events: list[list[dict[str, object]]] = []

        def next_event() -> list[dict[str, object]]:
            data = None
            for line in lines:  # bounded by the client's 20 s read timeout
                if line.startswith("data: "):
                    data = json.loads(line[len("data: ") :])
                elif line == "" and data is not None:
                    return data  # type: ignore[no-any-return]
            raise AssertionError("the stream ended")

        events.append(next_event())  # the snapshot
        assert {e["id"] for e in events[0]} == {"live-1", "live-2"}
        with server.client() as client:
            client.raise_event("live-1", "Approve", True)
        while True:
            delta = next_event()
            if any(e["status"] == "Completed" for e in delta):
                break
        assert [e["id"] for e in delta] == ["live-1"]  # only what changed
    # The first page of a filter hears once of a newer matching instance.
    params = {"id": "live-2", "top": "live-2", "prefix": "live-", "name": "approval"}
    with http.stream("GET", "/dashboard/events", params=params) as stream:
        lines = stream.iter_lines()
        with server.client() as client:
            client.start_new("chain", 1, "live-chain")  # another name: not newer here
            client.wait_for_completion("live-chain", 30)
            client.start_new("approval", None, "live-3")
        for line in lines:  # bounded by the client's 20 s read timeout
            if line.startswith("event: newer"):
                assert next(lines) == 'data: "live-3"'
                break
    too_many = http.get("/dashboard/events", params={"id": [str(i) for i in range(201)]})
    assert too_many.status_code == 400


def test_taskloom_dashboard_runs_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'alone.db'}"
    with Client(url, hub="alone") as client:
        client.start_new("approval", None, "alone-1")  # nobody runs it: stays Pending
    port = free_port()
    log_path = tmp_path / "dashboard.log"
    command = [sys.executable, "-m", "taskloom", "dashboard", "--store", url, "--hub", "alone",
               "--port", str(port)]  # fmt: skip
    with log_path.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:

        def answering() -> bool:
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{base}/dashboard/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answering, "taskloom dashboard to answer")
        http = httpx.Client(base_url=base, timeout=20)
        assert 'data-id="alone-1"' in http.get("/dashboard/").text
        detail = http.get("/dashboard/instances/alone-1")
        assert "Unknown: the dashboard needs the app" in detail.text
        assert "no live worker serves it" in detail.text  # the registry is empty
        waiting = http.get("/dashboard/", params={"waiting": "approve"})
        assert waiting.status_code == 400 and "taskloom serve" in waiting.text
        with http.stream("GET", "/dashboard/events", params={"id": "alone-1"}) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"
            # A worker in another process runs the instance: its commits reach this
            # dashboard's stream through the store's cross-process wake-ups.
            worker_command = [sys.executable, "-m", "taskloom", "serve", APP, "--store", url,
                              "--no-http", "--poll-interval", "30"]  # fmt: skip
            env = {**os.environ, "DASH_HUB": "alone"}
            with (tmp_path / "worker.log").open("wb") as out:
                worker = subprocess.Popen(
                    worker_command, stdout=out, stderr=subprocess.STDOUT, env=env
                )
            try:
                with Client(url, hub="alone") as client:
                    client.wait_for_start("alone-1", 30)
                    client.raise_event("alone-1", "Approve", True)
                for line in lines:  # bounded by the client's 20 s read timeout
                    if '"Completed"' in line:
                        break
            finally:
                worker.terminate()
                worker.wait(20)
            # An open event stream does not hold the shutdown.
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_revoked_key_is_signed_out(server: DashServer) -> None:
    def cli(*args: str) -> str:
        command = [sys.executable, "-m", "taskloom", "keys", *args,
                   "--store", server.store_url, "--hub", server.hub]  # fmt: skip
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    key = cli("create", "--role", "reader", "--name", "short-lived").strip()
    http = httpx.Client(base_url=server.base_url, timeout=20)
    form = http.get("/dashboard/signin")
    assert (
        http.post("/dashboard/signin", data={"csrf": csrf_of(form.text), "key": key}).status_code
        == 303
    )
    assert http.get("/dashboard/").status_code == 200
    [record] = [r for r in map(json.loads, cli("list").splitlines()) if r["name"] == "short-lived"]
    cli("revoke", record["id"])

    def signed_out() -> bool:  # the key cache keeps answers for 2 s
        reply = http.get("/dashboard/")
        return reply.status_code == 303 and reply.headers["location"].endswith("/signin")

    wait_until(signed_out, "the revoked key to stop working")


def test_static_files_and_headers(server: DashServer) -> None:
    http = server.browser("reader")
    script = http.get("/dashboard/static/dashboard.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["x-content-type-options"] == "nosniff"
    assert http.get("/dashboard/static/../auth.py").status_code == 404
    assert http.get("/dashboard/static/nope.js").status_code == 404
    home = http.get("/dashboard")
    assert home.status_code == 307 and home.headers["location"] == "/dashboard/"
    page = http.get("/dashboard/")
    assert "<script>" not in page.text and " style=" not in page.text  # nothing inline
    for name in ("x-frame-options", "referrer-policy", "content-security-policy"):
        assert name in page.headers
    history = http.get("/dashboard/api/history", params={"id": "nobody"})
    assert history.headers["content-security-policy"].startswith("default-src 'none'")


def test_taskloom_dashboard_alone_with_the_app_replays(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'alone-app.db'}"
    with Client(url, hub="withapp") as client:
        client.start_new("approval", None, "pending-1")
    port = free_port()
    command = [sys.executable, "-m", "taskloom", "dashboard", "--store", url, "--app", APP,
               "--port", str(port)]  # fmt: skip
    env = {**os.environ, "DASH_HUB": "withapp"}  # the app's name is the hub
    with (tmp_path / "dashboard.log").open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:

        def answering() -> bool:
            assert process.poll() is None, (tmp_path / "dashboard.log").read_text()
            try:
                return httpx.get(f"{base}/dashboard/", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answering, "taskloom dashboard --app to answer")
        # Pending: nothing ran yet, so the replay shows no wait; but the filter works.
        waiting = httpx.get(f"{base}/dashboard/", params={"waiting": "approve"}, timeout=20)
        assert waiting.status_code == 200
        detail = httpx.get(f"{base}/dashboard/instances/pending-1", timeout=20)
        assert "Unknown: the dashboard needs the app" not in detail.text
    finally:
        process.terminate()
        process.wait(20)
