"""Rewind by the SDK worker: the ``rewindOrchestration`` action and what follows it.

A failed instance that receives an ``ExecutionRewound`` is sent to the SDK worker with
its whole history (``executionCompleted`` included) and the rewind as the new events;
the SDK answers with a ``RewindOrchestrationAction`` whose ``newHistory`` is the history
to keep (failed task results and their schedulings, failed sub-orchestration results and
the completion removed). :func:`rewind_commit` stores it in place of the old history
(keeping the execution id, so results of children still reach this execution), makes the
instance Running again, rewinds the sub-orchestrations that did not complete (a failed
one gets an ``ExecutionRewound``; a purged one is created again from its
``subOrchestrationInstanceCreated``), and sends the instance a wake-up
(``OrchestratorStarted``), after which the SDK replays the kept history and schedules
again what failed.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime

from durabletask.internal import orchestrator_service_pb2 as pb

from taskloom import history as h
from taskloom.grpc.convert import from_pb
from taskloom.grpc.hubs import invalid
from taskloom.models import Status
from taskloom.runtime.episodes import child_instance
from taskloom.storage.base import (
    AT_ONCE,
    EpisodeCommit,
    InstanceRecord,
    LeasedEpisode,
    Message,
    NewInstance,
    Store,
)


def rewind_action(response: pb.OrchestratorResponse) -> pb.RewindOrchestrationAction | None:
    for action in response.actions:
        if action.HasField("rewindOrchestration"):
            found: pb.RewindOrchestrationAction = action.rewindOrchestration
            return found
    return None


async def rewind_commit(
    store: Store,
    episode: LeasedEpisode,
    action: pb.RewindOrchestrationAction,
    reason: str | None,
    now: datetime,
) -> EpisodeCommit:
    """The commit that applies the SDK's rewound history (see the module docstring)."""
    rec = episode.instance
    kept: list[h.HistoryEvent] = []
    for event in action.newHistory:
        converted = from_pb(event)
        if isinstance(converted, h.ExecutionStarted):
            converted = dataclasses.replace(converted, execution_id=rec.execution_id)
        if converted is not None and not isinstance(converted, h.ExecutionCompleted):
            kept.append(converted)
    if not any(isinstance(e, h.ExecutionStarted) for e in kept):
        raise invalid("rewindOrchestration.newHistory has no executionStarted event")
    messages = [Message(rec.instance_id, h.OrchestratorStarted(now), AT_ONCE, rec.execution_id)]
    children = _unfinished_children(kept)
    found = await store.get_statuses([c.instance_id for c in children])
    new_instances: list[NewInstance] = []
    for child in children:
        status = found.get(child.instance_id)
        if status is Status.FAILED:
            rewound = h.ExecutionRewound(now, reason=reason)
            messages.append(Message(child.instance_id, rewound, AT_ONCE))
        elif status is None:
            new_instances.append(_recreate(rec, child, now))
    instance = dataclasses.replace(
        rec,
        status=Status.RUNNING,
        output=None,
        failure=None,
        completed_at=None,
        updated_at=now,
        history_len=len(kept),
    )
    return EpisodeCommit(
        instance,
        episode.lease_token,
        [m.id for m in episode.messages],
        kept,
        replace_history=True,
        messages=messages,
        new_instances=new_instances,
        prior_status=rec.status,
    )


def _unfinished_children(
    events: Sequence[h.HistoryEvent],
) -> list[h.SubOrchestrationInstanceCreated]:
    created: dict[int, h.SubOrchestrationInstanceCreated] = {}
    for e in events:
        if isinstance(e, h.SubOrchestrationInstanceCreated):
            created[e.event_id] = e
        elif isinstance(e, h.SubOrchestrationInstanceCompleted):
            created.pop(e.task_scheduled_id, None)
    return list(created.values())


def _recreate(
    parent: InstanceRecord, child: h.SubOrchestrationInstanceCreated, now: datetime
) -> NewInstance:
    """A purged sub-orchestration started again, as its parent first started it."""
    execution_id = uuid.uuid4().hex
    link = h.ParentInstance(parent.name, parent.instance_id, child.event_id, parent.execution_id)
    return child_instance(
        link,
        child.name,
        child.instance_id,
        execution_id,
        child.input,
        child.version,
        now,
        trace_parent=child.trace_parent,
        trace_state=child.trace_state,
        tags=child.tags,
    )
