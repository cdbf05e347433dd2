"""The workers view: the live workers of the hub, from the store's worker registry
(``Store.list_workers(now)``). A store without the registry shows "registry not
available" rather than guessing from leases."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from taskloom.dashboard import auth, render
from taskloom.dashboard.views_common import store

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views


def register(views: Views) -> None:
    views.router.add_api_route("/workers", workers_page, methods=["GET"])
    views.nav("Workers", "/workers")


def _row(record: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return dataclasses.asdict(record)
    if isinstance(record, dict):
        return dict(record)
    return dict(vars(record))


def _cell(value: Any) -> str:
    if isinstance(value, datetime):
        return str(render.env.filters["when"](value))
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


@render.html_errors
async def workers_page(request: Request) -> Response:
    await auth.require(request)
    lister = getattr(store(request), "list_workers", None)
    rows: list[dict[str, str]] | None = None
    columns: list[str] = []
    if lister is not None:
        found = [_row(r) for r in await lister(datetime.now(UTC))]
        for row in found:
            columns.extend(k for k in row if k not in columns)
        rows = [{k: _cell(row.get(k)) for k in columns} for row in found]
    return render.page(request, "views_workers.html", rows=rows, columns=columns)
