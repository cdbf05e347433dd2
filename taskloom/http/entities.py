"""The Durable Functions entity routes under ``/runtime/webhooks/durabletask/``.

- ``GET entities/{entityName}/{entityKey}``: the entity's state as the body (200), or 404
  when it has none.
- ``POST entities/{entityName}/{entityKey}?op=OPERATION``: signal the operation, with the
  JSON body (optional) as its input; 202.
- ``GET entities/{entityName}`` and ``GET entities/``: the entities that have state, as
  Durable Functions lists them (``entityId``, ``lastOperationTime``, ``state`` with
  ``fetchState=true``), a page at a time (``top``, the ``x-ms-continuation-token``
  header), filtered by ``lastOperationTimeFrom``/``lastOperationTimeTo``.

Entity names ignore case (kept lower-cased); the key is the rest of the path and may hold
``/``; ``$`` stands for the empty key, as in Durable Functions. Durable Functions' HTTP API
has no scheduled signal, so neither has this one (``signal_entity(..., signal_at=)`` does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from taskloom import payloads
from taskloom.client import AsyncClient
from taskloom.entities.records import EntityId, EntityMetadata
from taskloom.http import auth
from taskloom.http.bodies import JSON, json_body
from taskloom.http.management import _time
from taskloom.http.schemas import Error, errors

log = logging.getLogger("taskloom.http")

router = APIRouter(prefix=payloads.PREFIX, tags=["entities"])

#: Durable Functions' stand-in for the empty key in a URL.
EMPTY_KEY = "$"
_MAX_ID = 256
_MAX_NAME = 128

_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "Any JSON value: the operation's input; empty means none (null).",
        "content": {"application/json": {"schema": {}}},
    }
}
_TIME = Annotated[
    str | None,
    Query(json_schema_extra={"format": "date-time"}, description="RFC 3339, e.g. 2026-01-31Z"),
]
_CONTINUATION = Annotated[
    str | None,
    Header(
        alias="x-ms-continuation-token",
        description="The token of the previous page's response, for the next page.",
    ),
]


class EntityKeyId(BaseModel):
    name: str = Field(description="The entity's name, lower-cased.")
    key: str


class EntityStatus(BaseModel):
    """One entity of a list (Durable Functions' ``DurableEntityStatus``)."""

    entityId: EntityKeyId
    lastOperationTime: str = Field(description="When its state last changed (UTC).")
    state: Any = Field(None, description="Its state; only with fetchState=true.")


def _client(request: Request) -> AsyncClient:
    found: AsyncClient = request.app.state.taskloom_client
    return found


def _entity_id(name: str, key: str) -> EntityId:
    """The entity of a URL's name and key; 400 (saying what is allowed) otherwise."""
    if not name or len(name) > _MAX_NAME or "@" in name or any(ord(c) < 32 for c in name):
        raise HTTPException(
            400,
            f"invalid entity name {name!r}: a name is 1 to 128 characters without '@' or "
            "control characters",
        )
    key = "" if key == EMPTY_KEY else key
    if any(ord(c) < 32 for c in key) or len(name) + len(key) + 2 > _MAX_ID:
        raise HTTPException(
            400,
            f"invalid entity key {key!r}: a key has no control characters, and name and "
            f"key together are at most {_MAX_ID - 2} characters (write $ for the empty key)",
        )
    return EntityId(name, key)


@dataclass(frozen=True)
class _ListQuery:
    """The query parameters and header of the list routes."""

    fetch_state: bool
    top: int
    time_from: str | None
    time_to: str | None
    continuation: str | None


async def _list_query(
    fetchState: bool = False,
    top: Annotated[int, Query(ge=1, le=1000)] = 100,
    lastOperationTimeFrom: _TIME = None,
    lastOperationTimeTo: _TIME = None,
    continuation: _CONTINUATION = None,
) -> _ListQuery:
    return _ListQuery(fetchState, top, lastOperationTimeFrom, lastOperationTimeTo, continuation)


_PAGE = Annotated[_ListQuery, Depends(_list_query)]

_LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": list[EntityStatus],
        "description": "The entities with state (a page may hold fewer than top).",
        "headers": {
            "x-ms-continuation-token": {
                "description": "Present when more pages exist; send it back to get them.",
                "schema": {"type": "string"},
            }
        },
    },
    **errors(400, 401, 403),
}


