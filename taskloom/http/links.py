"""Signed event links (no key needed) and key management (admin role).

A link made by :meth:`AsyncClient.create_event_link` raises exactly its event on exactly
its instance until it expires; the HMAC covers instance, event, data and expiry, so any
change (or a late click) gets 403. The signing secret is the store's ``event-links``
secret, which every host and client of the hub share.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from taskloom import manage, payloads, security
from taskloom.http import auth
from taskloom.http.schemas import CreatedKey, KeyInfo, NewKey, Revoked, errors
from taskloom.storage.host_base import HostStore, KeyRecord

log = logging.getLogger("taskloom.http")

router = APIRouter(prefix=payloads.PREFIX)

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; margin: 3em"><h1>{title}</h1><p>{text}</p></body></html>
"""


def _page(title: str, text: str, status: int) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), text=html.escape(text)), status_code=status
    )


def _host_store(request: Request) -> HostStore:
    store: HostStore = request.app.state.taskloom_host_store
    return store


_LINK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The event was raised.", "content": {"text/html": {}}},
    403: {"description": "The link was altered or has expired.", "content": {"text/html": {}}},
    404: {"description": "The instance no longer exists.", "content": {"text/html": {}}},
    410: {"description": "The instance already finished.", "content": {"text/html": {}}},
}


async def open_link(request: Request, token: str) -> Response:
    """Raise the link's event (GET, so a click in a mail works; POST for forms)."""
    client = request.app.state.taskloom_client
    secret = await _host_store(request).secret("event-links", security.new_secret())
    # Expiry is judged on the client's clock, the one that signed it (virtual in TestEnv).
    link = security.verify_link(token, secret, client.clock.now().timestamp())
    if link is None:
        log.info("rejected an altered or expired event link")
        return _page("Link not valid", "This link was altered or has expired.", 403)
    state = await client.get_status(link.instance_id, show_input=False)
    if state is None:
        return _page("Not found", "The workflow of this link no longer exists.", 404)
    if state.runtime_status.is_terminal:
        text = f"The workflow already finished ({state.runtime_status.value}); nothing changed."
        return _page("Already finished", text, 410)
    await client.raise_event(link.instance_id, link.event_name, link.data)
    log.info("event link raised %s", link.event_name, extra={"instance_id": link.instance_id})
    text = f"Recorded: {link.event_name} for {link.instance_id}"
    return _page("Recorded", text, 200)


for _method in ("GET", "POST"):
    router.add_api_route(
        "/links/{token}",
        open_link,
        methods=[_method],
        response_class=HTMLResponse,
        responses=_LINK_RESPONSES,
        tags=["links"],
        summary="Open a signed event link",
        operation_id=f"open_link_{_method.lower()}",
    )


# -- keys (admin) -------------------------------------------------------------------


def _key_json(record: KeyRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "createdTime": record.created_at.isoformat(),
        "revokedTime": record.revoked_at.isoformat() if record.revoked_at else None,
    }


@router.get(
    "/keys",
    response_model=list[KeyInfo],
    responses=errors(401, 403),
    tags=["keys"],
    summary="List API keys (never the keys themselves)",
)
async def list_keys(request: Request, _: Any = auth.admin) -> Response:
    records = await _host_store(request).key_list()
    return JSONResponse([_key_json(r) for r in records])


@router.post(
    "/keys",
    status_code=201,
    response_model=CreatedKey,
    responses=errors(400, 401, 403, 409),
    tags=["keys"],
    summary="Create an API key; the response holds the key, once",
)
async def create_key(request: Request, body: NewKey, _: Any = auth.admin) -> Response:
    client = request.app.state.taskloom_client
    try:
        created = await manage.create_key(client.store, body.role, body.name, client.clock.now())
    except manage.KeyNameTakenError as exc:
        raise HTTPException(409, str(exc)) from None
    request.app.state.taskloom_keys.forget()
    record = created.record
    log.info("created key %s (%s) with role %s", record.id, record.name, record.role)
    return JSONResponse({**_key_json(record), "key": created.key}, status_code=201)


@router.delete(
    "/keys/{keyId}",
    response_model=Revoked,
    responses=errors(401, 403, 404),
    tags=["keys"],
    summary="Revoke an API key",
)
async def revoke_key(request: Request, keyId: str, _: Any = auth.admin) -> Response:
    now = request.app.state.taskloom_client.clock.now()
    if not keyId.isprintable() or not await _host_store(request).key_revoke(keyId, now):
        raise HTTPException(404, f"no active key with id {keyId!r}")
    request.app.state.taskloom_keys.forget()
    log.info("revoked key %s", keyId)
    return JSONResponse({"revoked": True})
