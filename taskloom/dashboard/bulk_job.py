"""Bulk actions on a filter, run as a durable job: the built-in orchestration ``taskloom.bulk``.

A bulk action (terminate, suspend, resume, restart, purge, rewind) on every instance that
matches a filter is an orchestration of its own, so it has what every orchestration has:
it survives a crash of the process running it (a SIGKILLed host's lease lapses and another
host, or the same one restarted, replays it and carries on from the last page it recorded),
it is rate limited by durable timers, and its input, custom status, output and history are
the audit record of who did what, when, on which filter, to how many instances.

Each page is two activities. ``taskloom.bulk.select`` reads the next page of the filter
with keyset paging (the store's continuation token is a position in (created_at,
instance_id) order, so rows that stop matching once acted on do not shift the pages) and
returns the page's ids; once that result is in history the page is fixed. Then
``taskloom.bulk.apply`` acts on exactly those ids. Apply may run more than once (an
activity runs at least once), so every effect is idempotent: messages carry a dedup key
made of the job's and the instance's ids (a second copy is not added while the first
waits, and one arriving after the first took effect meets a finished or already changed
instance and does nothing); a restart creates the instance under an id derived from the
job and the original id and skips it when it exists; a purge of a purged instance finds
nothing. An instance that is in the action's target state when apply looks (terminated,
for a terminate) is reported as ``already``, which is also what a rerun of apply reports
for the instances its killed first run acted on; so each selected id appears once in the
audit, under ``applied``, ``already`` or ``skipped`` (with the reason).

The job only touches instances created before it was requested (new instances are not
chased forever), never entities and never bulk jobs themselves. ``install(app)`` registers
the orchestration and its activities; every worker calls it, so any host of the hub can
run a job that a dashboard started.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from taskloom import history as h
from taskloom.dashboard.bulk_request import (
    ACTIONS,
    ELIGIBLE,
    MAX_PAGE_SIZE,
    MAX_RATE,
    BulkFilter,
    BulkRequest,
    BulkRequestError,
    DryRun,
    dry_run,
    is_target,
    signed_input,
    verified,
)
from taskloom.models import FailureDetails, Status
from taskloom.retry import RetryPolicy
from taskloom.storage.base import AT_ONCE, InstanceQuery, Message

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.client import AsyncClient
    from taskloom.context import OrchestrationContext

__all__ = [  # the request's names too, so callers need one module
    "ACTIONS",
    "APPLY",
    "BULK",
    "ELIGIBLE",
    "MAX_PAGE_SIZE",
    "MAX_RATE",
    "SELECT",
    "BulkFilter",
    "BulkRequest",
    "BulkRequestError",
    "DryRun",
    "PageOutcome",
    "dry_run",
    "install",
    "is_target",
    "new_job_id",
    "pages_of",
    "restart_id",
    "signed_input",
    "start_job",
    "verified",
]

BULK = "taskloom.bulk"
SELECT = "taskloom.bulk.select"
APPLY = "taskloom.bulk.apply"

#: An instance found in one of these when apply looks was acted on already (by an earlier
#: run of the same apply, or by someone else): reported as ``already``, not acted on again.
_ALREADY: dict[str, frozenset[Status]] = {
    "terminate": frozenset({Status.TERMINATED}),
    "suspend": frozenset({Status.SUSPENDED}),
    "resume": frozenset({Status.RUNNING}),
    "restart": frozenset(),
    "purge": frozenset(),
    "rewind": frozenset({Status.PENDING, Status.RUNNING}),
}


def _transient(failure: FailureDetails) -> bool:
    """Retry a page's activity after a store error, not after a refused request."""
    return not failure.error_type.endswith("BulkRequestError")


_RETRY = RetryPolicy(timedelta(seconds=1), 6, 2.0, timedelta(seconds=30), handle=_transient)


# -- the job -------------------------------------------------------------------------------


