"""The event streams view: the streams written most recently (read from the tail of the
hub's event log, at most :data:`TAIL` events, so the page costs the same however long
the log is), a form to open any stream by id, and a stream's events a page at a time
from a version, with their type, time, data and metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from taskloom.dashboard import auth, render
from taskloom.dashboard.views_common import back_to, client, path

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views

TAIL = 500
PAGE_SIZE = 100


def register(views: Views) -> None:
    views.router.add_api_route("/streams", streams_page, methods=["GET"])
    views.router.add_api_route("/streams/{stream_id:path}", stream_page, methods=["GET"])
    views.nav("Streams", "/streams")


@dataclass
class RecentStream:
    stream_id: str
    version: int
    events: int
    last_type: str
    last_at: datetime


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


@render.html_errors
async def streams_page(request: Request) -> Response:
    await auth.require(request)
    asked = request.query_params.get("id", "").strip()
    if asked:
        return back_to(request, f"/streams/{path(asked)}")
    events = client(request).events
    head = await events.head()
    tail = await events.read_all(after=max(0, head - TAIL), limit=TAIL)
    recent: dict[str, RecentStream] = {}
    for event in tail:
        seen = recent.get(event.stream_id)
        if seen is None:
            recent[event.stream_id] = RecentStream(
                event.stream_id, event.version, 1, event.type, event.recorded_at
            )
        else:
            seen.version, seen.last_type, seen.last_at = (
                event.version,
                event.type,
                event.recorded_at,
            )
            seen.events += 1
    rows = sorted(recent.values(), key=lambda s: s.last_at, reverse=True)
    return render.page(request, "views_streams.html", rows=rows, head=head, tail=TAIL)


def _version(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise HTTPException(400, f"version {text!r} must be a whole number (0 or more)")
    return int(text)


@render.html_errors
async def stream_page(request: Request) -> Response:
    await auth.require(request)
    stream_id = request.path_params["stream_id"]
    start = _version(request.query_params.get("from", ""))
    events = client(request).events
    found = await events.read_stream(stream_id, from_version=start, limit=PAGE_SIZE + 1)
    shown = found[:PAGE_SIZE]
    more = shown[-1].version + 1 if len(found) > PAGE_SIZE else None
    return render.page(
        request,
        "views_stream.html",
        stream_id=stream_id,
        version=await events.stream_version(stream_id),
        events=[(e, _json(e.data), _json(e.metadata)) for e in shown],
        next_from=more,
        start=start,
    )
