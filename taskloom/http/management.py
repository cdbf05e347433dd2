"""The Durable Functions management API under ``/runtime/webhooks/durabletask/``.

Routes, query parameters, JSON field names and status codes follow the Durable Functions
HTTP API reference: start (``POST orchestrators/{name}[/{instanceId}]``), status, list,
raiseEvent, terminate, suspend, resume, rewind, restart and purge. Errors of the client
map to statuses in :mod:`taskloom.http.api`; each handler checks what Durable Functions
checks first (404 unknown, 410 finished) before reading the body. ``historyEvents`` are in
Durable Functions' shape (:mod:`taskloom.http.df_history`); ``historyFormat=taskloom``
gives taskloom's own events instead. The list and purge-by-filter routes answer with and
without the trailing slash (the Python SDK asks for ``instances/``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import Response

from taskloom import payloads
from taskloom.client import AsyncClient
from taskloom.history import event_to_dict
from taskloom.http import auth
from taskloom.http.bodies import JSON, json_body
from taskloom.http.df_history import durable_history
from taskloom.http.schemas import InstanceStatus, ManagementPayload, PurgeResult, errors
from taskloom.models import OrchestrationState, Status

log = logging.getLogger("taskloom.http")

router = APIRouter(prefix=payloads.PREFIX, tags=["management"])

_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "Any JSON value (the input or the event data); empty means null.",
        "content": {"application/json": {"schema": {}}},
    }
}
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d{1,6})?)?([Zz]|[+-]\d\d:\d\d)?$")
_STATUS_WORD = "|".join(s.value for s in Status)
_STATUS_LIST = Query(
    description="Comma-separated statuses, e.g. Running,Pending",
    pattern=rf"^\s*({_STATUS_WORD})(\s*,\s*({_STATUS_WORD}))*\s*$",
)
_TIME = Annotated[str | None, Query(json_schema_extra={"format": "date-time"})]
_OUTPUT_FIELDS = frozenset({"result"})
_VERSION = Annotated[
    str | None,
    Query(
        max_length=100, description="The orchestration's version (Durable Functions' ?version=)."
    ),
]


def _client(request: Request) -> AsyncClient:
    found: AsyncClient = request.app.state.taskloom_client
    return found


def _checked_id(instance_id: str) -> str:
    if not instance_id or len(instance_id) > 256 or any(ord(c) < 32 for c in instance_id):
        raise HTTPException(400, "an instance id is 1 to 256 characters with no control characters")
    return instance_id


def _payload_response(request: Request, instance_id: str) -> Response:
    client = _client(request)
    payload = client.create_http_management_payload(
        instance_id,
        base_url=payloads.base_url_of(request),
        code=request.query_params.get("code"),
    )
    return payloads.check_status_response(payload)  # type: ignore[no-any-return]


HistoryFormat = Literal["durable", "taskloom"]


def status_body(
    state: OrchestrationState,
    *,
    show_input: bool = True,
    show_history_output: bool = False,
    history_format: HistoryFormat = "durable",
) -> dict[str, Any]:
    """A status object; with the history, as Durable Functions shows it (``durable``) or
    as taskloom records it (``taskloom``: ``kind`` and snake_case fields)."""
    body = payloads.status_json(state, show_input=show_input)
    if state.history is not None and history_format == "durable":
        body["historyEvents"] = durable_history(
            state.history, show_history_output=show_history_output
        )
    elif state.history is not None:
        events = []
        for event in state.history:
            item = event_to_dict(event)
            for field in ("input", "result"):
                if field in item and (show_history_output or field not in _OUTPUT_FIELDS):
                    item[field] = _parsed(item[field])
                elif field in item:
                    del item[field]
            events.append(item)
        body["historyEvents"] = events
    return body


def _parsed(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return text


async def _known(client: AsyncClient, instance_id: str) -> OrchestrationState:
    state = None
    if instance_id and all(ord(c) >= 32 for c in instance_id):
        state = await client.get_status(instance_id, show_input=False)
    if state is None:
        raise HTTPException(404, f"no instance {instance_id!r} in this task hub")
    return state


def _gone_if_finished(state: OrchestrationState, what: str) -> None:
    if state.runtime_status.is_terminal:
        raise HTTPException(
            410,
            f"instance {state.instance_id!r} already finished "
            f"({state.runtime_status.value}); {what} has no effect on it",
        )


# -- starting -----------------------------------------------------------------------


@router.post(
    "/orchestrators/{functionName}",
    status_code=202,
    response_model=None,
    openapi_extra=_JSON_BODY,
    responses={202: {"model": ManagementPayload}, **errors(400, 401, 403, 409)},
    summary="Start an orchestration with a random instance id",
)
async def start(
    request: Request, functionName: str, version: _VERSION = None, _: Any = auth.write
) -> Response:
    return await _start(request, functionName, None, version)


@router.post(
    "/orchestrators/{functionName}/{instanceId}",
    status_code=202,
    response_model=None,
    openapi_extra=_JSON_BODY,
    responses={202: {"model": ManagementPayload}, **errors(400, 401, 403, 409)},
    summary="Start an orchestration with the given instance id",
)
async def start_with_id(
    request: Request,
    functionName: str,
    instanceId: str,
    version: _VERSION = None,
    _: Any = auth.write,
) -> Response:
    return await _start(request, functionName, _checked_id(instanceId), version)


async def _start(
    request: Request, name: str, instance_id: str | None, version: str | None
) -> Response:
    if name not in request.app.state.taskloom_app.orchestrators:
        raise HTTPException(400, f"no orchestrator named {name!r} is registered in this app")
    data = await json_body(request)
    iid = await _client(request).start_new(name, data, instance_id, version=version or None)
    log.info("started %s", name, extra={"instance_id": iid, "orchestrator": name})
    return _payload_response(request, iid)


# -- reading ------------------------------------------------------------------------


@router.get(
    "/instances/{instanceId}",
    response_model=None,
    responses={
        200: {"model": InstanceStatus, "description": "Completed, Failed or Terminated."},
        202: {"model": InstanceStatus, "description": "Pending, Running or Suspended."},
        **errors(400, 401, 403, 404),
    },
    summary="Get an instance's status",
)
async def get_status(
    request: Request,
    instanceId: str,
    showHistory: bool = False,
    showHistoryOutput: bool = False,
    showInput: bool = True,
    historyFormat: HistoryFormat = "durable",
    _: Any = auth.read,
) -> Response:
    state = None
    if all(ord(c) >= 32 for c in instanceId):
        state = await _client(request).get_status(
            instanceId, show_history=showHistory, show_input=showInput
        )
    if state is None:
        raise HTTPException(404, f"no instance {instanceId!r} in this task hub")
    body = status_body(
        state,
        show_input=showInput,
        show_history_output=showHistoryOutput,
        history_format=historyFormat,
    )
    if state.runtime_status.is_terminal:
        return JSON(body, status_code=200)
    return JSON(body, status_code=202, headers={"Location": str(request.url), "Retry-After": "5"})


@router.get(
    "/instances",
    response_model=None,
    responses={
        200: {
            "model": list[InstanceStatus],
            "headers": {
                "x-ms-continuation-token": {
                    "description": "Present when more pages exist; send it back to get them.",
                    "schema": {"type": "string"},
                }
            },
        },
        **errors(400, 401, 403),
    },
    summary="List instances, a page at a time",
)
@router.get("/instances/", response_model=None, include_in_schema=False)
async def list_instances(
    request: Request,
    runtimeStatus: Annotated[str | None, _STATUS_LIST] = None,
    createdTimeFrom: _TIME = None,
    createdTimeTo: _TIME = None,
    instanceIdPrefix: str | None = None,
    top: Annotated[int, Query(ge=1, le=1000)] = 100,
    showInput: bool = True,
    continuation: Annotated[str | None, Header(alias="x-ms-continuation-token")] = None,
    _: Any = auth.read,
) -> Response:
    page = await _client(request).query(
        statuses=_statuses(request.query_params.getlist("runtimeStatus") or [runtimeStatus]),
        instance_id_prefix=instanceIdPrefix or None,
        created_from=_time(createdTimeFrom),
        created_to=_time(createdTimeTo),
        page_size=top,
        continuation_token=continuation or None,
    )
    headers = {}
    if page.continuation_token:
        headers["x-ms-continuation-token"] = page.continuation_token
    body = [payloads.status_json(s, show_input=showInput) for s in page.items]
    return JSON(body, headers=headers)


def _statuses(values: Sequence[str | None]) -> list[Status] | None:
    parts = [p.strip() for v in values if v for p in v.split(",") if p.strip()]
    return [Status.parse(p) for p in parts] or None


def _time(text: str | None) -> datetime | None:
    """An RFC 3339 date-time (naive means UTC) as an aware UTC datetime; 400 otherwise."""
    if text is None:
        return None
    try:
        if not _RFC3339.match(text):
            raise ValueError(text)
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise HTTPException(
            400, f"{text!r} is not a date-time; write e.g. 2026-01-31T09:00:00Z"
        ) from None


# -- controlling --------------------------------------------------------------------


@router.post(
    "/instances/{instanceId}/raiseEvent/{eventName}",
    status_code=202,
    response_class=Response,
    openapi_extra=_JSON_BODY,
    responses={202: {"description": "The event was delivered."}, **errors(400, 401, 403, 404, 410)},
    summary="Raise an external event",
)
async def raise_event(
    request: Request, instanceId: str, eventName: str, _: Any = auth.write
) -> Response:
    client = _client(request)
    _gone_if_finished(await _known(client, instanceId), "an event")
    data = await json_body(request)
    await client.raise_event(instanceId, eventName, data)
    log.info("raised event %s", eventName, extra={"instance_id": instanceId})
    return Response(status_code=202)


_REASON = Annotated[str | None, Query(description="Why; recorded in the history.")]


def _control(operation: str, summary: str) -> None:
    async def handler(
        request: Request, instanceId: str, reason: _REASON = None, _: Any = auth.write
    ) -> Response:
        client = _client(request)
        state = await _known(client, instanceId)
        if operation == "rewind" and state.runtime_status is not Status.FAILED:
            raise HTTPException(
                410,
                f"instance {instanceId!r} is {state.runtime_status.value}; only Failed "
                "instances can be rewound",
            )
        elif operation != "rewind":
            _gone_if_finished(state, operation)
        await getattr(client, operation)(instanceId, reason)
        log.info("%s requested", operation, extra={"instance_id": instanceId})
        return Response(status_code=202)

    handler.__name__ = operation
    router.add_api_route(
        f"/instances/{{instanceId}}/{operation}",
        handler,
        methods=["POST"],
        status_code=202,
        response_class=Response,
        responses={202: {"description": "Accepted."}, **errors(400, 401, 403, 404, 410)},
        summary=summary,
    )


_control("terminate", "Terminate a running instance")
_control("suspend", "Suspend a running instance")
_control("resume", "Resume a suspended instance")
_control("rewind", "Rewind a Failed instance to re-run its failed tasks")


@router.post(
    "/instances/{instanceId}/restart",
    status_code=202,
    response_model=None,
    responses={202: {"model": ManagementPayload}, **errors(400, 401, 403, 404, 409)},
    summary="Start the instance's orchestration again with the same input",
)
async def restart(
    request: Request, instanceId: str, restartWithNewInstanceId: bool = True, _: Any = auth.write
) -> Response:
    iid = await _client(request).restart(instanceId, new_instance_id=restartWithNewInstanceId)
    log.info("restarted %s as %s", instanceId, iid, extra={"instance_id": iid})
    return _payload_response(request, iid)


# -- purging ------------------------------------------------------------------------


@router.delete(
    "/instances/{instanceId}",
    response_model=PurgeResult,
    responses=errors(400, 401, 403, 404, 412),
    summary="Purge a finished instance's history",
)
async def purge(request: Request, instanceId: str, _: Any = auth.write) -> Response:
    client = _client(request)
    state = await _known(client, instanceId)
    if not state.runtime_status.is_terminal:
        # As Durable Functions: 412 Precondition Failed for an instance not finished.
        raise HTTPException(
            412,
            f"only instances that finished can be purged; {instanceId!r} is "
            f"{state.runtime_status.value}: terminate it (or wait for it to finish) first",
        )
    deleted = await client.purge(instanceId)
    log.info("purged", extra={"instance_id": instanceId})
    return JSON({"instancesDeleted": deleted})


@router.delete(
    "/instances",
    response_model=PurgeResult,
    responses=errors(400, 401, 403, 404),
    summary="Purge finished instances created in a time range",
)
@router.delete("/instances/", response_model=PurgeResult, include_in_schema=False)
async def purge_many(
    request: Request,
    createdTimeFrom: Annotated[str, Query(json_schema_extra={"format": "date-time"})],
    createdTimeTo: _TIME = None,
    runtimeStatus: Annotated[str | None, _STATUS_LIST] = None,
    _: Any = auth.write,
) -> Response:
    deleted = await _client(request).purge_many(
        created_from=_time(createdTimeFrom),
        created_to=_time(createdTimeTo),
        statuses=_statuses(request.query_params.getlist("runtimeStatus") or [runtimeStatus]),
    )
    if deleted == 0:
        raise HTTPException(404, "no finished instance matched the filter")
    log.info("purged %d instances", deleted)
    return JSON({"instancesDeleted": deleted})
