"""FastAPI dependencies for the app's own routes (``app.api``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from taskloom.client import AsyncClient


def client(request: Request) -> AsyncClient:
    """The host's :class:`~taskloom.AsyncClient`, for route handlers::

    @app.api.post("/claims")
    async def submit(claim: dict, client: tl.AsyncClient = Depends(taskloom.http.client)):
        iid = await client.start_new("approve_claim", claim)
        return client.create_check_status_response(request, iid)
    """
    found: AsyncClient = request.app.state.taskloom_client
    return found
