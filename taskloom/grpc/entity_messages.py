"""Entity messages of SDK orchestrations, both ways, in taskloom's entity protocol
(:mod:`taskloom.entities.protocol`), so SDK and native orchestrations and entities talk
to each other freely.

Out: an orchestration's ``SendEntityMessageAction`` (a call, a signal, a lock request,
an unlock) becomes the message to the entity and the history record of the action,
an ``EventSent`` to the entity (``name`` ``"op"`` or ``"release"``, the protocol body as
input), as native orchestrations record their calls (:func:`send_entity_message`).

In: :class:`EntityEvents` reads those records back as the protocol's entity events
(``entityOperationCalled``, ``entityOperationSignaled``, ``entityLockRequested``,
``entityUnlockSent``) and the entities' replies, ``EventRaised(<request id>, reply)``,
as ``entityOperationCompleted`` / ``entityOperationFailed`` / ``entityLockGranted``. A
reply is recognised by its name: the request id of a call, or the critical section id
of a lock request, that the orchestration's history sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb

from taskloom import history as h
from taskloom.entities import protocol as p
from taskloom.entities.records import EntityId
from taskloom.grpc import client_convert as cv
from taskloom.grpc.hubs import invalid
from taskloom.models import FailureDetails
from taskloom.storage.base import AT_ONCE, Message

__all__ = ["EntityEvents", "send_entity_message"]


def _entity(instance_id: str, what: str) -> str:
    try:
        return EntityId.from_instance_id(instance_id).instance_id
    except ValueError:
        raise invalid(
            f"{what} names {instance_id!r}, which is not an entity id: use '@name@key'"
        ) from None


def send_entity_message(
    action_id: int,
    message: pb.SendEntityMessageAction,
    instance_id: str,
    execution_id: str,
    now: datetime,
) -> tuple[h.EventSent, Message]:
    """The history record and the message of one ``SendEntityMessageAction`` of
    orchestration ``instance_id`` (execution ``execution_id``); INVALID_ARGUMENT for a
    malformed one."""
    which = message.WhichOneof("EntityMessageType")
    visible = AT_ONCE
    name = p.OPERATION
    if which == "entityOperationCalled":
        m = message.entityOperationCalled
        target = _entity(m.targetInstanceId.value, "entityOperationCalled.targetInstanceId")
        if not m.requestId or not m.operation:
            raise invalid("entityOperationCalled needs a requestId and an operation")
        body = p.operation(
            m.operation,
            cv.optional_text(m, "input"),
            request_id=m.requestId,
            parent=instance_id,
            execution_id=execution_id,
        )
        visible = cv.optional_time(m, "scheduledTime") or AT_ONCE
    elif which == "entityOperationSignaled":
        m2 = message.entityOperationSignaled
        target = _entity(m2.targetInstanceId.value, "entityOperationSignaled.targetInstanceId")
        if not m2.operation:
            raise invalid("entityOperationSignaled needs an operation")
        body = p.operation(m2.operation, cv.optional_text(m2, "input"), parent=instance_id)
        visible = cv.optional_time(m2, "scheduledTime") or AT_ONCE
    elif which == "entityLockRequested":
        m3 = message.entityLockRequested
        entities = [_entity(e, "entityLockRequested.lockSet") for e in m3.lockSet]
        if not m3.criticalSectionId or not 0 <= m3.position < len(entities):
            raise invalid(
                "entityLockRequested needs a criticalSectionId and a position inside lockSet"
            )
        target = entities[m3.position]
        body = p.lock_request(
            m3.criticalSectionId, entities, m3.position, instance_id, execution_id
        )
    elif which == "entityUnlockSent":
        m4 = message.entityUnlockSent
        target = _entity(m4.targetInstanceId.value, "entityUnlockSent.targetInstanceId")
        if not m4.criticalSectionId:
            raise invalid("entityUnlockSent needs a criticalSectionId")
        name = p.RELEASE
        body = p.release(m4.criticalSectionId, instance_id)
    else:
        raise invalid("sendEntityMessage carries no entity message")
    event = h.EventSent(now, action_id, instance_id=target, name=name, input=body)
    reply_to = Message(target, h.EventRaised(now, name=name, input=body), visible)
    return event, reply_to


class EntityEvents:
    """Converts an orchestration's entity records and replies to protocol events; feed
    it the history first (:meth:`observe`), then convert with :meth:`to_pb`."""

    def __init__(self, history: Iterable[h.HistoryEvent] = ()) -> None:
        self.calls: set[str] = set()
        self.locks: set[str] = set()
        for event in history:
            self.observe(event)

    def observe(self, event: h.HistoryEvent) -> None:
        """Remember the request ids of the calls and lock requests ``event`` records."""
        if isinstance(event, h.EventSent) and event.name == p.OPERATION:
            body = p.decode(event.input)
            request_id = body.get("id")
            if isinstance(request_id, str):
                (self.locks if "lock" in body else self.calls).add(request_id)

    def to_pb(self, event: h.HistoryEvent) -> pb.HistoryEvent | None:
        """The protocol event of an entity record or reply; None for any other event."""
        out = pb.HistoryEvent(eventId=event.event_id, timestamp=cv.timestamp(event.timestamp))
        if isinstance(event, h.EventSent) and event.instance_id.startswith("@"):
            if not self._sent(event, out):
                return None
        elif isinstance(event, h.EventRaised) and (
            event.name in self.calls or event.name in self.locks
        ):
            self._reply(event, out)
        else:
            return None
        return out

    def _sent(self, event: h.EventSent, out: pb.HistoryEvent) -> bool:
        body = p.decode(event.input)
        parent = cv.text(body.get("parent"))
        if event.name == p.RELEASE:
            out.entityUnlockSent.CopyFrom(
                pb.EntityUnlockSentEvent(
                    criticalSectionId=str(body.get("id", "")),
                    parentInstanceId=parent,
                    targetInstanceId=cv.text(event.instance_id),
                )
            )
        elif event.name != p.OPERATION:
            return False
        elif "lock" in body:
            out.entityLockRequested.CopyFrom(
                pb.EntityLockRequestedEvent(
                    criticalSectionId=str(body.get("id", "")),
                    lockSet=[str(e) for e in body.get("lock", ())],
                    position=int(body.get("pos", 0)),
                    parentInstanceId=parent,
                )
            )
        elif "id" in body:
            out.entityOperationCalled.CopyFrom(
                pb.EntityOperationCalledEvent(
                    requestId=str(body["id"]),
                    operation=str(body.get("op", "")),
                    input=cv.text(body.get("input")),
                    parentInstanceId=parent,
                    parentExecutionId=cv.text(body.get("exec")),
                    targetInstanceId=cv.text(event.instance_id),
                )
            )
        else:
            out.entityOperationSignaled.CopyFrom(
                pb.EntityOperationSignaledEvent(
                    operation=str(body.get("op", "")),
                    input=cv.text(body.get("input")),
                    targetInstanceId=cv.text(event.instance_id),
                )
            )
        return True

    def _reply(self, event: h.EventRaised, out: pb.HistoryEvent) -> None:
        if event.name in self.locks:
            out.entityLockGranted.CopyFrom(pb.EntityLockGrantedEvent(criticalSectionId=event.name))
            return
        reply: dict[str, Any] = p.decode(event.input)
        failure = reply.get("failure")
        if isinstance(failure, dict):
            out.entityOperationFailed.CopyFrom(
                pb.EntityOperationFailedEvent(
                    requestId=event.name,
                    failureDetails=cv.failure(FailureDetails.from_dict(failure)),
                )
            )
        else:
            out.entityOperationCompleted.CopyFrom(
                pb.EntityOperationCompletedEvent(
                    requestId=event.name, output=cv.text(reply.get("result"))
                )
            )
