"""Schedules and queues over HTTP, beside the management API.

``GET schedules`` (read); ``POST schedules/{name}/pause|resume|trigger`` (write; 404 for
a name the hub does not hold); ``POST queues/{queue}/messages`` puts a JSON message,
optionally delayed (write); ``GET queues/{queue}/messages`` peeks without leasing (read).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from taskloom import payloads
from taskloom.client import AsyncClient
from taskloom.http import auth
from taskloom.http.bodies import JSON, json_body
from taskloom.http.schemas import errors

router = APIRouter(prefix=payloads.PREFIX, tags=["schedules and queues"])

_NAME = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]


class ScheduleInfo(BaseModel):
    name: str
    spec: str
    nextTick: str
    paused: bool
    lastTick: str | None = None


class QueuedMessage(BaseModel):
    id: int
    queue: str
    body: Any = None
    dequeueCount: int
    insertedTime: str
    error: str | None = None


def _client(request: Request) -> AsyncClient:
    found: AsyncClient = request.app.state.taskloom_client
    return found


@router.get("/schedules", response_model=list[ScheduleInfo], responses=errors(401, 403))
async def list_schedules(request: Request, _: Any = auth.read) -> Response:
    """The hub's schedules with their next tick."""
    records = await _client(request).list_schedules()
    return JSON(
        [
            {
                "name": r.name,
                "spec": r.spec,
                "nextTick": r.next_tick.isoformat(),
                "paused": r.paused,
                "lastTick": r.last_tick.isoformat() if r.last_tick else None,
            }
            for r in records
        ]
    )


@router.post(
    "/schedules/{name}/{action}",
    status_code=202,
    responses=errors(400, 401, 403, 404),
    summary="Pause, resume or trigger a schedule",
)
async def control_schedule(
    request: Request,
    name: _NAME,
    action: Annotated[str, Path(pattern="^(pause|resume|trigger)$")],
    _: Any = auth.write,
) -> Response:
    client = _client(request)
    if action == "pause":
        await client.pause_schedule(name)
        return JSON({"name": name, "paused": True}, status_code=202)
    if action == "resume":
        next_tick = await client.resume_schedule(name)
        return JSON({"name": name, "paused": False, "nextTick": next_tick.isoformat()}, 202)
    message_id = await client.trigger_schedule(name)
    return JSON({"name": name, "messageId": message_id}, status_code=202)


@router.post(
    "/queues/{queue}/messages",
    status_code=202,
    responses=errors(400, 401, 403),
    summary="Put a JSON message on a durable queue",
    openapi_extra={
        "requestBody": {
            "required": False,
            "description": "Any JSON value; an empty body puts null.",
            "content": {"application/json": {"schema": {}}},
        }
    },
)
async def put_message(
    request: Request,
    queue: _NAME,
    delaySeconds: Annotated[float, Query(ge=0, le=366 * 86400)] = 0,
    _: Any = auth.write,
) -> Response:
    message = await json_body(request)
    delay = timedelta(seconds=delaySeconds) if delaySeconds else None
    message_id = await _client(request).enqueue(queue, message, delay=delay)
    return JSON({"id": message_id, "queue": queue}, status_code=202)


@router.get(
    "/queues/{queue}/messages",
    response_model=list[QueuedMessage],
    responses=errors(400, 401, 403),
)
async def peek_messages(
    request: Request,
    queue: _NAME,
    top: Annotated[int, Query(ge=1, le=1000)] = 100,
    _: Any = auth.read,
) -> Response:
    """Messages waiting on ``queue`` (including poison queues), without leasing them."""
    found = await _client(request).peek_queue(queue, top)
    return JSON(
        [
            {
                "id": m.id,
                "queue": m.queue,
                "body": json.loads(m.body),
                "dequeueCount": m.dequeue_count,
                "insertedTime": m.inserted_at.isoformat(),
                "error": m.error,
            }
            for m in found
        ]
    )
