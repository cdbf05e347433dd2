"""The "why is this not finished" panel of an unfinished instance.

It gathers, from the history (:mod:`taskloom.dashboard.analysis`) and a few indexed reads
(:meth:`Store.inspect_instance`, the worker registry): pending activities and
sub-orchestrations with their attempt number, every failed attempt's error and the next
retry; timers and when they are due; events the orchestration waits for (by replaying it
with the app's code) with a signed link to raise each (shown to roles that may raise
events, since a link lets anyone who has it act); whether a live worker serves the
orchestration and each pending activity; who holds the lease and until when; and
non-determinism or other failures.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from taskloom.dashboard import analysis
from taskloom.models import Status
from taskloom.storage.base import InstanceLeases
from taskloom.storage.host_base import QueueMessage

if TYPE_CHECKING:
    from starlette.requests import Request

    from taskloom.dashboard.auth import Session
    from taskloom.history import HistoryEvent
    from taskloom.storage.base import InstanceRecord, Store

LINK_LIFETIME = timedelta(hours=24)
POISON_PEEK = 50


@dataclass
class Served:
    """Who serves a name: ``workers`` (descriptions), or None when the store keeps no
    worker registry (unknown)."""

    name: str
    kind: str
    workers: list[str] | None


@dataclass
class WhyPanel:
    reasons: list[str] = field(default_factory=list)
    pending: list[analysis.TaskChain] = field(default_factory=list)
    timers: list[analysis.Timer] = field(default_factory=list)
    waited: list[str] | None = None  # None: unknown (no app to replay with)
    links: dict[str, str] = field(default_factory=dict)
    served: list[Served] = field(default_factory=list)
    leases: InstanceLeases | None = None
    lease_live: bool = False
    now: datetime | None = None
    poisoned: list[QueueMessage] = field(default_factory=list)


async def poisoned_messages(request: Request, instance_id: str) -> list[QueueMessage]:
    """Messages in the app's ``<queue>-poison`` queues (the first :data:`POISON_PEEK` of
    each) whose body names ``instance_id``: a queue trigger meant for this instance that
    failed on every delivery. Needs the app (to know its queues)."""
    app = request.app.state.taskloom_app
    store = request.app.state.taskloom_host_store
    if app is None or not getattr(app, "queue_triggers", None):
        return []
    found = []
    for queue in sorted(app.queue_triggers):
        for message in await store.queue_peek(f"{queue}-poison", POISON_PEEK):
            if instance_id in message.body:
                found.append(message)
    return found


async def live_workers(store: Store, now: datetime) -> list[Any] | None:
    """The worker registry's live workers, or None when the store keeps none."""
    lister = getattr(store, "list_workers", None)
    if lister is None:
        return None
    try:
        return list(await lister(now))
    except Exception:
        return None


def _serving(workers: list[Any] | None, kind: str, name: str) -> list[str] | None:
    if workers is None:
        return None
    found = []
    for worker in workers:
        names = getattr(worker, kind, ()) or ()
        if name in names:
            where = f"{getattr(worker, 'host', '?')} pid {getattr(worker, 'pid', '?')}"
            notes = []
            kind = getattr(worker, "kind", "native")
            if kind != "native":
                notes.append(str(kind))
            version = getattr(worker, "version", None)
            if version:
                notes.append(f"version {version}")
            busy, slots = getattr(worker, "busy", None), getattr(worker, "slots", None)
            if slots is not None:
                notes.append(f"{busy}/{slots} busy")
            if notes:
                where += f" ({', '.join(notes)})"
            found.append(where)
    return found


async def explain(
    request: Request,
    session: Session,
    record: InstanceRecord,
    events: list[HistoryEvent],
    summary: analysis.Summary,
    now: datetime,
) -> WhyPanel:
    store: Store = request.app.state.taskloom_client.store
    panel = WhyPanel(now=now)
    if record.status is Status.SUSPENDED:
        panel.reasons.append("The instance is suspended: resume it to continue.")
    if record.status is Status.PENDING and record.scheduled_start_at is not None:
        panel.reasons.append(
            f"Scheduled to start at {record.scheduled_start_at:%Y-%m-%d %H:%M:%S}Z."
        )
    if record.failure is not None:
        panel.reasons.append(f"Failure: {record.failure.error_type}: {record.failure.message}")
        if "NonDeterminism" in record.failure.error_type:
            panel.reasons.append(
                "Non-determinism: the orchestrator's code no longer replays this history "
                "(it was changed under a running instance). Serve the old code, or a "
                "versioned orchestrator, then rewind or restart it."
            )
    panel.pending = [c for c in summary.chains if c.pending]
    panel.timers = [t for t in summary.timers if not t.fired and t.purpose != "retry"]
    app = request.app.state.taskloom_app
    # A replay runs user code: off the event loop the host's workers share.
    waited = await asyncio.to_thread(
        analysis.waited_events, app, record.instance_id, record.name, events
    )
    if waited is not None:
        panel.waited = sorted(waited)
        if session.can_write:
            client = request.app.state.taskloom_client
            for name in panel.waited:
                try:
                    panel.links[name] = await client.create_event_link(
                        record.instance_id, name, LINK_LIFETIME
                    )
                except Exception:
                    break  # no base URL: no links
    panel.poisoned = await poisoned_messages(request, record.instance_id)
    if panel.poisoned:
        panel.reasons.append(
            f"{len(panel.poisoned)} poisoned queue message(s) name this instance: a queue "
            "trigger failed on them every time (see below)."
        )
    workers = await live_workers(store, now)
    panel.served.append(
        Served(record.name, "orchestration", _serving(workers, "orchestrations", record.name))
    )
    if workers and record.version:
        versions = {
            getattr(w, "version", None)
            for w in workers
            if record.name in (getattr(w, "orchestrations", ()) or ())
        }
        if versions and record.version not in versions:
            shown = ", ".join(sorted(v or "none" for v in versions))
            panel.reasons.append(
                f"The instance is version {record.version}; the live workers serving it run "
                f"version(s) {shown}. Workers whose version policy does not admit it leave it "
                "for another worker (see docs/semantics.md, Versioning)."
            )
    for name in sorted({c.name for c in panel.pending if c.kind == "activity"}):
        panel.served.append(Served(name, "activity", _serving(workers, "activities", name)))
    panel.leases = await store.inspect_instance(record.instance_id)
    leases = panel.leases
    if leases is not None:
        panel.lease_live = leases.lease_expires is not None and leases.lease_expires > now
        due = leases.next_message_at
        if leases.messages and not panel.lease_live and due is not None and due <= now:
            panel.reasons.append(
                f"{leases.messages} message(s) wait in the inbox and no worker holds the "
                "instance: is a worker serving this orchestration running?"
            )
    if any(s.workers == [] for s in panel.served):
        missing = ", ".join(f"{s.kind} {s.name!r}" for s in panel.served if s.workers == [])
        panel.reasons.append(f"No live worker serves {missing}.")
    return panel
