"""The entity client RPCs: SignalEntity, GetEntity, QueryEntities, CleanEntityStorage.

They act on entity rows as :mod:`taskloom.entities.client` does (the row's
``custom_status`` is the entity's state, ``input`` its scheduler state), keeping the
SDK's JSON payloads as text. A signal's ``requestId`` is its message key, so a signal
the SDK retries after a lost reply is delivered once.
"""

from __future__ import annotations

from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb

from taskloom import history as h
from taskloom.entities import protocol as p
from taskloom.entities.records import EntityId
from taskloom.grpc import client_convert as cv
from taskloom.grpc.base import Handler
from taskloom.grpc.hubs import Hub, invalid
from taskloom.models import Status
from taskloom.storage.base import AT_ONCE, InstanceQuery, InstanceRecord, Message

__all__ = ["ENTITY_CLIENT_RPCS", "entity_metadata"]

_MAX_PAGE = 1000


def _entity_id(text: str) -> EntityId:
    try:
        return EntityId.from_instance_id(text)
    except ValueError as exc:
        raise invalid(f"{exc}: name the entity as '@name@key', e.g. '@counter@c1'") from None


def entity_metadata(rec: InstanceRecord, include_state: bool) -> pb.EntityMetadata:
    """An entity row as the protocol's ``EntityMetadata``."""
    sched = p.SchedulerState.loads(rec.input)
    lock = sched.lock
    meta = pb.EntityMetadata(
        instanceId=rec.instance_id,
        lastModifiedTime=cv.timestamp(rec.updated_at),
        backlogQueueSize=len(sched.queue),
        lockedBy=cv.text(str(lock.get("parent"))) if lock is not None else None,
    )
    if include_state and rec.custom_status is not None:
        meta.serializedState.value = rec.custom_status
    return meta


async def signal_entity(
    hub: Hub, request: pb.SignalEntityRequest, context: Any
) -> pb.SignalEntityResponse:
    """Send an operation to an entity (created on first use), at ``scheduledTime`` if
    given."""
    target = _entity_id(request.instanceId)
    if not request.name:
        raise invalid("name is empty: give the operation to run on the entity")
    body = p.operation(request.name, cv.optional_text(request, "input"))
    event = h.EventRaised(hub.client.clock.now(), name=p.OPERATION, input=body)
    visible = cv.optional_time(request, "scheduledTime") or AT_ONCE
    key = request.requestId or None
    await hub.store.enqueue_messages([Message(target.instance_id, event, visible, key=key)])
    return pb.SignalEntityResponse()


async def get_entity(hub: Hub, request: pb.GetEntityRequest, context: Any) -> pb.GetEntityResponse:
    """An entity that has state (``exists=False`` otherwise, as Durable Functions)."""
    target = _entity_id(request.instanceId)
    rec = await hub.store.get_instance(target.instance_id)
    if rec is None or rec.custom_status is None:
        return pb.GetEntityResponse(exists=False)
    return pb.GetEntityResponse(exists=True, entity=entity_metadata(rec, request.includeState))


def _prefix(starts_with: str | None) -> str:
    """The instance-id prefix of a query: ``@name...`` as given (the name lower-cased,
    as entity names ignore case), or a bare name prefix."""
    if not starts_with:
        return "@"
    text = starts_with if starts_with.startswith("@") else "@" + starts_with
    name, sep, key = text[1:].partition("@")
    return "@" + name.lower() + sep + key


async def query_entities(
    hub: Hub, request: pb.QueryEntitiesRequest, context: Any
) -> pb.QueryEntitiesResponse:
    """A page of entities by id prefix and last-modified time, with the store's keyset
    continuation token; entities without state only with ``includeTransient``. The
    time filter applies within the page, so a page may hold fewer than asked."""
    q = request.query
    size = q.pageSize.value if q.HasField("pageSize") else 100
    if size < 0:
        raise invalid(f"pageSize must not be negative, got {size}")
    query = InstanceQuery(
        statuses=frozenset({Status.RUNNING}),
        instance_id_prefix=_prefix(cv.optional_text(q, "instanceIdStartsWith")),
    )
    token = cv.optional_text(q, "continuationToken") or None
    found = await hub.store.query_instances(query, min(size or 100, _MAX_PAGE), token)
    since = cv.optional_time(q, "lastModifiedFrom")
    until = cv.optional_time(q, "lastModifiedTo")
    entities = [
        entity_metadata(r, q.includeState)
        for r in found.records
        if (q.includeTransient or r.custom_status is not None)
        and (since is None or r.updated_at >= since)
        and (until is None or r.updated_at < until)
    ]
    return pb.QueryEntitiesResponse(
        entities=entities, continuationToken=cv.text(found.continuation_token)
    )


async def clean_entity_storage(
    hub: Hub, request: pb.CleanEntityStorageRequest, context: Any
) -> pb.CleanEntityStorageResponse:
    """Release locks held by orchestrations that no longer run, remove empty entities
    (all in one call: no continuation token)."""
    done = await hub.client.clean_entity_storage(
        remove_empty=request.removeEmptyEntities,
        release_orphaned_locks=request.releaseOrphanedLocks,
    )
    return pb.CleanEntityStorageResponse(
        emptyEntitiesRemoved=done.removed, orphanedLocksReleased=done.locks_released
    )


#: RPC name -> (permission, handler).
ENTITY_CLIENT_RPCS: dict[str, tuple[str, Handler]] = {
    "SignalEntity": ("write", signal_entity),
    "GetEntity": ("read", get_entity),
    "QueryEntities": ("read", query_entities),
    "CleanEntityStorage": ("write", clean_entity_storage),
}
