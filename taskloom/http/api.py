"""The host's ASGI app: the management API, signed links, key management, the app's own
routes (``app.api``) and ``/openapi.json``.

Errors a client causes become 4xx with ``{"detail": "...", "Message": "...",
"ExceptionMessage": "..."}`` (the last two are the members Durable Functions' error bodies
have; its Python SDK reads ``ExceptionMessage``):
:class:`InstanceNotFoundError` 404, :class:`InvalidStateError` 410,
:class:`InstanceExistsError` 409, :class:`SerializationError`, ``ValueError`` and request
validation 400 (Durable Functions answers 400, not FastAPI's 422). A failing store is
503; anything else is logged and answered 500.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taskloom import payloads
from taskloom._version import __version__
from taskloom.errors import (
    ConfigurationError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    ScheduleNotFoundError,
    SerializationError,
    StoreError,
)
from taskloom.http import entities, links, management, metrics, topics, triggers
from taskloom.http.auth import KeyCache
from taskloom.observability import spans
from taskloom.storage.host_base import HostStore

if TYPE_CHECKING:
    from taskloom.app import App
    from taskloom.client import AsyncClient

log = logging.getLogger("taskloom.http")
access_log = logging.getLogger("taskloom.http.access")

_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (InstanceNotFoundError, 404),
    (ScheduleNotFoundError, 404),
    (InvalidStateError, 410),
    (InstanceExistsError, 409),
    (SerializationError, 400),
    (ValueError, 400),
    (StoreError, 503),
)


def create_asgi_app(
    app: App, client: AsyncClient, *, open_without_keys: bool, local: bool = False
) -> FastAPI:
    """The FastAPI app ``taskloom serve`` runs. ``open_without_keys``: admit callers
    without a key while the store holds no keys for any hub (only for hosts bound to
    loopback). ``local``: the key-free listener on loopback (``--local-port``), which
    admits callers without a key as admin, keys or not (like the Functions host's RPC
    port); a key sent to it is still checked."""
    store = client.store
    if not isinstance(store, HostStore):
        raise ConfigurationError(f"{store!r} holds no API keys; use a SQLite or PostgreSQL store")
    api = FastAPI(
        title=f"taskloom: {app.name}",
        version=__version__,
        description="The Durable Functions HTTP API for the task hub "
        f"{app.name!r}, served by taskloom.",
        docs_url="/docs",
        redoc_url=None,
    )
    api.state.taskloom_app = app
    api.state.taskloom_client = client
    api.state.taskloom_host_store = store
    api.state.taskloom_keys = KeyCache(store)
    api.state.taskloom_open = open_without_keys
    api.state.taskloom_local = local

    api.include_router(management.router)
    api.include_router(entities.router)
    api.include_router(links.router)
    api.include_router(triggers.router)
    api.include_router(topics.router)
    api.include_router(metrics.router)
    api.include_router(app.api)
    _mount_dashboard(api)

    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(Exception, _error)
    api.add_middleware(_AccessLog)
    api.openapi = lambda: _openapi(api)  # type: ignore[method-assign]
    return api


def _mount_dashboard(api: FastAPI) -> None:
    """The web dashboard at ``/dashboard/`` (it needs Jinja2, of the ``server`` extra)."""
    try:
        from taskloom.dashboard.app import mount
    except ImportError as exc:  # pragma: no cover - jinja2 missing
        log.warning("no dashboard at /dashboard/: %s (pip install 'taskloom[server]')", exc)
        return
    mount(api)


def error_body(detail: str) -> dict[str, str]:
    """An error's JSON: ``detail`` and Durable Functions' ``Message`` and
    ``ExceptionMessage`` (all three the same text)."""
    return {"detail": detail, "Message": detail, "ExceptionMessage": detail}


def _detail(exc: Exception) -> JSONResponse:
    for kind, status in _STATUS_OF:
        if isinstance(exc, kind):
            return JSONResponse(error_body(str(exc)), status_code=status)
    raise exc


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse(error_body("; ".join(problems) or "invalid request"), status_code=400)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route that matched the path only.
        headers["Allow"] = ", ".join(sorted(_methods_of(request)))
    return JSONResponse(error_body(str(exc.detail)), status_code=exc.status_code, headers=headers)


def _methods_of(request: Request) -> set[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= set(getattr(route, "methods", None) or ())
    return methods


async def _error(request: Request, exc: Exception) -> Response:
    try:
        response = _detail(exc)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, _path(request))
        return JSONResponse(error_body("internal error; see the server log"), status_code=500)
    if response.status_code == 503:
        log.error("store error in %s %s: %s", request.method, _path(request), exc)
    return response


class _AccessLog:
    """Logs every request with its status and duration: plain ASGI, not Starlette's
    ``BaseHTTPMiddleware`` (which costs a task and a stream per request). Exceptions
    that escape the handlers' own mapping (Starlette re-raises some past the exception
    handlers) are answered here, as the handlers would."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [0]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if spans.enabled():
                # A caller's traceparent makes the orchestrations it starts join its trace.
                headers = dict(scope.get("headers") or ())
                parent, state = headers.get(b"traceparent"), headers.get(b"tracestate")
                with spans.incoming(
                    parent.decode("latin-1") if parent else None,
                    state.decode("latin-1") if state else None,
                ):
                    await self.app(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        except Exception as exc:
            request = Request(scope)
            try:
                response = _detail(exc)
            except Exception:
                log.exception("unexpected error in %s %s", request.method, _path(request))
                response = JSONResponse(error_body("internal error; see the server log"), 500)
            if status[0]:
                raise  # the answer had begun; nothing sensible can follow it
            await response(scope, receive, sending)
        request = Request(scope)
        state = scope.get("state") or {}
        principal = state.get("principal")
        path = _path(request)
        access_log.info(
            "%s %s %d",
            request.method,
            path,
            status[0],
            extra={
                "method": request.method,
                "path": path,
                "status": status[0],
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "key_id": principal.key_id if principal else None,
                "instance_id": (scope.get("path_params") or {}).get("instanceId"),
            },
        )


def _path(request: Request) -> str:
    """The path without its query (which may carry ``code=KEY``) and without link tokens."""
    path = request.url.path
    marker = f"{payloads.PREFIX}/links/"
    return marker + "***" if path.startswith(marker) else path


def _openapi(api: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with validation errors as the 400s they are (not 422)."""
    if api.openapi_schema:
        return api.openapi_schema
    schema = get_openapi(
        title=api.title,
        version=api.version,
        description=api.description,
        routes=api.routes,
    )
    orchestrators = sorted(api.state.taskloom_app.orchestrators)
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", ()):
                if parameter["name"] == "functionName" and orchestrators:
                    parameter["schema"] = {"type": "string", "enum": orchestrators}
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": "The request is malformed.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components.setdefault(
        "Error",
        {
            "type": "object",
            "properties": {
                "detail": {"type": "string", "title": "Detail"},
                "Message": {"type": "string", "title": "Message"},
                "ExceptionMessage": {"type": "string", "title": "Exceptionmessage"},
            },
            "required": ["detail", "Message", "ExceptionMessage"],
            "title": "Error",
        },
    )
    api.openapi_schema = schema
    return schema
