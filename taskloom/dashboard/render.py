"""Pages: the Jinja2 environment (autoescaping every value), the security headers every
dashboard response carries, HTML error pages, and form parsing.

Every value reaches a page through Jinja2's autoescape, so an instance named
``<script>alert(1)</script>`` is shown as text; pages have no inline scripts or styles, and
the Content-Security-Policy forbids them, so even a value that escaped escaping would not run.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from taskloom.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    ScheduleNotFoundError,
    SerializationError,
    StoreError,
)

HERE = Path(__file__).parent

#: No inline script or style anywhere; scripts, styles, fetches and forms to this origin only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (InstanceNotFoundError, 404),
    (ScheduleNotFoundError, 404),
    (InvalidStateError, 409),
    (InstanceExistsError, 409),
    (SerializationError, 400),
    (ValueError, 400),
    (StoreError, 503),
)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _preview(text: str | None, limit: int = 200) -> str:
    if text is None:
        return ""
    return text if len(text) <= limit else text[:limit] + "…"


def _pretty(text: str | None) -> str:
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["when"] = _when
env.filters["preview"] = _preview
env.filters["pretty"] = _pretty
env.filters["pathquote"] = lambda text: quote(str(text), safe="")


def secured(response: Response) -> Response:
    """``response`` with the dashboard's security headers."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with ``context`` (plus the request's session, if any)."""
    session = getattr(request.state, "dashboard_session", None)
    text = env.get_template(template).render(
        request=request, session=session, base=base_path(request), **context
    )
    response = HTMLResponse(text, status_code=status)
    secured(response)
    sid = getattr(request.state, "dashboard_new_sid", None)
    if sid is not None:
        from taskloom.dashboard.auth import set_sid

        set_sid(request, response, sid)
    return response


def base_path(request: Request) -> str:
    """Where the dashboard is mounted (``/dashboard``)."""
    return str(request.scope.get("root_path", "")) + "/dashboard"


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return page(request, "error.html", status=status, status_code=status, message=message)


def status_of(exc: Exception) -> int | None:
    for kind, status in _STATUS_OF:
        if isinstance(exc, kind):
            return status
    return None


Handler = Callable[[Request], Awaitable[Response]]


def html_errors(handler: Handler) -> Handler:
    """Answer a client's mistake (a wrong id, a bad filter, a refused role) with an HTML
    page saying what was wrong, never a 500; an unexpected error is logged and a plain
    500 page says to see the server log."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except HTTPException as exc:
            if exc.status_code == 401 and request.method == "GET":
                from starlette.responses import RedirectResponse

                signin = RedirectResponse(base_path(request) + "/signin", status_code=303)
                return secured(signin)
            return error_page(request, exc.status_code, str(exc.detail))
        except Exception as exc:
            status = status_of(exc)
            if status is None:
                import logging

                logging.getLogger("taskloom.dashboard").exception(
                    "unexpected error in %s %s", request.method, request.url.path
                )
                return error_page(request, 500, "internal error; see the server log")
            return error_page(request, status, str(exc))

    return wrapped


async def form_of(request: Request, limit: int = 1_000_000) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (last value wins)."""
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(413, f"form too large ({len(body)} bytes; at most {limit})")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError as exc:
        raise HTTPException(400, "the form is not UTF-8 text") from exc
    return {k: v[-1] for k, v in fields.items()}


def query_string(params: dict[str, Any]) -> str:
    """``params`` without empty values, URL-encoded (for links that keep the filters)."""
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return urlencode(kept, doseq=True)
