"""The jobs view: the bulk jobs of the hub, which are also their audit record.

A job is an instance of the built-in orchestration ``taskloom.bulk``
(:mod:`taskloom.dashboard.bulk_job`); nothing else is stored. Its input says who asked
(key id, name, role), when, for which action, filter, reason and rate; its custom status
is the progress; its output the totals; its history lists every page's instance ids
under ``applied``, ``already`` or ``skipped``. The list pages with the store's keyset
token, newest first, like the instances view. ``POST /dashboard/jobs/{id}/stop``
terminates a running job (pages already applied stay applied).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from taskloom.dashboard import auth, bulk_job, render
from taskloom.models import Status
from taskloom.storage.base import InstanceQuery

if TYPE_CHECKING:
    from taskloom.client import AsyncClient
    from taskloom.dashboard.app import Views
    from taskloom.storage.base import InstanceRecord

PAGE_SIZE = 50
#: The per-page audit shows at most this many ids per outcome on the page (all are kept).
SHOWN_IDS = 2_000


def register(views: Views) -> None:
    views.router.add_api_route("/jobs", jobs_page, methods=["GET"])
    views.router.add_api_route("/jobs/{job_id:path}/stop", stop_job, methods=["POST"])
    views.router.add_api_route("/jobs/{job_id:path}", job_page, methods=["GET"])
    views.nav("Jobs", "/jobs")


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Job:
    """A job as the pages show it, decoded from its instance row."""

    record: InstanceRecord
    request: dict[str, Any]
    progress: dict[str, Any]
    output: dict[str, Any]

    @classmethod
    def of(cls, record: InstanceRecord) -> Job:
        return cls(
            record,
            _loads(record.input) or {},
            _loads(record.custom_status) or {},
            _loads(record.output) if record.status is Status.COMPLETED else {},
        )

    @property
    def by(self) -> str:
        by = self.request.get("by") or {}
        name = by.get("name") or "(open host)"
        key = by.get("key_id")
        return f"{name} ({by.get('role', '?')}{', key ' + key if key else ''})"

    @property
    def filter_text(self) -> str:
        flt = self.request.get("filter") or {}
        parts = [f"{k}={v}" for k, v in flt.items() if v not in (None, "", [])]
        return ", ".join(parts) or "every instance"

    def figure(self, name: str) -> int:
        source = self.output or self.progress
        value = source.get(name, 0) if isinstance(source, dict) else 0
        return int(value) if isinstance(value, int) else 0


def _client(request: Request) -> AsyncClient:
    client: AsyncClient = request.app.state.taskloom_client
    return client


@render.html_errors
async def jobs_page(request: Request) -> Response:
    session = await auth.require(request)
    after = request.query_params.get("after") or None
    store = _client(request).store
    try:
        found = await store.query_instances(
            InstanceQuery(name=bulk_job.BULK, newest_first=True), PAGE_SIZE, after
        )
    except ValueError as exc:
        raise HTTPException(
            400, f"the page link is not valid ({exc}); go to the first page"
        ) from exc
    token = found.continuation_token
    return render.page(
        request,
        "views_jobs.html",
        jobs=[Job.of(r) for r in found.records],
        next_link=render.query_string({"after": token}) if token else None,
        first=after is not None,
        can_write=session.can_write,
    )


async def _job(request: Request) -> Job:
    job_id = request.path_params["job_id"]
    record = await _client(request).store.get_instance(job_id)
    if record is None or record.name != bulk_job.BULK:
        raise HTTPException(404, f"no bulk job {job_id!r} in this hub; the jobs page lists them")
    return Job.of(record)


@render.html_errors
async def job_page(request: Request) -> Response:
    session = await auth.require(request)
    job = await _job(request)
    client = _client(request)
    events = await client.store.get_history(job.record.instance_id)
    pages = bulk_job.pages_of(events, _loads)
    return render.page(
        request,
        "views_job.html",
        job=job,
        pages=pages,
        shown=SHOWN_IDS,
        running=not job.record.status.is_terminal,
        can_write=session.can_write,
    )


@render.html_errors
async def stop_job(request: Request) -> Response:
    session = await auth.require(request, "write")
    auth.check_csrf(request, session, await render.form_of(request, limit=10_000))
    job = await _job(request)
    who = session.principal.name or session.principal.key_id or "an open host's caller"
    await _client(request).terminate(job.record.instance_id, f"stopped by {who}")
    target = render.base_path(request) + "/jobs/" + quote(job.record.instance_id, safe="")
    return render.secured(RedirectResponse(target, status_code=303))
