"""The queues view: the durable queues the served app reads (its queue triggers and the
schedule queue) and any queue named in the form, each with its depth and its poison
queue's; a queue's page peeks at its messages (and the poison queue's, with each error),
and admins may redrive the poison messages back onto the queue.

Depths are peeks of at most :data:`DEPTH_LIMIT` messages, so a page never reads a huge
queue whole ("1000+" says there are more). A redrive leases up to :data:`REDRIVE_LIMIT`
poison messages, puts each body back on the queue as a new message and then deletes the
poison copy: a host killed between the two leaves the message in both, never in neither.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from taskloom.dashboard import auth, render
from taskloom.dashboard.views_common import app_of, back_to, host_store, now, path, posted
from taskloom.storage.base import AT_ONCE
from taskloom.storage.host_base import SCHEDULE_QUEUE, HostStore

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views

DEPTH_LIMIT = 1000
PEEK_LIMIT = 100
REDRIVE_LIMIT = 500
POISON = "-poison"


def register(views: Views) -> None:
    views.router.add_api_route("/queues", queues_page, methods=["GET"])
    views.router.add_api_route("/queues/{queue}", queue_page, methods=["GET"])
    views.router.add_api_route("/queues/{queue}/redrive", redrive_queue, methods=["POST"])
    views.nav("Queues", "/queues")


def _check_name(queue: str) -> str:
    queue = queue.strip()
    if not queue or len(queue) > 200:
        raise HTTPException(400, "a queue name is 1 to 200 characters")
    return queue


async def _depth(store: HostStore, queue: str) -> str:
    found = len(await store.queue_peek(queue, DEPTH_LIMIT + 1))
    return f"{DEPTH_LIMIT}+" if found > DEPTH_LIMIT else str(found)


@render.html_errors
async def queues_page(request: Request) -> Response:
    await auth.require(request)
    store = host_store(request)
    app = app_of(request)
    names = [SCHEDULE_QUEUE] if app is None or app.schedules else []
    if app is not None:
        names += sorted(t.queue for t in app.queue_triggers.values())
    asked = request.query_params.get("queue", "")
    if asked:
        names.append(_check_name(asked).removesuffix(POISON))
    rows = []
    for name in dict.fromkeys(names):
        rows.append((name, await _depth(store, name), await _depth(store, name + POISON)))
    return render.page(request, "views_queues.html", rows=rows, standalone=app is None)


@render.html_errors
async def queue_page(request: Request) -> Response:
    session = await auth.require(request)
    queue = _check_name(request.path_params["queue"]).removesuffix(POISON)
    store = host_store(request)
    return render.page(
        request,
        "views_queue.html",
        queue=queue,
        messages=await store.queue_peek(queue, PEEK_LIMIT),
        poison=await store.queue_peek(queue + POISON, PEEK_LIMIT),
        limit=PEEK_LIMIT,
        done=request.query_params.get("done", ""),
        can_admin=session.can_admin,
    )


async def redrive(store: HostStore, queue: str, now: datetime, limit: int = REDRIVE_LIMIT) -> int:
    """Move up to ``limit`` messages of ``queue``'s poison queue back onto ``queue``."""
    owner = f"dashboard-redrive-{now.timestamp()}"
    leased = await store.queue_lease([queue + POISON], now, limit, 60.0, owner)
    for message in leased:
        await store.queue_put(queue, message.body, AT_ONCE, now)
        await store.queue_ack(message.id, message.lease_token)
    return len(leased)


@render.html_errors
async def redrive_queue(request: Request) -> Response:
    await posted(request, "admin")
    queue = _check_name(request.path_params["queue"]).removesuffix(POISON)
    moved = await redrive(host_store(request), queue, now(request))
    return back_to(request, f"/queues/{path(queue)}", done=f"redrove {moved} message(s)")
