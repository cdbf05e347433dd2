"""The consumers view: the event log's projections and subscriptions (position, lag
behind the log's head, partitions and their owners, parked events, the failing event and
its last error) and the topics' subscriptions (lag in events not fanned out yet, pending
deliveries, dead letters, next due). Both come from the status calls the CLI uses; the
page reads state rows only, not the log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from taskloom.dashboard import auth, render
from taskloom.dashboard.views_common import client

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views


def register(views: Views) -> None:
    views.router.add_api_route("/consumers", consumers_page, methods=["GET"])
    views.nav("Consumers", "/consumers")


@render.html_errors
async def consumers_page(request: Request) -> Response:
    await auth.require(request)
    c = client(request)
    return render.page(
        request,
        "views_consumers.html",
        consumers=await c.events.consumers(),
        topics=await c.subscriptions(),
    )
