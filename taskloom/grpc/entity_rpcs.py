"""Entity work items for SDK workers (``entityRequestV2``), CompleteEntityTask and
AbandonTaskEntityWorkItem.

The sidecar keeps the entity's scheduler (locks, the queue behind a lock, critical
sections) as native entities have it; the SDK worker only runs operations. Dispatch
runs the leased batch through taskloom's own entity episode
(:func:`taskloom.entities.episodes.plan_entity_episode`) with a resolver that runs no
code but records each operation it would run, in order, answering with a marker; so
lock grants, hand-offs along a lock set, releases and the queue come out exactly as
for a native entity, and the operations to run are the ones it recorded. Those go to
the worker; its ``EntityBatchResult`` (a result or failure per operation, the final
state, signals and orchestration starts) fills the markers in: each marker reply
becomes the real reply to its caller, and the commit (fenced on the lease, as every
episode is) writes state, scheduler, replies, signals and starts at once.

A batch whose operations all wait behind a lock still goes to the worker, with no
operations, so that one path commits every entity episode.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb

from taskloom import history as h
from taskloom.entities import protocol as p
from taskloom.entities.context import EntityContext
from taskloom.entities.episodes import plan_entity_episode
from taskloom.grpc import client_convert as cv
from taskloom.grpc import tokens
from taskloom.grpc.base import SidecarBase, rpc
from taskloom.grpc.convert import failure_from_pb
from taskloom.grpc.entity_client import ENTITY_CLIENT_RPCS
from taskloom.grpc.hubs import Hub, invalid
from taskloom.history import HistoryEvent
from taskloom.models import Status
from taskloom.storage.base import AT_ONCE, EpisodeCommit, LeasedEpisode, Message

__all__ = ["ENTITY_RPCS", "EntityWork"]

#: Unary entity client RPCs (SignalEntity, GetEntity, QueryEntities, CleanEntityStorage).
ENTITY_RPCS = ENTITY_CLIENT_RPCS

_MARKER = "\x00taskloom-entity-op-"


@dataclass(frozen=True)
class _Op:
    operation: str
    input: str | None


@dataclass
class EntityPlan:
    """What a dispatched entity batch will commit, waiting for the worker's results."""

    hub: Hub
    commit: EpisodeCommit
    ops: list[_Op]
    #: The reply body each marker result became (as the recording run encoded it).
    markers: list[str]


def _recorder(ops: list[_Op]) -> Any:
    def record(ctx: EntityContext) -> str:
        ops.append(_Op(ctx.operation_name, ctx._input))
        return f"{_MARKER}{len(ops) - 1}"

    return lambda _name: record


def plan_dispatch(
    hub: Hub, episode: LeasedEpisode, now: Any
) -> tuple[EntityPlan, pb.EntityRequest]:
    """The plan of a leased entity batch and the request the SDK worker gets."""
    ops: list[_Op] = []
    commit, result = plan_entity_episode(episode, _recorder(ops), now, hub.client.converter)
    markers = [p.result_reply(hub.client.converter.dumps(f"{_MARKER}{k}")) for k in range(len(ops))]
    ids = [o.request_id or uuid.uuid4().hex for o in result.outcomes]
    rec = episode.instance
    requests = [
        pb.HistoryEvent(
            eventId=-1,
            timestamp=cv.timestamp(now),
            entityOperationSignaled=pb.EntityOperationSignaledEvent(
                requestId=rid,
                operation=op.operation,
                input=cv.text(op.input),
                targetInstanceId=cv.text(rec.instance_id),
            ),
        )
        for rid, op in zip(ids, ops, strict=True)
    ]
    request = pb.EntityRequest(
        instanceId=rec.instance_id,
        executionId=rec.execution_id,
        entityState=cv.text(rec.custom_status),
        operationRequests=requests,
    )
    return EntityPlan(hub, commit, ops, markers), request


