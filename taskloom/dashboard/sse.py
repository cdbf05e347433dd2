"""Live updates: ``GET /dashboard/events?id=A&id=B...`` streams server-sent events about
the instances a page shows, driven by the store's change notifications.

A stream registers a status listener (:meth:`Store.add_status_listener`; status changes
reach other processes through the store's own channel: PostgreSQL ``NOTIFY``, SQLite's
doorbells). A wake-up that names the changed instances, none of them the stream's, costs
nothing; otherwise the stream reads the statuses of its own instances (at most
:data:`MAX_IDS`, one indexed read) and sends those that changed as one ``instances``
event: ``[{"id": ..., "status": ..., "history": n}]``. The first event is a snapshot, so
nothing that changed between the page and the stream is missed. The first page of the
(newest first) instances view also passes its filters and its top id (``top=``): on a
wake-up the stream reads the newest matching instance (one row, by the created-time
index) and, once, sends a ``newer`` event when it is not the page's top. Nothing is read
on a timer: with no change a stream only sends a comment every :data:`KEEPALIVE` seconds,
and wake-ups are coalesced to at most one read per :data:`MIN_GAP` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator, Collection
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from taskloom.dashboard import auth, render

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views
    from taskloom.storage.base import InstanceQuery, Store

MAX_IDS = 200
KEEPALIVE = 15.0
MIN_GAP = 0.25

_open_streams: weakref.WeakSet[asyncio.Event] = weakref.WeakSet()


def register(views: Views) -> None:
    views.router.add_api_route("/events", events, methods=["GET"])


def close_streams() -> None:
    """End every open stream (the server is stopping; browsers reconnect elsewhere)."""
    for closing in list(_open_streams):
        closing.set()


@render.html_errors
async def events(request: Request) -> Response:
    await auth.require(request)
    ids = list(dict.fromkeys(request.query_params.getlist("id")))
    if len(ids) > MAX_IDS:
        raise HTTPException(400, f"watch at most {MAX_IDS} instances per stream, not {len(ids)}")
    store: Store = request.app.state.taskloom_client.store
    newest = None
    top = request.query_params.get("top")
    if top is not None:
        from taskloom.dashboard.instances import parse_filters

        filters = parse_filters(request)
        if not (filters.retrying or filters.waiting or filters.oldest_first):
            newest = (filters.query(), top)
    response = StreamingResponse(
        _stream(store, ids, newest),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )
    return render.secured(response)


async def _stream(
    store: Store, ids: list[str], newest: tuple[InstanceQuery, str] | None
) -> AsyncIterator[str]:
    woken = asyncio.Event()
    closing = asyncio.Event()
    _open_streams.add(closing)
    watched = set(ids)
    dirty: set[str] = set()
    unknown = [False]  # a wake-up that did not say which instances changed

    def wake(changed: Collection[str] | None) -> None:
        if changed is None:
            unknown[0] = True
        else:
            dirty.update(i for i in changed if i in watched or newest is not None)
        if unknown[0] or dirty:
            woken.set()

    store.add_status_listener(wake)
    known: dict[str, tuple[str, int]] = {}
    try:
        yield "retry: 2000\n\n"
        first = True
        while not closing.is_set():
            if first or unknown[0] or dirty & watched:
                changes = await _changes(store, ids, known)
                if changes or first:
                    yield f"event: instances\ndata: {json.dumps(changes)}\n\n"
            if newest is not None and (first or unknown[0] or dirty):
                found = await store.query_instances(newest[0], 1, None)
                if found.records and found.records[0].instance_id != newest[1]:
                    yield f"event: newer\ndata: {json.dumps(found.records[0].instance_id)}\n\n"
                    newest = None  # once is enough: the page offers a reload
            first = False
            dirty.clear()
            unknown[0] = False
            woken.clear()
            while not closing.is_set():
                waiter = asyncio.ensure_future(woken.wait())
                stopper = asyncio.ensure_future(closing.wait())
                done, _ = await asyncio.wait(
                    {waiter, stopper}, timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED
                )
                for task in (waiter, stopper):
                    task.cancel()
                if done:
                    break
                yield ": keepalive\n\n"  # no read: nothing changed
            await asyncio.sleep(MIN_GAP)  # coalesce a burst of commits into one read
    finally:
        store.remove_status_listener(wake)
        with contextlib.suppress(KeyError):
            _open_streams.remove(closing)


async def _changes(
    store: Store, ids: list[str], known: dict[str, tuple[str, int]]
) -> list[dict[str, object]]:
    if not ids:
        return []
    changes: list[dict[str, object]] = []
    if len(ids) == 1:
        record = await store.get_instance(ids[0])
        now = {} if record is None else {ids[0]: (record.status.value, record.history_len)}
    else:
        now = {i: (s.value, -1) for i, s in (await store.get_statuses(ids)).items()}
    for iid in ids:
        state = now.get(iid, ("Purged", -1))
        if known.get(iid) != state:
            known[iid] = state
            changes.append({"id": iid, "status": state[0], "history": state[1]})
    return changes
