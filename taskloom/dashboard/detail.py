"""The instance detail page and the JSON it fetches on demand: history pages and payloads.

The page itself renders the instance row, truncated previews of input, output and custom
status, the failure with its stack, parent and children, the why-panel
(:mod:`taskloom.dashboard.why`) and the timeline; the history is an empty scroll box
that ``dashboard.js`` fills with only the rows in view, fetching them
:data:`HISTORY_PAGE` at a time from ``/dashboard/api/history``. A full payload is fetched
only when asked for (``/dashboard/api/payload``). Histories are cached per process by
(instance, execution, length), so scrolling a 10,000-event history reads it once.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from taskloom import history as h
from taskloom.dashboard import analysis, auth, render, why
from taskloom.errors import InstanceNotFoundError
from taskloom.storage.base import InstanceQuery

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views
    from taskloom.storage.base import InstanceRecord, Store

HISTORY_PAGE = 200
PREVIEW = 2_000
_CACHE_SIZE = 16
_SUMMARY = 120


def register(views: Views) -> None:
    views.router.add_api_route("/instances/{instance_id:path}", detail_page, methods=["GET"])
    views.router.add_api_route("/api/history", history_json, methods=["GET"])
    views.router.add_api_route("/api/payload", payload_json, methods=["GET"])


def _store(request: Request) -> Store:
    store: Store = request.app.state.taskloom_client.store
    return store


async def _record(request: Request, instance_id: str) -> InstanceRecord:
    record = await _store(request).get_instance(instance_id)
    if record is None:
        raise InstanceNotFoundError(
            f"no instance {instance_id!r} in this hub (it may have been purged)"
        )
    return record


async def history_of(request: Request, record: InstanceRecord) -> list[h.HistoryEvent]:
    """The instance's history, from the per-process cache when its length is unchanged."""
    state = request.app.state
    cache: OrderedDict[tuple[str, str, int], list[h.HistoryEvent]] | None = getattr(
        state, "dashboard_histories", None
    )
    if cache is None:
        cache = state.dashboard_histories = OrderedDict()
    key = (record.instance_id, record.execution_id, record.history_len)
    found = cache.get(key)
    if found is None:
        found = await _store(request).get_history(record.instance_id)
        cache[key] = found
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return found


@render.html_errors
async def detail_page(request: Request) -> Response:
    session = await auth.require(request)
    record = await _record(request, request.path_params["instance_id"])
    events = await history_of(request, record)
    summary = await asyncio.to_thread(analysis.summarize, events)  # long histories: off the loop
    children = await _store(request).query_instances(
        InstanceQuery(parent_instance_id=record.instance_id), 100, None
    )
    now = datetime.now(UTC)
    origin = events[0].timestamp if events else record.created_at
    end = record.completed_at or now
    bars = analysis.timeline(summary, origin, end)
    span = max((b.end for b in bars), default=0.0) or 1.0
    trace_id, trace_url = trace_of(events)
    panel = None
    if not record.status.is_terminal:
        panel = await why.explain(request, session, record, events, summary, now)
    return render.page(
        request,
        "detail.html",
        record=record,
        children=children.records,
        more_children=children.continuation_token is not None,
        summary=summary,
        bars=bars,
        span=span,
        rows=max((b.row for b in bars), default=-1) + 1,
        total=len(events),
        why=panel,
        preview=PREVIEW,
        trace_id=trace_id,
        trace_url=trace_url,
        can_write=session.can_write,
    )


def trace_of(events: list[h.HistoryEvent]) -> tuple[str | None, str | None]:
    """The trace id of the instance's execution (the one its spans carry, see
    :func:`taskloom.observability.context.trace_id_of`) and, when ``TASKLOOM_TRACE_URL``
    is an http(s) URL (e.g. ``http://jaeger:16686/trace/{trace_id}``), the link to it."""
    from taskloom.observability.context import trace_id_of

    started = next((e for e in events if isinstance(e, h.ExecutionStarted)), None)
    if started is None:
        return None, None
    trace_id = trace_id_of(started)
    template = os.environ.get("TASKLOOM_TRACE_URL", "")
    if not template.startswith(("http://", "https://")):
        return trace_id, None
    return trace_id, template.replace("{trace_id}", trace_id)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise HTTPException(400, f"{name} must be a whole number, not {text!r}") from exc
    if not low <= value <= high:
        raise HTTPException(400, f"{name} must be between {low} and {high}, not {value}")
    return value


