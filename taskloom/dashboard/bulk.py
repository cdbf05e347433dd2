"""The bulk actions page: an action on every instance a filter matches, dry run first.

``GET /dashboard/bulk`` takes the instances view's filters (status, name, id prefix,
created range, version) and an action; with ``dry=1`` it shows how many instances the
action would touch and the first of them, and (for roles that may write) a confirm form.
``POST /dashboard/bulk`` checks the CSRF token and the role, and starts the durable job
(:mod:`taskloom.dashboard.bulk_job`) with the signed-in key's id, name and role as its
audit record; the browser is sent to the job's page in the jobs view.

The filters "retrying" and "waiting on event X" are read from histories a bounded number
at a time, so they cannot select a whole hub: a bulk page given one says so (400).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from taskloom.dashboard import auth, bulk_job, render
from taskloom.dashboard.instances import Filters, parse_filters
from taskloom.models import Status

if TYPE_CHECKING:
    from taskloom.client import AsyncClient
    from taskloom.dashboard.app import Views

SAMPLE = 20
DEFAULT_RATE = 50.0
DEFAULT_PAGE = 50
_MAX_REASON = 500

#: What each action does, shown beside the choice.
HELP = {
    "terminate": "stop Pending, Running and Suspended instances (and their sub-orchestrations)",
    "suspend": "pause Pending and Running instances until resumed",
    "resume": "resume Suspended instances",
    "restart": "start finished instances again with their input, under new ids",
    "purge": "delete finished instances and their histories",
    "rewind": "re-run Failed instances from their failed tasks",
}


def register(views: Views) -> None:
    views.router.add_api_route("/bulk", bulk_page, methods=["GET"])
    views.router.add_api_route("/bulk", bulk_start, methods=["POST"])
    views.nav("Bulk", "/bulk")


def _filter_of(filters: Filters) -> bulk_job.BulkFilter:
    if filters.retrying or filters.waiting:
        raise HTTPException(
            400,
            "bulk actions take the stored filters only (status, name, id prefix, created "
            "range, version); clear 'retrying' and 'waiting on event', which are read from "
            "histories a page at a time",
        )
    return bulk_job.BulkFilter(
        statuses=frozenset(filters.statuses) or None,
        name=filters.name or None,
        instance_id_prefix=filters.prefix or None,
        created_from=filters.created_from,
        created_to=filters.created_to,
        version=filters.version or None,
    )


def _number(text: str, default: float, what: str) -> float:
    if not text.strip():
        return default
    try:
        return float(text)
    except ValueError:
        raise HTTPException(400, f"{what} {text!r} is not a number") from None


def _request(
    values: dict[str, str],
    flt: bulk_job.BulkFilter,
    session: auth.Session | None,
    now: datetime,
) -> bulk_job.BulkRequest:
    """A job request from the page's fields; 400 saying which field is wrong."""
    action = values.get("action", "").strip() or "terminate"
    reason = values.get("reason", "").strip() or None
    if reason is not None and len(reason) > _MAX_REASON:
        raise HTTPException(400, f"the reason is too long (at most {_MAX_REASON} characters)")
    rate = _number(values.get("rate", ""), DEFAULT_RATE, "rate")
    size = _number(values.get("page_size", ""), DEFAULT_PAGE, "page size")
    if size != int(size):
        raise HTTPException(400, f"page size {size:g} must be a whole number")
    principal = session.principal if session is not None else None
    try:
        return bulk_job.BulkRequest(
            action=action,
            filter=flt,
            requested_at=now,
            by_key_id=principal.key_id if principal else None,
            by_name=principal.name if principal else None,
            by_role=principal.role if principal else "admin",
            reason=reason,
            rate=rate,
            page_size=int(size),
        )
    except bulk_job.BulkRequestError as exc:
        raise HTTPException(400, str(exc)) from exc


def _client(request: Request) -> AsyncClient:
    client: AsyncClient = request.app.state.taskloom_client
    return client


@render.html_errors
async def bulk_page(request: Request) -> Response:
    session = await auth.require(request)
    filters = parse_filters(request)
    values = {k: request.query_params.get(k, "") for k in ("action", "reason", "rate", "page_size")}
    dry: bulk_job.DryRun | None = None
    job_request = _request(values, _filter_of(filters), session, _client(request).clock.now())
    if request.query_params.get("dry"):
        dry = await bulk_job.dry_run(_client(request).store, job_request, sample=SAMPLE)
    return render.page(
        request,
        "views_bulk.html",
        filters=filters,
        statuses=[s for s in Status if s is not Status.CONTINUED_AS_NEW],
        job=job_request,
        values=values,
        actions=bulk_job.ACTIONS,
        help=HELP,
        eligible={a: ", ".join(sorted(s.value for s in v)) for a, v in bulk_job.ELIGIBLE.items()},
        dry=dry,
        hidden=_hidden(filters, job_request),
        can_write=session.can_write,
        back=render.query_string(filters.params()),
    )


def _hidden(filters: Filters, job: bulk_job.BulkRequest) -> dict[str, Any]:
    """The confirm form's fields: the filters (statuses comma-separated, one field) and
    the job's settings, as shown by the dry run."""
    params = filters.params()
    return {
        "statuses": ",".join(params["status"]),
        "name": params["name"],
        "prefix": params["prefix"],
        "from": params["from"],
        "to": params["to"],
        "version": params["version"],
        "action": job.action,
        "reason": job.reason or "",
        "rate": f"{job.rate:g}",
        "page_size": str(job.page_size),
    }


def _form_filter(form: dict[str, str]) -> bulk_job.BulkFilter:
    statuses = [s for s in form.get("statuses", "").split(",") if s.strip()]
    data = {
        "statuses": statuses or None,
        "name": form.get("name", "").strip() or None,
        "instance_id_prefix": form.get("prefix", "").strip() or None,
        "created_from": form.get("from", "").strip() or None,
        "created_to": form.get("to", "").strip() or None,
        "version": form.get("version", "").strip() or None,
    }
    try:
        return bulk_job.BulkFilter.parse(data)
    except bulk_job.BulkRequestError as exc:
        raise HTTPException(400, str(exc)) from exc


@render.html_errors
async def bulk_start(request: Request) -> Response:
    session = await auth.require(request, "write")
    form = await render.form_of(request, limit=20_000)
    auth.check_csrf(request, session, form)
    job_request = _request(form, _form_filter(form), session, _client(request).clock.now())
    job = await bulk_job.start_job(_client(request), job_request)
    target = render.base_path(request) + "/jobs/" + quote(job, safe="")
    return render.secured(RedirectResponse(target, status_code=303))
