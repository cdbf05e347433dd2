"""The dashboard's routes: a router mounted at ``/dashboard`` on the host's ASGI app, or
served alone by ``taskloom dashboard`` (:func:`standalone_app`).

Each view is a module with a ``register(views: Views) -> None`` function that adds its
routes (``views.router``, paths under ``/dashboard``) and, optionally, a link in the
navigation bar (``views.nav(label, path)``). :data:`VIEW_MODULES` lists them in
navigation order; a new view is one module and one line here.
"""

from __future__ import annotations

import importlib
import mimetypes
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from taskloom.dashboard import auth, render

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.client import AsyncClient

#: The view modules, in the navigation bar's order (each has ``register(views)``).
VIEW_MODULES: tuple[str, ...] = (
    "taskloom.dashboard.instances",
    "taskloom.dashboard.detail",
    "taskloom.dashboard.actions",
    "taskloom.dashboard.sse",
    "taskloom.dashboard.bulk",
    "taskloom.dashboard.views_jobs",
    "taskloom.dashboard.views_workers",
    "taskloom.dashboard.views_schedules",
    "taskloom.dashboard.views_queues",
    "taskloom.dashboard.views_entities",
    "taskloom.dashboard.views_streams",
    "taskloom.dashboard.views_consumers",
    "taskloom.dashboard.views_keys",
)

_STATIC = render.HERE / "static"


@dataclass
class Views:
    """What a view module's ``register`` gets: the router and the navigation bar."""

    router: APIRouter
    links: list[tuple[str, str]] = field(default_factory=list)

    def nav(self, label: str, path: str) -> None:
        """Show ``label`` in the navigation bar, linking to ``/dashboard`` + ``path``."""
        self.links.append((label, path))


def build_router() -> tuple[APIRouter, list[tuple[str, str]]]:
    router = APIRouter(prefix="/dashboard", include_in_schema=False)
    views = Views(router)
    router.add_api_route("/static/{name}", _static, methods=["GET", "HEAD"])
    router.add_api_route("/signin", _signin_form, methods=["GET"])
    router.add_api_route("/signin", _signin, methods=["POST"])
    router.add_api_route("/signout", _signout, methods=["POST"])
    for name in VIEW_MODULES:
        importlib.import_module(name).register(views)
    return router, views.links


def mount(api: FastAPI) -> None:
    """Serve the dashboard at ``/dashboard/`` on the host's app ``api``."""
    router, links = build_router()
    api.state.dashboard_nav = links
    api.include_router(router)
    api.add_api_route("/dashboard", _to_dashboard, methods=["GET"], include_in_schema=False)


def standalone_app(
    client: AsyncClient, *, open_without_keys: bool, app: App | None = None
) -> FastAPI:
    """The dashboard alone on ``client``'s store (``taskloom dashboard``); with ``app``
    it can replay the app's orchestrators (``--app``), as inside ``taskloom serve``."""
    from taskloom.errors import ConfigurationError
    from taskloom.http.auth import KeyCache
    from taskloom.storage.host_base import HostStore

    store = client.store
    if not isinstance(store, HostStore):
        raise ConfigurationError(f"{store!r} holds no API keys; use a SQLite or PostgreSQL store")
    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    api.state.taskloom_app = app
    api.state.taskloom_client = client
    api.state.taskloom_host_store = store
    api.state.taskloom_keys = KeyCache(store)
    api.state.taskloom_open = open_without_keys
    api.state.taskloom_local = False
    mount(api)
    api.add_api_route("/", _to_dashboard, methods=["GET"], include_in_schema=False)
    return api


async def _to_dashboard(request: Request) -> Response:
    return RedirectResponse(render.base_path(request) + "/", status_code=307)


_FILES = {p.name: p for p in _STATIC.iterdir() if p.is_file()} if _STATIC.is_dir() else {}


async def _static(request: Request) -> Response:
    name = request.path_params["name"]
    path = _FILES.get(name)
    if path is None:
        return render.secured(Response("no such file", status_code=404, media_type="text/plain"))
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind == "application/javascript":
        kind += "; charset=utf-8"
    response = Response(path.read_bytes(), media_type=kind)
    render.secured(response)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@render.html_errors
async def _signin_form(request: Request) -> Response:
    token = await auth.csrf_token(request, "anon")
    return render.page(request, "signin.html", csrf=token, problem=None)


@render.html_errors
async def _signin(request: Request) -> Response:
    form = await render.form_of(request, limit=10_000)
    expected = await auth.csrf_token(request, "anon")
    if form.get(auth.CSRF_FIELD) != expected:
        return render.page(
            request,
            "signin.html",
            status=403,
            csrf=expected,
            problem="The form was stale (or came from another site): try again.",
        )
    if request.url.scheme == "http" and auth.secure_cookies(request):
        return render.page(
            request,
            "signin.html",
            status=400,
            csrf=expected,
            problem="This page came over plain http to an address other than loopback, so "
            "the browser would not keep the (Secure) sign-in cookie and your key would cross "
            "the network unencrypted. Serve the dashboard over https (e.g. behind a TLS "
            "proxy), or open it on http://127.0.0.1.",
        )
    key = form.get("key", "").strip()
    if not key:
        return render.page(
            request, "signin.html", status=400, csrf=expected, problem="Paste an API key."
        )
    record = await auth.key_cache(request).lookup(key)
    if record is None:
        return render.page(
            request,
            "signin.html",
            status=401,
            csrf=expected,
            problem="Unknown or revoked API key: check it, or ask an admin for a new one "
            "(taskloom keys create --role reader).",
        )
    response = RedirectResponse(render.base_path(request) + "/", status_code=303)
    auth.set_key(request, response, key)
    return render.secured(response)


@render.html_errors
async def _signout(request: Request) -> Response:
    session = await auth.require(request)
    auth.check_csrf(request, session, await render.form_of(request, limit=10_000))
    response = RedirectResponse(render.base_path(request) + "/signin", status_code=303)
    auth.set_key(request, response, None)
    return render.secured(response)
