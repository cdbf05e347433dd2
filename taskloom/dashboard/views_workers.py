"""The workers view: the live workers of the hub from the store's worker registry
(``HostStore.list_workers(now)``: one row per worker, refreshed by its heartbeats).

Each row shows the worker's id, host and process, kind (taskloom's own worker or a
Durable Task SDK over gRPC), the version it starts orchestrations at, its activity slots
in use, what it serves (orchestrations, activities, entities; the names on demand), and
when it started, was last seen and expires (a row past its expiry belongs to a worker
that died without removing itself). A store without the registry shows "registry not
available" rather than guessing from leases.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from taskloom.dashboard import auth, render
from taskloom.dashboard.views_common import now, store

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views


def register(views: Views) -> None:
    views.router.add_api_route("/workers", workers_page, methods=["GET"])
    views.nav("Workers", "/workers")


@dataclass(frozen=True)
class WorkerRow:
    """A registry record as the page shows it (fields a record lacks are empty)."""

    worker_id: str
    where: str
    kind: str
    version: str
    slots: str
    serves: dict[str, tuple[str, ...]]
    started_at: datetime | None
    last_seen: datetime | None
    expires_at: datetime | None
    expired: bool

    @classmethod
    def of(cls, record: Any, moment: datetime) -> WorkerRow:
        fields: dict[str, Any] = (
            {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
            if dataclasses.is_dataclass(record)
            else dict(vars(record))
        )
        expires = fields.get("expires_at")
        slots, busy = fields.get("slots"), fields.get("busy")
        return cls(
            worker_id=str(fields.get("worker_id", "")),
            where=f"{fields.get('host', '')}:{fields.get('pid', '')}",
            kind=str(fields.get("kind", "")),
            version=str(fields.get("version") or ""),
            slots="" if slots is None else f"{busy or 0} of {slots} busy",
            serves={
                what: tuple(fields.get(what) or ())
                for what in ("orchestrations", "activities", "entities")
            },
            started_at=fields.get("started_at"),
            last_seen=fields.get("last_seen"),
            expires_at=expires,
            expired=isinstance(expires, datetime) and expires < moment,
        )


@render.html_errors
async def workers_page(request: Request) -> Response:
    await auth.require(request)
    lister = getattr(store(request), "list_workers", None)
    rows: list[WorkerRow] | None = None
    if lister is not None:
        moment = now(request)
        rows = [WorkerRow.of(r, moment) for r in await lister(moment)]
    return render.page(request, "views_workers.html", rows=rows)
