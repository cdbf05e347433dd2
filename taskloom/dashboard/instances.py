"""The instances view: filters, keyset pages and per-status counts.

Filters map onto :class:`~taskloom.storage.base.InstanceQuery` (status, name, id prefix,
created range, version; newest first unless ``order=oldest``); "retrying" and "waiting on
event X" are derived from histories (:mod:`taskloom.dashboard.scan`). Pages follow the
store's continuation token (keyset on ``(created_at, instance_id)``, never OFFSET). The
per-status counts come from one grouped count cached for :data:`COUNTS_TTL` seconds per
process, so loading or refreshing the page does not count the hub each time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from taskloom.dashboard import auth, render, scan
from taskloom.models import Status
from taskloom.storage.base import InstanceQuery

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views
    from taskloom.storage.base import InstanceRecord, Store

PAGE_SIZE = 50
COUNTS_TTL = 10.0
_MAX_TEXT = 500


def register(views: Views) -> None:
    views.router.add_api_route("/", instances_page, methods=["GET"])
    views.router.add_api_route("/instances", instances_page, methods=["GET"])
    views.nav("Instances", "/")


@dataclass(frozen=True)
class Filters:
    """The instances view's filters, parsed from the query string."""

    statuses: tuple[Status, ...] = ()
    name: str = ""
    prefix: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None
    version: str = ""
    retrying: bool = False
    waiting: str = ""
    oldest_first: bool = False  # newest first by default
    parent: str = ""  # children of this instance (the detail page links here)

    def query(self) -> InstanceQuery:
        statuses = frozenset(self.statuses) or None
        if (self.retrying or self.waiting) and statuses is None:
            statuses = scan.LIVE  # only unfinished instances retry or wait
        return InstanceQuery(
            statuses=statuses,
            name=self.name or None,
            instance_id_prefix=self.prefix or None,
            created_from=self.created_from,
            created_to=self.created_to,
            version=self.version or None,
            newest_first=not self.oldest_first,
            parent_instance_id=self.parent or None,
        )

    def params(self) -> dict[str, Any]:
        """The filters as query parameters (for links to other pages)."""
        return {
            "status": [s.value for s in self.statuses],
            "name": self.name,
            "prefix": self.prefix,
            "from": _form_time(self.created_from),
            "to": _form_time(self.created_to),
            "version": self.version,
            "retrying": "1" if self.retrying else "",
            "waiting": self.waiting,
            "order": "oldest" if self.oldest_first else "",
            "parent": self.parent,
        }


def _text(params: dict[str, list[str]], name: str) -> str:
    values = params.get(name) or [""]
    value = values[-1].strip()
    if len(value) > _MAX_TEXT:
        raise HTTPException(400, f"filter {name!r} is too long (at most {_MAX_TEXT} characters)")
    return value


def _time(params: dict[str, list[str]], name: str) -> datetime | None:
    text = _text(params, name)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise HTTPException(
            400, f"filter {name!r}: {text!r} is not a time like 2024-05-01T12:00 (UTC)"
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _form_time(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def parse_filters(request: Request) -> Filters:
    """The filters of a request's query string; 400 naming the filter that is wrong."""
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    statuses = []
    for text in params.get("status", []):
        if text:
            try:
                statuses.append(Status.parse(text))
            except ValueError as exc:
                raise HTTPException(400, str(exc)) from exc
    return Filters(
        statuses=tuple(dict.fromkeys(statuses)),
        name=_text(params, "name"),
        prefix=_text(params, "prefix"),
        created_from=_time(params, "from"),
        created_to=_time(params, "to"),
        version=_text(params, "version"),
        retrying=_text(params, "retrying") in ("1", "on", "true"),
        waiting=_text(params, "waiting"),
        oldest_first=_order(params),
        parent=_text(params, "parent"),
    )


def _order(params: dict[str, list[str]]) -> bool:
    order = _text(params, "order")
    if order not in ("", "newest", "oldest"):
        raise HTTPException(400, f"order must be newest or oldest, not {order!r}")
    return order == "oldest"


async def status_counts(request: Request) -> dict[str, int]:
    """Instances per status, at most :data:`COUNTS_TTL` seconds old."""
    state = request.app.state
    cached: tuple[float, dict[str, int]] | None = getattr(state, "dashboard_counts", None)
    now = time.monotonic()
    if cached is not None and now - cached[0] < COUNTS_TTL:
        return cached[1]
    store: Store = request.app.state.taskloom_client.store
    counts = {s.value: n for s, n in (await store.count_instances()).items()}
    state.dashboard_counts = (now, counts)
    return counts


@render.html_errors
async def instances_page(request: Request) -> Response:
    session = await auth.require(request)
    filters = parse_filters(request)
    after = request.query_params.get("after") or None
    store: Store = request.app.state.taskloom_client.store
    records: list[InstanceRecord]
    try:
        if filters.retrying or filters.waiting:
            found = await scan.derived_page(request, filters.query(), filters, PAGE_SIZE, after)
            records, token, scanned_to = found.records, found.token, found.scanned
        else:
            result = await store.query_instances(filters.query(), PAGE_SIZE, after)
            records, token, scanned_to = result.records, result.continuation_token, None
    except ValueError as exc:
        raise HTTPException(
            400, f"the page link is not valid ({exc}); go back to the first page"
        ) from exc
    params = filters.params()
    return render.page(
        request,
        "instances.html",
        filters=filters,
        statuses=[s for s in Status if s is not Status.CONTINUED_AS_NEW],
        counts=await status_counts(request),
        counts_ttl=int(COUNTS_TTL),
        records=records,
        next_link=render.query_string({**params, "after": token}) if token else None,
        first_link=render.query_string(params) if after else None,
        filter_link=render.query_string(params),
        scanned_to=scanned_to,
        can_write=session.can_write,
    )
