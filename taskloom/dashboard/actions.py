"""The dashboard's actions: start, raise event, terminate, suspend, resume, rewind,
restart, purge. Each is a POST form carrying the session's CSRF token, checked against the
role (``write``: contributors and admins) and carried out through the same
:class:`~taskloom.AsyncClient` methods the HTTP API calls, then redirected back (303) so a
reload does not repeat it. A reader's forged POST gets 403, a client's mistake (bad JSON,
an instance in the wrong state) a page that says what to do.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from taskloom.dashboard import auth, render

if TYPE_CHECKING:
    from taskloom.client import AsyncClient
    from taskloom.dashboard.app import Views

ACTIONS = ("start", "raise-event", "terminate", "suspend", "resume", "rewind", "restart", "purge")


def register(views: Views) -> None:
    views.router.add_api_route("/actions/{action}", act, methods=["POST"])


def _json(text: str, what: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise HTTPException(
            400, f'{what} is not valid JSON ({exc}); write strings in quotes: "text"'
        ) from exc


def _required(form: dict[str, str], name: str, what: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise HTTPException(400, f"{what} is required")
    return value


@render.html_errors
async def act(request: Request) -> Response:
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}; the actions are: {', '.join(ACTIONS)}")
    session = await auth.require(request)
    form = await render.form_of(request)
    auth.check_csrf(request, session, form)
    session = await auth.require(request, "write")
    client: AsyncClient = request.app.state.taskloom_client
    reason = form.get("reason") or None
    base = render.base_path(request)
    iid = ""
    if action == "start":
        name = _required(form, "name", "the orchestration name")
        iid = await client.start_new(
            name,
            _json(form.get("input", ""), "the input"),
            form.get("instance_id", "").strip() or None,
            version=form.get("version", "").strip() or None,
        )
    else:
        iid = _required(form, "id", "the instance id")
        if action == "raise-event":
            event = _required(form, "event", "the event name")
            await client.raise_event(iid, event, _json(form.get("data", ""), "the event data"))
        elif action == "terminate":
            await client.terminate(iid, reason)
        elif action == "suspend":
            await client.suspend(iid, reason)
        elif action == "resume":
            await client.resume(iid, reason)
        elif action == "rewind":
            await client.rewind(iid, reason)
        elif action == "restart":
            iid = await client.restart(iid, new_instance_id=form.get("same_id") != "1")
        elif action == "purge":
            await client.purge(iid)
            return render.secured(RedirectResponse(base + "/", status_code=303))
    target = f"{base}/instances/{quote(iid, safe='')}"
    return render.secured(RedirectResponse(target, status_code=303))