async def list_entities(
    request: Request, entityName: str, page: _PAGE, _: Any = auth.read
) -> Response:
    return await _list(request, entityName, page)


# ``entities/{name}/`` lists too, as in Durable Functions (the empty key is written ``$``):
# registered before the entity routes, whose ``{entityKey:path}`` would take it.
router.get("/entities/{entityName}/", response_model=None, include_in_schema=False)(list_entities)


@router.get(
    "/entities/{entityName}/{entityKey:path}",
    response_model=None,
    responses={
        200: {
            "description": "The entity's state (any JSON value).",
            "content": {"application/json": {"schema": {}}},
        },
        **errors(400, 401, 403),
        404: {"model": Error, "description": "The entity does not exist (it has no state)."},
    },
    summary="Read an entity's state",
)
async def read_entity(
    request: Request, entityName: str, entityKey: str, _: Any = auth.read
) -> Response:
    entity = _entity_id(entityName, entityKey)
    found = await _client(request).read_entity_state(entity)
    if not found.entity_exists:
        raise HTTPException(404, f"entity {entity} does not exist (it has no state)")
    return JSON(found.entity_state)


@router.post(
    "/entities/{entityName}/{entityKey:path}",
    status_code=202,
    response_class=Response,
    openapi_extra=_JSON_BODY,
    responses={202: {"description": "The operation was signalled."}, **errors(400, 401, 403)},
    summary="Signal an operation to an entity",
)
async def signal_entity(
    request: Request,
    entityName: str,
    entityKey: str,
    op: Annotated[
        str | None,
        Query(description="The operation's name (required).", min_length=1, max_length=_MAX_ID),
    ] = None,
    _: Any = auth.write,
) -> Response:
    if not entityKey:
        raise HTTPException(
            400, "no entity key in the URL: POST entities/{name}/{key}?op=... ($ for empty)"
        )
    entity = _entity_id(entityName, entityKey)
    if not op or any(ord(c) < 32 for c in op):
        raise HTTPException(
            400, "which operation? add ?op=OPERATION (e.g. ?op=add) to signal the entity"
        )
    registered = request.app.state.taskloom_app.entities
    if entity.name not in registered:
        names = ", ".join(sorted(registered)) or "none"
        raise HTTPException(
            400, f"no entity named {entity.name!r} is registered in this app (there are: {names})"
        )
    data = await json_body(request)
    await _client(request).signal_entity(entity, op, data)
    log.info("signalled %s", op, extra={"instance_id": entity.instance_id})
    return Response(status_code=202)


# ``list_entities`` (above), documented under the name without the slash.
router.get(
    "/entities/{entityName}",
    response_model=None,
    responses=_LIST_RESPONSES,
    summary="List the entities of one name, a page at a time",
)(list_entities)


@router.get(
    "/entities",
    response_model=None,
    responses=_LIST_RESPONSES,
    summary="List all entities, a page at a time",
)
@router.get("/entities/", response_model=None, include_in_schema=False)
async def list_all_entities(
    request: Request,
    page: _PAGE,
    _: Any = auth.read,
) -> Response:
    return await _list(request, None, page)


async def _list(request: Request, name: str | None, query: _ListQuery) -> Response:
    prefix = None
    if name is not None:
        # The name is whole: ``name@`` is the instance ids' prefix (names hold no '@').
        prefix = _entity_id(name, "").name + "@"
    since, until = _time(query.time_from), _time(query.time_to)
    page = await _client(request).query_entities(
        name_prefix=prefix,
        include_state=query.fetch_state,
        page_size=query.top,
        continuation_token=query.continuation or None,
    )
    items: list[EntityMetadata] = page.items  # type: ignore[assignment]
    body = [
        _status(item, query.fetch_state)
        for item in items
        if (since is None or item.last_modified >= since)
        and (until is None or item.last_modified <= until)
    ]
    headers = {}
    if page.continuation_token:
        headers["x-ms-continuation-token"] = page.continuation_token
    return JSON(body, headers=headers)


def _status(item: EntityMetadata, fetch_state: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "entityId": {"name": item.entity_id.name, "key": item.entity_id.key},
        "lastOperationTime": payloads._iso(item.last_modified),
    }
    if fetch_state:
        body["state"] = item.state
    return body
