"""The client RPCs of ``TaskHubSidecarService``, on taskloom's own client and store.

Each handler takes the caller's :class:`~taskloom.grpc.hubs.Hub`, the request and the
call's context, and returns the response message; :data:`CLIENT_RPCS` gives each RPC
its handler and the permission it needs, and the servicer installs them. Handlers call
:class:`~taskloom.client.AsyncClient` (the same code paths as the Python client and the
HTTP API), the request's JSON payloads passed through as text.

Mistakes get a status and a message saying what to do (taskloom's errors are mapped by
:func:`taskloom.grpc.base.status_of`): an unknown instance NOT_FOUND, an instance in the
wrong state FAILED_PRECONDITION, a malformed request INVALID_ARGUMENT, an id taken by a
running instance ALREADY_EXISTS. Reads of an unknown instance (GetInstance and the two
waits) answer ``exists=False``, which the SDKs turn into ``None``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from durabletask.internal import orchestrator_service_pb2 as pb

from taskloom import history as h
from taskloom import manage
from taskloom.entities.records import is_entity_id
from taskloom.errors import InstanceNotFoundError
from taskloom.grpc import client_convert as cv
from taskloom.grpc import convert
from taskloom.grpc.base import Handler, StreamHandler
from taskloom.grpc.client_purge import purge_instances
from taskloom.grpc.entity_messages import EntityEvents
from taskloom.grpc.hubs import Hub, RpcError, invalid, not_found, precondition
from taskloom.storage.base import STATUS, InstanceQuery, InstanceRecord
from taskloom.versioning import check_version

#: Pages of QueryInstances and ListInstanceIds hold at most this many instances (the
#: SDK asks for 2**31 - 1 and follows the continuation token).
MAX_PAGE = 1000
#: ListInstanceIds pages without a pageSize.
DEFAULT_PAGE = 100
#: History events per StreamInstanceHistory chunk.
HISTORY_CHUNK = 100
#: How long RewindInstance waits for a worker to take the rewind.
REWIND_WAIT = 10.0
#: How long a wait without a gRPC deadline may block (a day; clients set deadlines).
_NO_DEADLINE = 86400.0


def _instance_id(request: Any) -> str:
    iid: str = request.instanceId
    if not iid:
        raise invalid("instanceId is empty: name the orchestration instance to act on")
    return iid


# -- starting --------------------------------------------------------------------------


async def start_instance(
    hub: Hub, request: pb.CreateInstanceRequest, context: Any
) -> pb.CreateInstanceResponse:
    """StartInstance: a new instance, with version, tags, scheduled start and the
    caller's trace context on its ``ExecutionStarted``. An id taken by a finished
    instance replaces it (as taskloom's clients do) unless the request's
    ``orchestrationIdReusePolicy`` leaves that status out; a running one is never
    replaced (ALREADY_EXISTS)."""
    if not request.name:
        raise invalid("name is empty: give the name the orchestrator was registered with")
    client = hub.client
    iid = request.instanceId or uuid.uuid4().hex
    start_at = cv.optional_time(request, "scheduledStartTimestamp")
    text = cv.optional_text(request, "input")
    version = check_version(cv.optional_text(request, "version")) or client.default_version
    new = client._new_instance(request.name, text, iid, start_at, version)
    if request.HasField("orchestrationIdReusePolicy"):
        await _check_reuse(hub, iid, request.orchestrationIdReusePolicy)
    started = new.start.event
    assert isinstance(started, h.ExecutionStarted)
    trace = request.parentTraceContext if request.HasField("parentTraceContext") else None
    event = dataclasses.replace(
        started,
        tags=dict(request.tags) or None,
        trace_parent=(trace.traceParent or None) if trace is not None else None,
        trace_state=cv.optional_text(trace, "traceState") if trace is not None else None,
    )
    new = dataclasses.replace(new, start=dataclasses.replace(new.start, event=event))
    await (await client._ready()).create_instance(new)
    return pb.CreateInstanceResponse(instanceId=iid)


async def _check_reuse(hub: Hub, iid: str, policy: pb.OrchestrationIdReusePolicy) -> None:
    replaceable = cv.statuses(policy.replaceableStatus)
    if replaceable is None:
        return  # no statuses listed: the default (finished instances are replaced)
    record = await hub.store.get_instance(iid)
    if record is None:
        return
    if record.status not in replaceable:
        raise RpcError(
            grpc.StatusCode.ALREADY_EXISTS,
            f"instance {iid!r} exists ({record.status.value}) and the request's "
            "orchestrationIdReusePolicy does not list that status as replaceable",
        )
    if not record.status.is_terminal:
        raise RpcError(
            grpc.StatusCode.ALREADY_EXISTS,
            f"instance {iid!r} is {record.status.value}; taskloom replaces only finished "
            "instances: terminate it first, then start it again",
        )


# -- reading ---------------------------------------------------------------------------


async def _tags(hub: Hub, records: Sequence[InstanceRecord]) -> dict[str, dict[str, str]]:
    """The tags of each record's execution (kept on its ``ExecutionStarted``)."""
    if not records:
        return {}
    starts = await hub.store.load_start_events([r.instance_id for r in records])
    return {iid: start.tags for iid, start in starts.items() if start.tags}


async def _found(
    hub: Hub, record: InstanceRecord | None, with_payloads: bool
) -> pb.GetInstanceResponse:
    if record is None:
        return pb.GetInstanceResponse(exists=False)
    tags = (await _tags(hub, [record])).get(record.instance_id)
    state = cv.instance_state(record, with_payloads, tags)
    return pb.GetInstanceResponse(exists=True, orchestrationState=state)


async def get_instance(
    hub: Hub, request: pb.GetInstanceRequest, context: Any
) -> pb.GetInstanceResponse:
    record = await hub.store.get_instance(_instance_id(request))
    return await _found(hub, record, request.getInputsAndOutputs)


def _deadline(context: Any) -> float:
    remaining = context.time_remaining() if context is not None else None
    return _NO_DEADLINE if remaining is None else max(remaining, 0.0)


async def _wait(hub: Hub, request: pb.GetInstanceRequest, context: Any, start: bool) -> Any:
    iid = _instance_id(request)
    client = hub.client
    try:
        if start:
            await client.wait_for_start(iid, timeout=_deadline(context))
        else:
            await client.wait_for_completion(iid, timeout=_deadline(context))
    except InstanceNotFoundError:
        return pb.GetInstanceResponse(exists=False)
    except TimeoutError as exc:
        raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)) from None
    # Read again: the watcher's record may predate a payload written in the same commit.
    return await _found(hub, await hub.store.get_instance(iid), request.getInputsAndOutputs)


