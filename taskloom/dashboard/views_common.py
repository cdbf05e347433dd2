"""What the operational views (workers, schedules, queues, entities, streams, consumers,
keys, jobs) share: the request's client, store and app, and the redirect after a form."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from taskloom.dashboard import auth, render
from taskloom.storage.host_base import HostStore

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.client import AsyncClient
    from taskloom.storage.base import Store


def client(request: Request) -> AsyncClient:
    found: AsyncClient = request.app.state.taskloom_client
    return found


def now(request: Request) -> datetime:
    """The host's time (its client's clock: virtual under ``TestEnv``)."""
    return client(request).clock.now()


def store(request: Request) -> Store:
    return client(request).store


def host_store(request: Request) -> HostStore:
    found = store(request)
    if not isinstance(found, HostStore):
        raise HTTPException(501, "this store keeps no schedules, queues or keys")
    return found


def managed_store(request: Request) -> Store:
    """The store, for :mod:`taskloom.manage` calls; 501 if it keeps no schedules or keys."""
    host_store(request)
    return store(request)


def app_of(request: Request) -> App | None:
    """The served app (None for ``taskloom dashboard`` alone, which has no code)."""
    found: App | None = getattr(request.app.state, "taskloom_app", None)
    return found


def path(name: str) -> str:
    """``name`` quoted for one path segment."""
    return quote(name, safe="")


def back_to(request: Request, where: str, **flash: Any) -> Response:
    """303 to ``/dashboard`` + ``where`` (after a form, or to open what a GET form
    named), with ``flash`` as query text."""
    target = render.base_path(request) + where
    if flash:
        target += "?" + render.query_string(flash)
    return render.secured(RedirectResponse(target, status_code=303))


async def posted(request: Request, permission: str) -> tuple[auth.Session, dict[str, str]]:
    """The session (with ``permission``) and the form of a POST, CSRF checked."""
    session = await auth.require(request, permission)
    form = await render.form_of(request, limit=20_000)
    auth.check_csrf(request, session, form)
    return session, form
