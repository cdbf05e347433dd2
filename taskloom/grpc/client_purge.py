"""PurgeInstances: by id (recursive), by a batch of ids, or by filter, with the rules
of taskloom's clients (only finished instances are deleted)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import wrappers_pb2

from taskloom import manage
from taskloom.entities.records import is_entity_id
from taskloom.grpc import client_convert as cv
from taskloom.grpc.hubs import Hub, invalid, precondition
from taskloom.models import Status
from taskloom.storage.base import InstanceQuery


async def _purge_tree(hub: Hub, iid: str, recursive: bool) -> int:
    """Purge ``iid`` (finished) and, with ``recursive``, its finished sub-orchestrations
    at every depth; returns how many instances were deleted."""
    store = hub.store
    deleted = 0
    if recursive:
        children: list[str] = []
        token: str | None = None
        while True:
            page = await store.query_instances(InstanceQuery(parent_instance_id=iid), 500, token)
            children.extend(r.instance_id for r in page.records)
            token = page.continuation_token
            if token is None:
                break
        for child in children:
            deleted += await _purge_tree(hub, child, recursive)
    return deleted + await store.purge_instances(InstanceQuery(statuses=manage.TERMINAL), [iid])


async def purge_instances(
    hub: Hub, request: pb.PurgeInstancesRequest, context: Any
) -> pb.PurgeInstancesResponse:
    """PurgeInstances by id (a running instance is FAILED_PRECONDITION, an unknown one
    deletes nothing), by a batch of ids, or by filter (finished instances only)."""
    which = request.WhichOneof("request")
    recursive = request.recursive
    if which == "instanceId":
        iid = request.instanceId
        record = await hub.store.get_instance(iid)
        deleted = 0
        if record is not None:
            if not record.status.is_terminal:
                raise precondition(
                    f"instance {iid!r} is {record.status.value}; terminate it (or wait for "
                    "it to finish) before purging"
                )
            deleted = await _purge_tree(hub, iid, recursive)
    elif which == "instanceBatch":
        deleted = 0
        for iid in request.instanceBatch.instanceIds:
            deleted += await _purge_tree(hub, iid, recursive)
    elif which == "purgeInstanceFilter":
        f = request.purgeInstanceFilter
        statuses = cv.statuses(f.runtimeStatus)
        created_from = cv.optional_time(f, "createdTimeFrom")
        created_to = cv.optional_time(f, "createdTimeTo")
        if not recursive:
            deleted = await manage.purge_in_pages(
                hub.store, statuses=statuses, created_from=created_from, created_to=created_to
            )
        else:
            deleted = await _purge_matching(hub, statuses, created_from, created_to)
    else:
        raise invalid(
            "PurgeInstances needs one of instanceId, instanceBatch or purgeInstanceFilter"
        )
    return pb.PurgeInstancesResponse(
        deletedInstanceCount=deleted, isComplete=wrappers_pb2.BoolValue(value=True)
    )


async def _purge_matching(
    hub: Hub,
    statuses: frozenset[Status] | None,
    created_from: datetime | None,
    created_to: datetime | None,
) -> int:
    wanted = manage.TERMINAL if statuses is None else statuses & manage.TERMINAL
    if not wanted:
        return 0
    query = InstanceQuery(
        statuses=frozenset(wanted), created_from=created_from, created_to=created_to
    )
    ids: list[str] = []
    token: str | None = None
    while True:
        page = await hub.store.query_instances(query, 500, token)
        ids.extend(r.instance_id for r in page.records if not is_entity_id(r.instance_id))
        token = page.continuation_token
        if token is None:
            break
    deleted = 0
    for iid in ids:
        deleted += await _purge_tree(hub, iid, True)
    return deleted