async def wait_for_instance_start(
    hub: Hub, request: pb.GetInstanceRequest, context: Any
) -> pb.GetInstanceResponse:
    """Block until the instance left Pending, woken by the store's change notifications
    (no polling), or until the call's deadline (DEADLINE_EXCEEDED)."""
    result: pb.GetInstanceResponse = await _wait(hub, request, context, start=True)
    return result


async def wait_for_instance_completion(
    hub: Hub, request: pb.GetInstanceRequest, context: Any
) -> pb.GetInstanceResponse:
    """Block until the instance completed, failed or was terminated (or the deadline)."""
    result: pb.GetInstanceResponse = await _wait(hub, request, context, start=False)
    return result


def _page_size(requested: int, default: int) -> int:
    if requested < 0:
        raise invalid(f"page size must not be negative, got {requested}")
    return min(requested or default, MAX_PAGE)


async def query_instances(
    hub: Hub, request: pb.QueryInstancesRequest, context: Any
) -> pb.QueryInstancesResponse:
    """QueryInstances: a page of orchestrations (entities left out) oldest first, with
    the store's keyset continuation token."""
    q = request.query
    token = cv.optional_text(q, "continuationToken") or None
    prefix = cv.optional_text(q, "instanceIdPrefix") or None
    query = InstanceQuery(
        statuses=cv.statuses(q.runtimeStatus),
        instance_id_prefix=prefix,
        created_from=cv.optional_time(q, "createdTimeFrom"),
        created_to=cv.optional_time(q, "createdTimeTo"),
    )
    found = await hub.store.query_instances(query, _page_size(q.maxInstanceCount, MAX_PAGE), token)
    records = [r for r in found.records if not is_entity_id(r.instance_id)]
    tags = await _tags(hub, records)  # one more read per page
    states = [
        cv.instance_state(r, q.fetchInputsAndOutputs, tags.get(r.instance_id)) for r in records
    ]
    return pb.QueryInstancesResponse(
        orchestrationState=states, continuationToken=cv.text(found.continuation_token)
    )


