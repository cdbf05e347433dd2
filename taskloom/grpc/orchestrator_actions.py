"""An SDK worker's ``OrchestratorResponse`` as the replay executor's result.

The SDK replays the orchestrator itself and answers with the actions it took that the
history does not record yet, just as :class:`taskloom.core.executor.OrchestrationRun`
does; :func:`execution_result` turns them into the same
:class:`~taskloom.core.executor.ExecutionResult`, so
:func:`taskloom.runtime.episodes.commit_result` writes exactly what a native episode
would (history, work items, timers, child instances, messages, continue-as-new).

``applied`` (the new events to append) is what the sidecar sent as ``newEvents``. Trace
context and tags of scheduled tasks and sub-orchestrations are kept on their history
events (:func:`traced`); the SDK's action ids become the events' ``event_id``s, which is
what it matches on replay.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb

from taskloom import history as h
from taskloom.core.actions import (
    Action,
    CreateSubOrchestration,
    CreateTimer,
    ScheduleTask,
    SendEvent,
)
from taskloom.core.executor import ExecutionResult
from taskloom.grpc.client_convert import STATUS_FROM_PB, moment, optional_text
from taskloom.grpc.convert import failure_from_pb, from_pb
from taskloom.grpc.entity_messages import send_entity_message
from taskloom.grpc.hubs import invalid
from taskloom.models import FailureDetails, Status
from taskloom.storage.base import AT_ONCE, EpisodeCommit, Message


@dataclasses.dataclass
class Translated:
    """What a response asks for: the executor's result, plus messages the executor has
    no action for (terminating other instances) and the trace context per action id."""

    result: ExecutionResult
    extra_messages: list[Message] = dataclasses.field(default_factory=list)
    #: Entity messages scheduled for later (signals with a time), by action id.
    delayed: dict[int, datetime] = dataclasses.field(default_factory=dict)
    traces: dict[int, tuple[str | None, str | None, dict[str, str] | None]] = dataclasses.field(
        default_factory=dict
    )


def _trace(message: Any) -> tuple[str | None, str | None, dict[str, str] | None]:
    parent = state = None
    if message.HasField("parentTraceContext"):
        parent = message.parentTraceContext.traceParent or None
        state = optional_text(message.parentTraceContext, "traceState")
    return parent, state, dict(message.tags) or None


def execution_result(
    response: pb.OrchestratorResponse,
    status: Status,
    applied: list[h.HistoryEvent],
    past: Sequence[h.HistoryEvent],
    now: datetime,
    execution_id: str = "",
) -> Translated:
    """Translate ``response``; ``status`` is the instance's status after ``applied``
    (suspended or running) unless the response completes the orchestration.

    An entity message (``sendEntityMessage``) becomes what a native orchestration sends
    (:func:`taskloom.grpc.entity_messages.send_entity_message`): a :class:`SendEvent`
    of the protocol body to the entity, so it is recorded as an ``EventSent``."""
    out = Translated(ExecutionResult(status=status, applied=applied))
    result = out.result
    result.custom_status = optional_text(response, "customStatus")
    done: pb.CompleteOrchestrationAction | None = None
    for action in response.actions:
        kind = action.WhichOneof("orchestratorActionType")
        if kind == "completeOrchestration":
            done = action.completeOrchestration
        elif kind == "terminateOrchestration":
            t = action.terminateOrchestration
            if not t.instanceId:
                raise invalid(f"terminateOrchestration action {action.id} names no instanceId")
            reason = optional_text(t, "reason")
            event = h.ExecutionTerminated(now, reason=reason, recurse=t.recurse)
            out.extra_messages.append(Message(t.instanceId, event, AT_ONCE))
        elif kind == "sendEntityMessage":
            sent, message = send_entity_message(
                action.id, action.sendEntityMessage, response.instanceId, execution_id, now
            )
            result.actions.append(SendEvent(action.id, sent.instance_id, sent.name, sent.input))
            if message.visible_at != AT_ONCE:
                out.delayed[action.id] = message.visible_at
        elif kind is None:
            raise invalid(f"orchestrator action {action.id} has no action type set")
        else:
            translated = _action(action, kind)
            if translated is None:
                raise invalid(
                    f"orchestrator action {kind!r} (id {action.id}) is not supported by "
                    "this taskloom sidecar; see docs/grpc.md for what is"
                )
            result.actions.append(translated)
            if kind in ("scheduleTask", "createSubOrchestration"):
                out.traces[action.id] = _trace(getattr(action, kind))
    if done is not None:
        _complete(result, done, past)
    return out


def _action(action: pb.OrchestratorAction, kind: str) -> Action | None:
    aid = action.id
    if kind == "scheduleTask":
        a = action.scheduleTask
        if not a.name:
            raise invalid(f"scheduleTask action {aid} has no activity name")
        return ScheduleTask(aid, a.name, optional_text(a, "input"), optional_text(a, "version"))
    if kind == "createTimer":
        if not action.createTimer.HasField("fireAt"):
            raise invalid(f"createTimer action {aid} has no fireAt time")
        return CreateTimer(aid, moment(action.createTimer.fireAt))
    if kind == "createSubOrchestration":
        c = action.createSubOrchestration
        if not c.name:
            raise invalid(f"createSubOrchestration action {aid} has no orchestration name")
        return CreateSubOrchestration(
            aid,
            c.name,
            c.instanceId or uuid.uuid4().hex,
            optional_text(c, "input"),
            optional_text(c, "version"),
        )
    if kind == "sendEvent":
        e = action.sendEvent
        if not e.instance.instanceId or not e.name:
            raise invalid(f"sendEvent action {aid} needs a target instance id and an event name")
        return SendEvent(aid, e.instance.instanceId, e.name, optional_text(e, "data"))
    return None


def _complete(
    result: ExecutionResult, done: pb.CompleteOrchestrationAction, past: Sequence[h.HistoryEvent]
) -> None:
    status = STATUS_FROM_PB.get(done.orchestrationStatus)
    if status is None or not (status.is_terminal or status is Status.CONTINUED_AS_NEW):
        raise invalid(
            f"completeOrchestration with status {done.orchestrationStatus}: use COMPLETED, "
            "FAILED, TERMINATED or CONTINUED_AS_NEW"
        )
    result.status = status
    output = optional_text(done, "result")
    if status is Status.CONTINUED_AS_NEW:
        result.new_input = output
        for carried in done.carryoverEvents:
            event = from_pb(carried)
            if isinstance(event, h.EventRaised):
                result.carryover.append((event.name, event.input))
    elif status is Status.FAILED:
        result.failure = (
            failure_from_pb(done.failureDetails)
            if done.HasField("failureDetails")
            else FailureDetails("Error", "the orchestration failed (the worker gave no details)")
        )
    else:
        result.output = output
    # Once the run ends only events sent on the way out still go (as in the executor).
    keep = (SendEvent,) if status is not Status.FAILED else ()
    result.actions = [a for a in result.actions if isinstance(a, keep)]
    if status is Status.TERMINATED:
        result.open_children = open_children([*past, *result.applied])


def open_children(events: Sequence[h.HistoryEvent]) -> list[str]:
    """Instance ids of sub-orchestrations started and not yet finished."""
    running: dict[int, str] = {}
    for e in events:
        if isinstance(e, h.SubOrchestrationInstanceCreated):
            running[e.event_id] = e.instance_id
        elif isinstance(e, h.SubOrchestrationInstanceCompleted | h.SubOrchestrationInstanceFailed):
            running.pop(e.task_scheduled_id, None)
    return list(running.values())


def traced(commit: EpisodeCommit, translated: Translated) -> EpisodeCommit:
    """``commit`` with the actions' trace context and tags on their history events and
    on the children's ``ExecutionStarted``."""
    if translated.delayed:
        commit = _delay(commit, translated.delayed)
    traces = translated.traces
    if not traces:
        return commit
    history = [_with_trace(e, traces) for e in commit.history]
    # The activity's work item carries the scheduling action's traceparent to its worker.
    work_items = [
        dataclasses.replace(w, trace_parent=trace[0])
        if (trace := traces.get(w.task_id)) is not None and trace[0]
        else w
        for w in commit.work_items
    ]
    children = []
    for new in commit.new_instances:
        start = new.start.event
        parent = getattr(start, "parent", None)
        trace = traces.get(parent.task_scheduled_id) if parent is not None else None
        if trace is not None and isinstance(start, h.ExecutionStarted):
            event = dataclasses.replace(
                start, trace_parent=trace[0], trace_state=trace[1], tags=trace[2]
            )
            new = dataclasses.replace(new, start=dataclasses.replace(new.start, event=event))
        children.append(new)
    return dataclasses.replace(
        commit, history=history, work_items=work_items, new_instances=children
    )


def _delay(commit: EpisodeCommit, delayed: dict[int, datetime]) -> EpisodeCommit:
    """Entity signals with a scheduled time are visible from then on."""
    when = {
        (e.instance_id, e.input): delayed[e.event_id]
        for e in commit.history
        if isinstance(e, h.EventSent) and e.event_id in delayed
    }
    messages = [
        dataclasses.replace(m, visible_at=when[key])
        if isinstance(m.event, h.EventRaised) and (key := (m.instance_id, m.event.input)) in when
        else m
        for m in commit.messages
    ]
    return dataclasses.replace(commit, messages=messages)


def _with_trace(
    event: h.HistoryEvent, traces: dict[int, tuple[str | None, str | None, dict[str, str] | None]]
) -> h.HistoryEvent:
    if isinstance(event, h.TaskScheduled | h.SubOrchestrationInstanceCreated):
        trace = traces.get(event.event_id)
        if trace is not None:
            return dataclasses.replace(
                event, trace_parent=trace[0], trace_state=trace[1], tags=trace[2]
            )
    return event
