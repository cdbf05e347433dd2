"""The bulk pages over HTTP (a real uvicorn socket, a real worker and store): the dry run
shows the count and a sample, the confirm form starts the job, the jobs view is the audit;
readers see but cannot act, forged posts are refused, bad fields get a 400 page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from envs import Env
from http_server import free_port

import taskloom as tl
from taskloom import manage
from taskloom.dashboard import app as dashboard_app
from taskloom.dashboard import bulk_job
from taskloom.storage.base import InstanceQuery

MINE = (
    "taskloom.dashboard.bulk",
    "taskloom.dashboard.views_jobs",
)


@dataclass
class Dash:
    base: str
    env: Env
    keys: dict[str, str]

    def browser(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=10, follow_redirects=False)

    async def signed_in(self, role: str) -> httpx.AsyncClient:
        web = self.browser()
        form = await web.get("/dashboard/signin")
        token = _csrf(form.text)
        done = await web.post("/dashboard/signin", data={"csrf": token, "key": self.keys[role]})
        assert done.status_code == 303, done.text
        return web


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, html
    return found.group(1)


@pytest.fixture
async def dash(env: Env, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Dash]:
    modules = tuple(dict.fromkeys((*dashboard_app.VIEW_MODULES, *MINE)))
    monkeypatch.setattr(dashboard_app, "VIEW_MODULES", modules)
    now = datetime.now(UTC)
    keys = {
        role: (await manage.create_key(env.store, role, f"{role}-bob", now)).key
        for role in ("reader", "contributor")
    }
    api = dashboard_app.standalone_app(env.worker.client, open_without_keys=False)
    port = free_port()
    config = uvicorn.Config(api, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await env.wait_until(lambda: _started(server), 10, "the dashboard server")
    try:
        yield Dash(f"http://127.0.0.1:{port}", env, keys)
    finally:
        server.should_exit = True
        await task


async def _started(server: uvicorn.Server) -> bool:
    return bool(server.started)


async def _waiters(env: Env, prefix: str, n: int) -> list[str]:
    ids = [
        await env.client.start_new("wait_event", instance_id=f"{prefix}{i:02d}") for i in range(n)
    ]
    for iid in ids:
        await env.wait_for_status(iid, tl.Status.RUNNING)
    return ids


async def test_dry_run_then_confirm_terminates_and_the_job_page_audits(dash: Dash) -> None:
    ids = await _waiters(dash.env, "webT-<b>", 7)
    web = await dash.signed_in("contributor")
    page = await web.get(
        "/dashboard/bulk",
        params={"dry": "1", "action": "terminate", "prefix": "webT-<b>", "rate": "500"},
    )
    assert page.status_code == 200, page.text
    assert 'id="dry-count">7<' in page.text
    assert "webT-&lt;b&gt;00" in page.text and "<b>00" not in page.text  # escaped
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', page.text))
    form = {k: v.replace("&lt;", "<").replace("&gt;", ">") for k, v in form.items()}
    started = await web.post("/dashboard/bulk", data=form)
    assert started.status_code == 303, started.text
    job_path = started.headers["location"]
    job_id = job_path.rsplit("/", 1)[1]
    state = await dash.env.client.wait_for_completion(job_id, timeout=30)
    assert state.output["applied"] == 7
    for iid in ids:
        await dash.env.wait_for_status(iid, tl.Status.TERMINATED)
    job_page = await web.get(job_path)
    assert job_page.status_code == 200
    assert 'id="job-applied">7<' in job_page.text
    assert "contributor-bob (contributor, key" in job_page.text
    listing = await web.get("/dashboard/jobs")
    assert job_id in listing.text
    await web.aclose()


async def test_readers_see_the_dry_run_but_cannot_start_or_stop(dash: Dash) -> None:
    await _waiters(dash.env, "webR-", 2)
    reader = await dash.signed_in("reader")
    page = await reader.get("/dashboard/bulk", params={"dry": "1", "prefix": "webR-"})
    assert page.status_code == 200
    assert 'id="dry-count">2<' in page.text
    assert 'id="bulk-confirm"' not in page.text
    forged = {"csrf": _csrf(page.text), "action": "terminate", "prefix": "webR-"}
    refused = await reader.post("/dashboard/bulk", data=forged)
    assert refused.status_code == 403
    jobs = await dash.env.store.query_instances(InstanceQuery(name=bulk_job.BULK), 10, None)
    assert jobs.records == []
    await reader.aclose()


async def test_bad_fields_and_forged_posts_get_clear_pages(dash: Dash) -> None:
    web = await dash.signed_in("contributor")
    bad = await web.get("/dashboard/bulk", params={"dry": "1", "action": "explode"})
    assert bad.status_code == 400 and "unknown bulk action" in bad.text
    bad = await web.get("/dashboard/bulk", params={"dry": "1", "rate": "fast"})
    assert bad.status_code == 400 and "rate &#39;fast&#39; is not a number" in bad.text
    bad = await web.get("/dashboard/bulk", params={"dry": "1", "retrying": "1"})
    assert bad.status_code == 400 and "stored filters only" in bad.text
    no_token = await web.post("/dashboard/bulk", data={"action": "terminate"})
    assert no_token.status_code == 403
    missing = await web.get("/dashboard/jobs/bulk-nope")
    assert missing.status_code == 404 and "no bulk job" in missing.text
    await web.aclose()


async def test_a_running_job_can_be_stopped_by_a_contributor_not_a_reader(dash: Dash) -> None:
    ids = await _waiters(dash.env, "webS-", 4)
    web = await dash.signed_in("contributor")
    # One instance per page and a 100 s wait between pages: the job is mid-way when stopped.
    params = {"dry": "1", "prefix": "webS-", "rate": "0.01", "page_size": "1"}
    page = await web.get("/dashboard/bulk", params=params)
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', page.text))
    job_path = (await web.post("/dashboard/bulk", data=form)).headers["location"]
    job_id = job_path.rsplit("/", 1)[1]
    await dash.env.wait_for_status(ids[0], tl.Status.TERMINATED)
    job_page = await web.get(job_path)
    assert 'id="job-stop"' in job_page.text
    reader = await dash.signed_in("reader")
    reader_page = await reader.get(job_path)
    assert 'id="job-stop"' not in reader_page.text
    refused = await reader.post(job_path + "/stop", data={"csrf": _csrf(reader_page.text)})
    assert refused.status_code == 403
    stopped = await web.post(job_path + "/stop", data={"csrf": _csrf(job_page.text)})
    assert stopped.status_code == 303
    state = await dash.env.client.wait_for_completion(job_id, timeout=30)
    assert state.runtime_status is tl.Status.TERMINATED
    assert "stopped by contributor-bob" in str(state.output)
    for iid in ids[1:]:
        status = await dash.env.client.get_status(iid)
        assert status is not None and status.runtime_status is tl.Status.RUNNING
    await web.aclose()
    await reader.aclose()
