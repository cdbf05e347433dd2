"""The derived filters of the instances view, "retrying" and "waiting on event X", which
no column holds: they are read from histories, a bounded number of instances per request.

A page walks the store's keyset pages of unfinished instances (the other filters still
apply in SQL), loads their histories :data:`BATCH` at a time and keeps those that match,
until the page is full or :data:`SCAN_LIMIT` instances were read; the continuation token
then points where the walk stopped, so the next page resumes there. No request reads more
than :data:`SCAN_LIMIT` histories, however large the hub.

- **retrying**: a retry timer (``TimerCreated`` with purpose ``retry``) has not fired: an
  activity or sub-orchestration failed and its next attempt is waiting.
- **waiting on event X**: replaying the history with the app's orchestrator leaves a task
  waiting for event X (names ignore case). It needs the app's code, so it works in
  ``taskloom serve``, not in a dashboard started alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request

from taskloom.dashboard import analysis
from taskloom.models import Status
from taskloom.storage.base import InstanceQuery, InstanceRecord

if TYPE_CHECKING:
    from taskloom.dashboard.instances import Filters
    from taskloom.history import HistoryEvent
    from taskloom.storage.base import Store

LIVE = frozenset({Status.PENDING, Status.RUNNING, Status.SUSPENDED})
BATCH = 100
SCAN_LIMIT = 2_000


@dataclass
class DerivedPage:
    records: list[InstanceRecord] = field(default_factory=list)
    token: str | None = None
    scanned: str | None = None  # the last instance id read


async def derived_page(
    request: Request, query: InstanceQuery, filters: Filters, size: int, after: str | None
) -> DerivedPage:
    store: Store = request.app.state.taskloom_client.store
    app = request.app.state.taskloom_app
    if filters.waiting and app is None:
        raise HTTPException(
            400,
            "the 'waiting on event' filter replays histories with the app's orchestrators; "
            "open the dashboard of taskloom serve (which has the app) to use it",
        )
    page = DerivedPage()
    token = after
    read = 0
    while read < SCAN_LIMIT:
        before = token
        result = await store.query_instances(query, BATCH, token)
        histories = await store.load_histories([r.instance_id for r in result.records])
        # Replays run user code and take CPU: off the event loop, which the host's
        # workers share (their lease renewals must not wait for a dashboard query).
        matched = await asyncio.to_thread(_batch, app, result.records, histories, filters)
        for position, record in enumerate(result.records):
            read += 1
            if matched[position]:
                page.records.append(record)
                if len(page.records) >= size:
                    # Resume after this record: re-query from its keyset position.
                    page.scanned = record.instance_id
                    rest = position < len(result.records) - 1 or result.continuation_token
                    if rest:  # the store's token for "after this record"
                        upto = await store.query_instances(query, position + 1, before)
                        page.token = upto.continuation_token
                    return page
        if result.records:
            page.scanned = result.records[-1].instance_id
        token = result.continuation_token
        if token is None:
            return page
    page.token = token
    return page


def _batch(
    app: object,
    records: list[InstanceRecord],
    histories: dict[str, list[HistoryEvent]],
    filters: Filters,
) -> list[bool]:
    return [_matches(app, r, histories.get(r.instance_id, []), filters) for r in records]


def _matches(
    app: object, record: InstanceRecord, events: list[HistoryEvent], filters: Filters
) -> bool:
    if filters.retrying and not analysis.pending_retries(events):
        return False
    if filters.waiting:
        waited = analysis.waited_events(app, record.instance_id, record.name, events)
        if waited is None or filters.waiting.lower() not in waited:
            return False
    return True