async def list_instance_ids(
    hub: Hub, request: pb.ListInstanceIdsRequest, context: Any
) -> pb.ListInstanceIdsResponse:
    """ListInstanceIds: ids of finished orchestrations, optionally by status and
    completion time, a page at a time. ``lastInstanceKey`` is ``<store keyset
    token>:<id of the page's last instance>`` (the store's tokens are URL-safe base64,
    without ``:``). The completion-time filter applies within each page, so a page may
    hold fewer ids than asked for while more follow."""
    wanted = cv.statuses(request.runtimeStatus)
    terminal = manage.TERMINAL if wanted is None else wanted & manage.TERMINAL
    done_from = cv.optional_time(request, "completedTimeFrom")
    done_to = cv.optional_time(request, "completedTimeTo")
    token = (cv.optional_text(request, "lastInstanceKey") or "").partition(":")[0] or None
    if not terminal:
        return pb.ListInstanceIdsResponse()
    query = InstanceQuery(statuses=frozenset(terminal))
    found = await hub.store.query_instances(
        query, _page_size(request.pageSize, DEFAULT_PAGE), token
    )
    ids = [
        r.instance_id
        for r in found.records
        if not is_entity_id(r.instance_id)
        and (done_from is None or (r.completed_at is not None and r.completed_at >= done_from))
        and (done_to is None or (r.completed_at is not None and r.completed_at < done_to))
    ]
    key = None
    if found.continuation_token is not None:
        key = f"{found.continuation_token}:{found.records[-1].instance_id}"
    return pb.ListInstanceIdsResponse(instanceIds=ids, lastInstanceKey=cv.text(key))


async def stream_instance_history(
    hub: Hub, request: pb.StreamInstanceHistoryRequest, context: Any
) -> AsyncIterator[pb.HistoryChunk]:
    """StreamInstanceHistory: the stored history in chunks of :data:`HISTORY_CHUNK`."""
    iid = _instance_id(request)
    record = await hub.store.get_instance(iid)
    if record is None:
        raise not_found(f"no instance {iid!r} in hub {hub.name!r}; check the id and the hub")
    execution = cv.optional_text(request, "executionId")
    if execution and execution != record.execution_id:
        raise not_found(
            f"instance {iid!r} has no execution {execution!r}: its history holds the current "
            f"execution {record.execution_id!r} only (earlier ones continued as new)"
        )
    history = await hub.store.get_history(iid)
    entity_events = EntityEvents(history)  # entity calls and replies as entity events
    events = [entity_events.to_pb(e) or convert.history_event(e) for e in history]
    for start in range(0, len(events), HISTORY_CHUNK):
        yield pb.HistoryChunk(events=events[start : start + HISTORY_CHUNK])


# -- controlling -----------------------------------------------------------------------


def _json_value(text: str | None) -> Any:
    """A payload's value (terminate reasons are kept as values and encoded once by the
    orchestration that ends); text that is not JSON stays a string."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


async def raise_event(
    hub: Hub, request: pb.RaiseEventRequest, context: Any
) -> pb.RaiseEventResponse:
    iid = _instance_id(request)
    if not request.name:
        raise invalid("name is empty: give the name of the event the orchestration waits for")
    client = hub.client
    event = h.EventRaised(
        client.clock.now(), name=request.name, input=cv.optional_text(request, "input")
    )
    await client._send(iid, event)
    return pb.RaiseEventResponse()


async def terminate_instance(
    hub: Hub, request: pb.TerminateRequest, context: Any
) -> pb.TerminateResponse:
    """Terminate (its running sub-orchestrations too with ``recursive``); the output
    becomes the instance's output."""
    iid = _instance_id(request)
    reason = _json_value(cv.optional_text(request, "output"))
    await hub.client.terminate(iid, reason, recursive=request.recursive)
    return pb.TerminateResponse()


