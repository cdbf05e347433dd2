"""The API keys view, for admins only: the hub's keys (id, name, role, created,
revoked; never a hash), a form to create one (the new key is shown once, on the page
the form returns, and never stored or logged) and a revoke button per key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from taskloom import manage, security
from taskloom.dashboard import auth, render
from taskloom.dashboard.views_common import back_to, managed_store, now, posted

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views

_MAX_NAME = 100


def register(views: Views) -> None:
    views.router.add_api_route("/keys", keys_page, methods=["GET"])
    views.router.add_api_route("/keys", create_key, methods=["POST"])
    views.router.add_api_route("/keys/{key_id}/revoke", revoke_key, methods=["POST"])
    views.nav("Keys", "/keys")


def _forget(request: Request) -> None:
    request.app.state.taskloom_keys.forget()


async def _page(request: Request, created: manage.CreatedKey | None, status: int = 200) -> Response:
    keys = await manage.list_keys(managed_store(request))
    return render.page(
        request,
        "views_keys.html",
        status=status,
        keys=sorted(keys, key=lambda k: (k.revoked_at is not None, k.created_at)),
        roles=security.ROLES,
        created=created,
        done=request.query_params.get("done", ""),
    )


@render.html_errors
async def keys_page(request: Request) -> Response:
    await auth.require(request, "admin")
    return await _page(request, None)


@render.html_errors
async def create_key(request: Request) -> Response:
    _, form = await posted(request, "admin")
    role = form.get("role", "")
    name = form.get("name", "").strip() or None
    if name is not None and (len(name) > _MAX_NAME or not name.isprintable()):
        raise ValueError(f"a key name is at most {_MAX_NAME} printable characters")
    try:
        security.check_role(role)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    created = await manage.create_key(managed_store(request), role, name, now(request))
    _forget(request)
    return await _page(request, created, status=201)


@render.html_errors
async def revoke_key(request: Request) -> Response:
    session, _ = await posted(request, "admin")
    key_id = request.path_params["key_id"]
    await manage.revoke_key(managed_store(request), key_id, now(request))
    _forget(request)
    mine = " (yours: sign in again with another key)" if key_id == session.principal.key_id else ""
    return back_to(request, "/keys", done=f"revoked {key_id}{mine}")