def _json_error(exc: HTTPException) -> JSONResponse:
    response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    render.secured(response)
    return response


def _summary(event: h.HistoryEvent) -> str:
    data = h.event_to_dict(event)
    parts = []
    for name in ("name", "instance_id", "task_scheduled_id", "timer_id", "fire_at", "purpose"):
        if name in data:
            parts.append(f"{name}={data[name]}")
    failure = data.get("failure")
    if isinstance(failure, dict):
        parts.append(f"{failure.get('error_type', '')}: {failure.get('message', '')}")
    for name in ("input", "result", "reason"):
        if isinstance(data.get(name), str):
            parts.append(f"{name}={data[name]}")
    text = " ".join(parts)
    return text if len(text) <= _SUMMARY else text[:_SUMMARY] + "…"


def _has_payload(event: h.HistoryEvent) -> bool:
    return any(getattr(event, n, None) is not None for n in ("input", "result", "failure"))


async def history_json(request: Request) -> Response:
    """``{"total": n, "events": [{kind, timestamp, summary, has_payload}]}`` for
    ``limit`` events from position ``from``."""
    try:
        await auth.require(request)
        instance_id = request.query_params.get("id") or ""
        start = _int(request, "from", 0, 0, 10**9)
        limit = _int(request, "limit", HISTORY_PAGE, 1, 1_000)
        record = await _record(request, instance_id)
    except HTTPException as exc:
        return _json_error(exc)
    except InstanceNotFoundError as exc:
        return _json_error(HTTPException(404, str(exc)))
    events = await history_of(request, record)
    rows: list[dict[str, Any]] = [
        {
            "kind": e.kind,
            "timestamp": render.env.filters["when"](e.timestamp),
            "summary": _summary(e),
            "has_payload": _has_payload(e),
        }
        for e in events[start : start + limit]
    ]
    return render.secured(JSONResponse({"total": len(events), "events": rows}))


async def payload_json(request: Request) -> Response:
    """One event's data (``seq``) or the instance's ``what`` (input, output, custom),
    as pretty-printed text: ``{"kind": ..., "text": ...}``."""
    try:
        await auth.require(request)
        record = await _record(request, request.query_params.get("id") or "")
        what = request.query_params.get("what")
        if what is not None:
            fields = {"input": record.input, "output": record.output}
            fields["custom"] = record.custom_status
            if what not in fields:
                raise HTTPException(400, f"what must be input, output or custom, not {what!r}")
            return render.secured(
                JSONResponse({"kind": what, "text": render.env.filters["pretty"](fields[what])})
            )
        seq = _int(request, "seq", 0, 0, 10**9)
    except HTTPException as exc:
        return _json_error(exc)
    except InstanceNotFoundError as exc:
        return _json_error(HTTPException(404, str(exc)))
    events = await history_of(request, record)
    if seq >= len(events):
        return _json_error(HTTPException(404, f"the history has {len(events)} events, no {seq}"))
    data = h.event_to_dict(events[seq])
    parts = []
    for name in ("input", "result"):
        if isinstance(data.get(name), str):
            parts.append(f"{name}:\n{render.env.filters['pretty'](data[name])}")
    failure = data.get("failure")
    if isinstance(failure, dict):
        parts.append(
            f"failure: {failure.get('error_type')}: {failure.get('message')}\n"
            f"{failure.get('stack_trace') or ''}"
        )
    return render.secured(JSONResponse({"kind": events[seq].kind, "text": "\n\n".join(parts)}))
