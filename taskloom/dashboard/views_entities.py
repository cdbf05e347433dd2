"""The entities view: the hub's entities that hold state, by entity name prefix, a
keyset page at a time, with a preview of each state; an entity's page shows its whole
state. States are shown as stored (JSON text), so a class this process cannot import
still displays."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from taskloom.dashboard import auth, render
from taskloom.dashboard.views_common import store
from taskloom.entities.records import EntityId
from taskloom.models import Status
from taskloom.storage.base import InstanceQuery

if TYPE_CHECKING:
    from taskloom.dashboard.app import Views

PAGE_SIZE = 50


def register(views: Views) -> None:
    views.router.add_api_route("/entities", entities_page, methods=["GET"])
    views.router.add_api_route("/entities/{instance_id:path}", entity_page, methods=["GET"])
    views.nav("Entities", "/entities")


@render.html_errors
async def entities_page(request: Request) -> Response:
    await auth.require(request)
    prefix = request.query_params.get("name", "").strip()
    if "@" in prefix or len(prefix) > 200:
        raise HTTPException(400, "an entity name prefix has no '@' and at most 200 characters")
    after = request.query_params.get("after") or None
    query = InstanceQuery(
        statuses=frozenset({Status.RUNNING}), instance_id_prefix="@" + prefix.lower()
    )
    try:
        found = await store(request).query_instances(query, PAGE_SIZE, after)
    except ValueError as exc:
        raise HTTPException(400, f"the page link is not valid ({exc}); open page 1") from exc
    rows = [
        (EntityId.from_instance_id(r.instance_id), r)
        for r in found.records
        if r.custom_status is not None
    ]
    token = found.continuation_token
    return render.page(
        request,
        "views_entities.html",
        rows=rows,
        name=prefix,
        next_link=render.query_string({"name": prefix, "after": token}) if token else None,
        first_link=render.query_string({"name": prefix}) if after else None,
    )


@render.html_errors
async def entity_page(request: Request) -> Response:
    await auth.require(request)
    iid = request.path_params["instance_id"]
    record = await store(request).get_instance(iid) if iid.startswith("@") else None
    if record is None:
        raise HTTPException(404, f"no entity {iid!r} in this hub (ids look like @name@key)")
    return render.page(
        request, "views_entity.html", entity=EntityId.from_instance_id(iid), record=record
    )