def bulk_orchestrator(ctx: OrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    """Page through the filter: select a page, apply the action, wait for the rate."""
    data: dict[str, Any] = ctx.get_input()
    request = BulkRequest.from_json(data)
    totals = {"pages": 0, "selected": 0, "applied": 0, "already": 0, "skipped": 0}
    ctx.set_custom_status({"state": "running", **totals})
    cursor: str | None = None
    while True:
        page = yield ctx.call_activity(
            SELECT, {"request": data, "cursor": cursor}, retry_policy=_RETRY
        )
        ids: list[str] = page["ids"]
        totals["pages"] += 1
        if ids:
            done = yield ctx.call_activity(
                APPLY, {"request": data, "job": ctx.instance_id, "ids": ids}, retry_policy=_RETRY
            )
            totals["selected"] += len(ids)
            for outcome in ("applied", "already", "skipped"):
                totals[outcome] += len(done[outcome])
        cursor = page["cursor"]
        if cursor is None:
            break
        ctx.set_custom_status({"state": "running", **totals})
        if ids:
            yield ctx.create_timer(timedelta(seconds=len(ids) / request.rate))
    ctx.set_custom_status({"state": "done", **totals})
    return {"state": "done", **totals, "finished_at": ctx.current_utc_datetime.isoformat()}


async def select_page(data: dict[str, Any], *, client: AsyncClient) -> dict[str, Any]:
    """The next page of the job's filter after ``cursor``: its target ids and the cursor."""
    store = client.store
    request = await verified(store, data["request"])
    query = request.filter.query(request.action, request.requested_at)
    if query is None:
        return {"ids": [], "cursor": None}
    found = await store.query_instances(query, request.page_size, data.get("cursor"))
    ids = [r.instance_id for r in found.records if is_target(r)]
    return {"ids": ids, "cursor": found.continuation_token}


async def apply_page(data: dict[str, Any], *, client: AsyncClient) -> dict[str, Any]:
    """Act on the page's ids, idempotently; each id lands in one outcome list."""
    store = client.store
    request = await verified(store, data["request"])
    job: str = data["job"]
    ids: list[str] = data["ids"]
    statuses = await store.get_statuses(ids)
    applied: list[str] = []
    already: list[str] = []
    skipped: list[list[str]] = []
    acting: list[str] = []
    for iid in ids:
        status = statuses.get(iid)
        if status is None:
            if request.action == "purge":
                already.append(iid)
            else:
                skipped.append([iid, "no longer exists"])
        elif status in ELIGIBLE[request.action]:
            acting.append(iid)
        elif status in _ALREADY[request.action]:
            already.append(iid)
        else:
            skipped.append([iid, f"is {status.value} now"])
    reason = _reason(request, job)
    if request.action == "purge":
        if acting:
            await store.purge_instances(InstanceQuery(), acting)
        left = await store.get_statuses(acting)
        applied = [i for i in acting if i not in left]
        skipped.extend([i, f"is {left[i].value} now"] for i in acting if i in left)
    elif request.action == "restart":
        for iid in acting:
            outcome = await _restart(client, job, iid)
            if outcome is None:
                applied.append(iid)
            elif outcome == "":
                already.append(iid)
            else:
                skipped.append([iid, outcome])
    else:
        now = client.clock.now()
        messages = [_message(request.action, iid, job, reason, now) for iid in acting]
        if messages:
            await store.enqueue_messages(messages)
        applied = acting
    return {"applied": applied, "already": already, "skipped": skipped}


def _reason(request: BulkRequest, job: str) -> str:
    who = request.by_name or request.by_key_id or "an open host's caller"
    text = f"bulk {request.action} {job} by {who}"
    return f"{text}: {request.reason}" if request.reason else text


def _message(action: str, iid: str, job: str, reason: str, now: datetime) -> Message:
    event: h.HistoryEvent
    if action == "terminate":
        event = h.ExecutionTerminated(now, reason=reason, recurse=True)
    elif action == "suspend":
        event = h.ExecutionSuspended(now, reason=reason)
    elif action == "resume":
        event = h.ExecutionResumed(now, reason=reason)
    else:
        event = h.ExecutionRewound(now, reason=reason)
    return Message(iid, event, AT_ONCE, key=f"bulk:{job}:{iid}")


def restart_id(job: str, iid: str) -> str:
    """The id a bulk restart gives instance ``iid``'s new run (the same on every rerun)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"taskloom-bulk/{job}/{iid}").hex


async def _restart(client: AsyncClient, job: str, iid: str) -> str | None:
    """Start ``iid`` again under :func:`restart_id`: None when started, ``""`` when that
    instance exists already (an earlier run of this apply), else why it was not."""
    store = client.store
    new_id = restart_id(job, iid)
    if await store.get_instance(new_id) is not None:
        return ""
    record = await store.get_instance(iid)
    if record is None:
        return "no longer exists"
    # The stored input text is reused as is, as AsyncClient.restart does.
    await client._create(record.name, record.input, new_id, None, record.version)
    return None


def new_job_id(request: BulkRequest) -> str:
    """A fresh job instance id, ``bulk-<action>-<request time>-<random>``."""
    stamp = request.requested_at.strftime("%Y%m%dT%H%M%S")
    return f"bulk-{request.action}-{stamp}-{uuid.uuid4().hex[:8]}"


async def start_job(client: AsyncClient, request: BulkRequest) -> str:
    """Start the job for ``request``; returns its instance id (see :func:`new_job_id`)."""
    data = await signed_input(client.store, request)
    return await client.start_new(BULK, data, instance_id=new_job_id(request))


# -- registration and reading --------------------------------------------------------------


def install(app: App) -> None:
    """Register the bulk job's orchestration and activities in ``app`` (once)."""
    if BULK not in app.orchestrators:
        app.orchestrator(name=BULK)(bulk_orchestrator)
    if SELECT not in app.activities:
        app.activity(name=SELECT)(select_page)
    if APPLY not in app.activities:
        app.activity(name=APPLY)(apply_page)


@dataclass(frozen=True)
class PageOutcome:
    """One applied page of a job, read back from its history."""

    applied: list[str]
    already: list[str]
    skipped: list[tuple[str, str]]


def pages_of(events: Sequence[h.HistoryEvent], loads: Any) -> list[PageOutcome]:
    """The applied pages recorded in a job's history, in order (``loads`` decodes)."""
    applies = {e.event_id for e in events if isinstance(e, h.TaskScheduled) and e.name == APPLY}
    pages = []
    for event in events:
        if isinstance(event, h.TaskCompleted) and event.task_scheduled_id in applies:
            done = loads(event.result)
            skipped = [(str(i), str(why)) for i, why in done["skipped"]]
            pages.append(PageOutcome(list(done["applied"]), list(done["already"]), skipped))
    return pages