def complete_plan(plan: EntityPlan, result: pb.EntityBatchResult, now: Any) -> EpisodeCommit:
    """The plan's commit with the worker's results, state, signals and starts."""
    if len(result.results) != len(plan.ops):
        raise invalid(
            f"CompleteEntityTask has {len(result.results)} results for the "
            f"{len(plan.ops)} operations sent: send one result per operation, in order"
        )
    replies: dict[str, str] = {}
    for marker, outcome in zip(plan.markers, result.results, strict=True):
        if outcome.HasField("failure"):
            replies[marker] = p.failure_reply(failure_from_pb(outcome.failure.failureDetails))
        else:
            # The SDK sends an empty string for an operation that returned None.
            text = cv.optional_text(outcome.success, "result") or None
            replies[marker] = p.result_reply(text)
    commit = plan.commit
    rec = commit.instance
    messages = [
        dataclasses.replace(
            m, event=dataclasses.replace(m.event, input=replies.get(m.event.input, ""))
        )
        if isinstance(m.event, h.EventRaised) and m.event.input in replies
        else m
        for m in commit.messages
    ]
    starts = list(commit.new_instances)
    for action in result.actions:
        which = action.WhichOneof("operationActionType")
        if which == "sendSignal":
            s = action.sendSignal
            target = s.instanceId
            if not target.startswith("@"):
                raise invalid(f"sendSignal targets {target!r}, which is not an entity id")
            body = p.operation(s.name, cv.optional_text(s, "input"))
            visible = cv.optional_time(s, "scheduledTime") or AT_ONCE
            event = h.EventRaised(now, name=p.OPERATION, input=body)
            messages.append(Message(target, event, visible, key=uuid.uuid4().hex))
        elif which == "startNewOrchestration":
            o = action.startNewOrchestration
            if not o.name:
                raise invalid("startNewOrchestration needs the orchestration's name")
            starts.append(
                plan.hub.client._new_instance(
                    o.name,
                    cv.optional_text(o, "input"),
                    o.instanceId or uuid.uuid4().hex,
                    cv.optional_time(o, "scheduledTime"),
                    cv.optional_text(o, "version"),
                )
            )
    state = cv.optional_text(result, "entityState") or None
    empty = state is None and rec.input is None
    instance = dataclasses.replace(
        rec,
        custom_status=state,
        status=Status.COMPLETED if empty else Status.RUNNING,
        completed_at=now if empty else None,
        updated_at=now,
    )
    return dataclasses.replace(commit, instance=instance, messages=messages, new_instances=starts)


class EntityWork(SidecarBase):
    """Entity work items and their completion (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Dispatched entity batches by completion token.
        self.entity_plans: dict[str, EntityPlan] = {}

    def entity_work_item(
        self, hub: Hub, episode: LeasedEpisode, history: list[HistoryEvent], token: str
    ) -> pb.WorkItem | None:
        self._sweep_plans()
        plan, request = plan_dispatch(hub, episode, self.clock.now())
        self.entity_plans[token] = plan
        return pb.WorkItem(completionToken=token, entityRequestV2=request)

    def _sweep_plans(self) -> None:
        """Forget the plans of batches the in-flight table forgot (their lease lapsed; a
        batch's stream renews its lease, and its entry, while it lives)."""
        for key in [k for k in self.entity_plans if k not in self.inflight]:
            del self.entity_plans[key]

    @rpc
    async def CompleteEntityTask(
        self, request: pb.EntityBatchResult, context: Any
    ) -> pb.CompleteTaskResponse:
        """Commit a batch's results; a stale or duplicate completion (the lease was
        lost, or the batch already committed) is ignored."""
        caller = await self.caller(context, "work")
        token = tokens.decode(request.completionToken, tokens.ENTITY)
        plan = self.entity_plans.get(request.completionToken)
        if plan is None or token.hub != caller.hub.name:
            return pb.CompleteTaskResponse()
        if request.HasField("failureDetails"):
            # The worker could not run the batch at all: put it back for another try.
            self._forget(request.completionToken)
            await plan.hub.store.abandon_episode(token.item, token.lease_token)
            return pb.CompleteTaskResponse()
        now = self.clock.now()
        commit = complete_plan(plan, request, now)
        self._forget(request.completionToken)
        await plan.hub.store.complete_episodes([commit], now)
        return pb.CompleteTaskResponse()

    @rpc
    async def AbandonTaskEntityWorkItem(
        self, request: pb.AbandonEntityTaskRequest, context: Any
    ) -> pb.AbandonEntityTaskResponse:
        """Put the batch back at once (released lease: the next lease runs it again)."""
        caller = await self.caller(context, "work")
        token = tokens.decode(request.completionToken, tokens.ENTITY)
        plan = self.entity_plans.get(request.completionToken)
        if plan is not None and token.hub == caller.hub.name:
            self._forget(request.completionToken)
            await plan.hub.store.abandon_episode(token.item, token.lease_token)
        return pb.AbandonEntityTaskResponse()

    def _forget(self, token: str) -> None:
        self.entity_plans.pop(token, None)
        self.inflight.pop(token)