async def suspend_instance(
    hub: Hub, request: pb.SuspendRequest, context: Any
) -> pb.SuspendResponse:
    iid = _instance_id(request)
    await hub.client.suspend(iid, cv.optional_text(request, "reason"))
    return pb.SuspendResponse()


async def resume_instance(hub: Hub, request: pb.ResumeRequest, context: Any) -> pb.ResumeResponse:
    iid = _instance_id(request)
    await hub.client.resume(iid, cv.optional_text(request, "reason"))
    return pb.ResumeResponse()


async def rewind_instance(
    hub: Hub, request: pb.RewindInstanceRequest, context: Any
) -> pb.RewindInstanceResponse:
    """Rewind a Failed instance (FAILED_PRECONDITION for any other status).

    The call returns once a worker has taken the rewind (the instance's row changed), or
    after :data:`REWIND_WAIT` seconds (or the call's deadline) without one, so that a
    wait for completion right after it (what the SDKs' callers do) waits for the
    rewound run instead of answering with the old failure at once."""
    iid = _instance_id(request)
    before = await hub.client._require(iid)
    await hub.client.rewind(iid, cv.optional_text(request, "reason"))
    limit = min(REWIND_WAIT, _deadline(context))
    await _wait_for_change(hub, before, limit)
    return pb.RewindInstanceResponse()


async def _wait_for_change(hub: Hub, before: InstanceRecord, timeout: float) -> None:
    """Return when ``before``'s row was updated, woken by the store's status
    notifications (from any process); or after ``timeout`` seconds."""
    store = hub.store
    changed = asyncio.Event()
    store.add_listener(changed.set, STATUS)
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while True:
            changed.clear()
            now = await store.get_instance(before.instance_id)
            if now is None or now.updated_at != before.updated_at:
                return
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, 1.0))
    finally:
        store.remove_listener(changed.set)


async def restart_instance(
    hub: Hub, request: pb.RestartInstanceRequest, context: Any
) -> pb.RestartInstanceResponse:
    """Start a finished instance's orchestration again with its input and version,
    under the same id (replacing it) or a new one."""
    iid = _instance_id(request)
    record = await hub.client._require(iid)
    if not record.status.is_terminal:
        raise precondition(
            f"instance {iid!r} is {record.status.value}; only finished instances can be "
            "restarted: wait for it to finish, or terminate it first"
        )
    new_id = await hub.client.restart(iid, new_instance_id=request.restartWithNewInstanceId)
    return pb.RestartInstanceResponse(instanceId=new_id)


# -- registration ----------------------------------------------------------------------

#: RPC name -> (permission from :mod:`taskloom.security`, handler); the servicer gets one
#: method per entry from :func:`taskloom.grpc.base.install_rpcs`.
CLIENT_RPCS: dict[str, tuple[str, Handler]] = {
    "StartInstance": ("write", start_instance),
    "GetInstance": ("read", get_instance),
    "WaitForInstanceStart": ("read", wait_for_instance_start),
    "WaitForInstanceCompletion": ("read", wait_for_instance_completion),
    "QueryInstances": ("read", query_instances),
    "ListInstanceIds": ("read", list_instance_ids),
    "RaiseEvent": ("write", raise_event),
    "TerminateInstance": ("write", terminate_instance),
    "SuspendInstance": ("write", suspend_instance),
    "ResumeInstance": ("write", resume_instance),
    "RewindInstance": ("write", rewind_instance),
    "RestartInstance": ("write", restart_instance),
    "PurgeInstances": ("write", purge_instances),
}

#: The server-streaming client RPCs.
CLIENT_STREAMS: dict[str, tuple[str, StreamHandler]] = {
    "StreamInstanceHistory": ("read", stream_instance_history),
}
