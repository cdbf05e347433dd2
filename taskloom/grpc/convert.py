"""Taskloom history events <-> the protocol's ``HistoryEvent`` messages.

Every kind of :mod:`taskloom.history` has a protobuf twin with the same fields: payloads
are the same JSON text on both sides (``StringValue``), timestamps are protobuf
``Timestamp``s, failures ``TaskFailureDetails``, trace context ``TraceContext`` (the span
id is the parent-id part of ``traceparent``). A terminate reason is a JSON value in
taskloom and JSON text (``input``) in the protocol. Protocol events taskloom does not
record (``orchestratorCompleted``, ``genericEvent``, ``historyState``, the entity events)
convert to None and are left out.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from durabletask.internal import orchestrator_service_pb2 as pb

from taskloom import history as h
from taskloom.grpc.client_convert import (
    STATUS_FROM_PB,
    STATUS_TO_PB,
    failure,
    moment,
    optional_text,
    optional_time,
    text,
    timestamp,
)
from taskloom.grpc.hubs import invalid
from taskloom.models import FailureDetails, Status

__all__ = [
    "failure",
    "failure_from_pb",
    "from_pb",
    "history_event",
    "span_context",
    "to_pb",
    "trace_context",
    "with_span",
]


def trace_context(parent: str | None, state: str | None) -> pb.TraceContext | None:
    """A ``TraceContext`` from a W3C ``traceparent`` / ``tracestate`` pair (None if unset)."""
    if not parent:
        return None
    parts = parent.split("-")
    span = parts[2] if len(parts) == 4 else ""
    return pb.TraceContext(traceParent=parent, spanID=span, traceState=text(state))


def _last_span(history: Sequence[h.HistoryEvent]) -> tuple[str | None, datetime | None] | None:
    for event in reversed(history):
        if isinstance(event, h.OrchestratorStarted) and (event.span_id or event.span_started_at):
            return event.span_id, event.span_started_at
    return None


def span_context(history: Sequence[h.HistoryEvent]) -> pb.OrchestrationTraceContext | None:
    """The ``orchestrationTraceContext`` an SDK worker last reported for this execution
    (kept on an ``OrchestratorStarted`` of its history), or None."""
    span = _last_span(history)
    if span is None:
        return None
    ctx = pb.OrchestrationTraceContext(spanID=text(span[0]))
    if span[1] is not None:
        ctx.spanStartTime.CopyFrom(timestamp(span[1]))
    return ctx


def with_span(
    past: Sequence[h.HistoryEvent],
    new: list[h.HistoryEvent],
    reported: pb.OrchestrationTraceContext,
) -> list[h.HistoryEvent]:
    """``new`` (the episode's events, an ``OrchestratorStarted`` first) with the span the
    worker ``reported`` recorded on that first event, unless the history already records
    the same span (so it is written once per execution, not once per episode)."""
    span = optional_text(reported, "spanID") or None, optional_time(reported, "spanStartTime")
    if span == (None, None) or span == _last_span(past):
        return new
    for i, event in enumerate(new):
        if isinstance(event, h.OrchestratorStarted):
            stamped = dataclasses.replace(event, span_id=span[0], span_started_at=span[1])
            return [*new[:i], stamped, *new[i + 1 :]]
    return new


def _trace_of(message: Any) -> tuple[str | None, str | None]:
    if not message.HasField("parentTraceContext"):
        return None, None
    ctx = message.parentTraceContext
    return ctx.traceParent or None, optional_text(ctx, "traceState")


def failure_from_pb(details: pb.TaskFailureDetails) -> FailureDetails:
    inner = failure_from_pb(details.innerFailure) if details.HasField("innerFailure") else None
    return FailureDetails(
        details.errorType or "Error",
        details.errorMessage,
        optional_text(details, "stackTrace"),
        inner,
        details.isNonRetriable,
    )


def _reason_out(reason: object) -> str | None:
    return None if reason is None else json.dumps(reason)


def _reason_in(message: Any) -> Any:
    raw = optional_text(message, "input")
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw  # a plain string reason


def _tags(tags: dict[str, str] | None) -> dict[str, str]:
    return dict(tags or {})


def to_pb(event: h.HistoryEvent) -> pb.HistoryEvent:
    """The protocol's form of a taskloom event."""
    out = pb.HistoryEvent(eventId=event.event_id, timestamp=timestamp(event.timestamp))
    _FILL[type(event)](event, out)
    return out


#: The name client modules use.
history_event = to_pb


def _started(e: h.ExecutionStarted, out: pb.HistoryEvent) -> None:
    m = out.executionStarted
    m.name = e.name
    m.orchestrationInstance.instanceId = e.instance_id
    m.orchestrationInstance.executionId.value = e.execution_id
    if e.version is not None:
        m.version.value = e.version
    if e.input is not None:
        m.input.value = e.input
    if e.parent is not None:
        p = m.parentInstance
        p.taskScheduledId = e.parent.task_scheduled_id
        p.name.value = e.parent.name
        p.orchestrationInstance.instanceId = e.parent.instance_id
        if e.parent.execution_id:
            p.orchestrationInstance.executionId.value = e.parent.execution_id
    if e.scheduled_start is not None:
        m.scheduledStartTimestamp.CopyFrom(timestamp(e.scheduled_start))
    ctx = trace_context(e.trace_parent, e.trace_state)
    if ctx is not None:
        m.parentTraceContext.CopyFrom(ctx)
    m.tags.update(_tags(e.tags))


def _completed(e: h.ExecutionCompleted, out: pb.HistoryEvent) -> None:
    m = out.executionCompleted
    m.orchestrationStatus = STATUS_TO_PB[e.status]  # type: ignore[assignment]
    if e.result is not None:
        m.result.value = e.result
    if e.failure is not None:
        m.failureDetails.CopyFrom(failure(e.failure))


def _terminated(e: h.ExecutionTerminated, out: pb.HistoryEvent) -> None:
    out.executionTerminated.recurse = e.recurse
    reason = _reason_out(e.reason)
    if reason is not None:
        out.executionTerminated.input.value = reason


def _with_input(field: str, value: str | None, out: pb.HistoryEvent) -> None:
    m = getattr(out, field)
    m.SetInParent()
    if value is not None:
        m.input.value = value


def _rewound(e: h.ExecutionRewound, out: pb.HistoryEvent) -> None:
    out.executionRewound.SetInParent()
    if e.reason is not None:
        out.executionRewound.reason.value = e.reason


def _scheduled(e: h.TaskScheduled, out: pb.HistoryEvent) -> None:
    m = out.taskScheduled
    m.name = e.name
    if e.version is not None:
        m.version.value = e.version
    if e.input is not None:
        m.input.value = e.input
    ctx = trace_context(e.trace_parent, e.trace_state)
    if ctx is not None:
        m.parentTraceContext.CopyFrom(ctx)
    m.tags.update(_tags(e.tags))


def _task_completed(e: h.TaskCompleted, out: pb.HistoryEvent) -> None:
    out.taskCompleted.taskScheduledId = e.task_scheduled_id
    if e.result is not None:
        out.taskCompleted.result.value = e.result


def _task_failed(e: h.TaskFailed, out: pb.HistoryEvent) -> None:
    out.taskFailed.taskScheduledId = e.task_scheduled_id
    if e.failure is not None:
        out.taskFailed.failureDetails.CopyFrom(failure(e.failure))


def _timer_created(e: h.TimerCreated, out: pb.HistoryEvent) -> None:
    out.timerCreated.SetInParent()
    if e.fire_at is not None:
        out.timerCreated.fireAt.CopyFrom(timestamp(e.fire_at))


def _timer_fired(e: h.TimerFired, out: pb.HistoryEvent) -> None:
    out.timerFired.timerId = e.timer_id
    if e.fire_at is not None:
        out.timerFired.fireAt.CopyFrom(timestamp(e.fire_at))


def _raised(e: h.EventRaised, out: pb.HistoryEvent) -> None:
    out.eventRaised.name = e.name
    if e.input is not None:
        out.eventRaised.input.value = e.input


def _sent(e: h.EventSent, out: pb.HistoryEvent) -> None:
    out.eventSent.instanceId = e.instance_id
    out.eventSent.name = e.name
    if e.input is not None:
        out.eventSent.input.value = e.input


def _sub_created(e: h.SubOrchestrationInstanceCreated, out: pb.HistoryEvent) -> None:
    m = out.subOrchestrationInstanceCreated
    m.instanceId = e.instance_id
    m.name = e.name
    if e.version is not None:
        m.version.value = e.version
    if e.input is not None:
        m.input.value = e.input
    ctx = trace_context(e.trace_parent, e.trace_state)
    if ctx is not None:
        m.parentTraceContext.CopyFrom(ctx)
    m.tags.update(_tags(e.tags))


def _sub_completed(e: h.SubOrchestrationInstanceCompleted, out: pb.HistoryEvent) -> None:
    out.subOrchestrationInstanceCompleted.taskScheduledId = e.task_scheduled_id
    if e.result is not None:
        out.subOrchestrationInstanceCompleted.result.value = e.result


def _sub_failed(e: h.SubOrchestrationInstanceFailed, out: pb.HistoryEvent) -> None:
    out.subOrchestrationInstanceFailed.taskScheduledId = e.task_scheduled_id
    if e.failure is not None:
        out.subOrchestrationInstanceFailed.failureDetails.CopyFrom(failure(e.failure))


_FILL: dict[type[h.HistoryEvent], Any] = {
    h.ExecutionStarted: _started,
    h.ExecutionCompleted: _completed,
    h.ExecutionTerminated: _terminated,
    h.ExecutionSuspended: lambda e, o: _with_input("executionSuspended", e.reason, o),
    h.ExecutionResumed: lambda e, o: _with_input("executionResumed", e.reason, o),
    h.ExecutionRewound: _rewound,
    h.ContinueAsNew: lambda e, o: _with_input("continueAsNew", e.input, o),
    h.OrchestratorStarted: lambda e, o: o.orchestratorStarted.SetInParent(),
    h.TaskScheduled: _scheduled,
    h.TaskCompleted: _task_completed,
    h.TaskFailed: _task_failed,
    h.TimerCreated: _timer_created,
    h.TimerFired: _timer_fired,
    h.EventRaised: _raised,
    h.EventSent: _sent,
    h.SubOrchestrationInstanceCreated: _sub_created,
    h.SubOrchestrationInstanceCompleted: _sub_completed,
    h.SubOrchestrationInstanceFailed: _sub_failed,
}


def request_events(
    past: Sequence[h.HistoryEvent], new: Sequence[h.HistoryEvent]
) -> tuple[list[pb.HistoryEvent], list[pb.HistoryEvent]]:
    """``pastEvents`` and ``newEvents`` of an ``OrchestratorRequest``: entity calls,
    signals, locks and their replies as the protocol's entity events
    (:class:`taskloom.grpc.entity_messages.EntityEvents`), the rest by :func:`to_pb`."""
    from taskloom.grpc.entity_messages import EntityEvents

    entities = EntityEvents()

    def one(event: h.HistoryEvent) -> pb.HistoryEvent:
        entities.observe(event)
        return entities.to_pb(event) or to_pb(event)

    return [one(e) for e in past], [one(e) for e in new]


def from_pb(event: pb.HistoryEvent) -> h.HistoryEvent | None:
    """The taskloom form of a protocol event; None for kinds taskloom does not record."""
    kind = event.WhichOneof("eventType")
    if kind is None:
        raise invalid("a HistoryEvent has no event type set: set one of its eventType fields")
    if not event.HasField("timestamp"):
        raise invalid(f"a {kind} HistoryEvent has no timestamp: set its timestamp")
    ts = moment(event.timestamp)
    eid = event.eventId
    m = getattr(event, kind)
    if kind == "executionStarted":
        parent = None
        if m.HasField("parentInstance"):
            p = m.parentInstance
            parent = h.ParentInstance(
                optional_text(p, "name") or "",
                p.orchestrationInstance.instanceId,
                p.taskScheduledId,
                optional_text(p.orchestrationInstance, "executionId") or "",
            )
        tp, ts_state = _trace_of(m)
        return h.ExecutionStarted(
            ts,
            eid,
            m.name,
            m.orchestrationInstance.instanceId,
            optional_text(m.orchestrationInstance, "executionId") or "",
            optional_text(m, "input"),
            optional_text(m, "version"),
            parent,
            optional_time(m, "scheduledStartTimestamp"),
            tp,
            ts_state,
            dict(m.tags) or None,
        )
    if kind == "executionCompleted":
        status = STATUS_FROM_PB.get(m.orchestrationStatus, Status.COMPLETED)
        fail = failure_from_pb(m.failureDetails) if m.HasField("failureDetails") else None
        return h.ExecutionCompleted(ts, eid, status, optional_text(m, "result"), fail)
    if kind == "executionTerminated":
        return h.ExecutionTerminated(ts, eid, _reason_in(m), m.recurse)
    if kind == "executionSuspended":
        return h.ExecutionSuspended(ts, eid, optional_text(m, "input"))
    if kind == "executionResumed":
        return h.ExecutionResumed(ts, eid, optional_text(m, "input"))
    if kind == "executionRewound":
        return h.ExecutionRewound(ts, eid, optional_text(m, "reason"))
    if kind == "continueAsNew":
        return h.ContinueAsNew(ts, eid, optional_text(m, "input"))
    if kind == "orchestratorStarted":
        return h.OrchestratorStarted(ts, eid)
    if kind == "taskScheduled":
        tp, ts_state = _trace_of(m)
        return h.TaskScheduled(
            ts,
            eid,
            m.name,
            optional_text(m, "input"),
            optional_text(m, "version"),
            trace_parent=tp,
            trace_state=ts_state,
            tags=dict(m.tags) or None,
        )
    if kind == "taskCompleted":
        return h.TaskCompleted(ts, eid, m.taskScheduledId, optional_text(m, "result"))
    if kind == "taskFailed":
        return h.TaskFailed(ts, eid, m.taskScheduledId, failure_from_pb(m.failureDetails))
    if kind == "timerCreated":
        return h.TimerCreated(ts, eid, optional_time(m, "fireAt"))
    if kind == "timerFired":
        return h.TimerFired(ts, eid, m.timerId, optional_time(m, "fireAt"))
    if kind == "eventRaised":
        return h.EventRaised(ts, eid, m.name, optional_text(m, "input"))
    if kind == "eventSent":
        return h.EventSent(ts, eid, m.instanceId, m.name, optional_text(m, "input"))
    if kind == "subOrchestrationInstanceCreated":
        tp, ts_state = _trace_of(m)
        return h.SubOrchestrationInstanceCreated(
            ts,
            eid,
            m.name,
            m.instanceId,
            optional_text(m, "input"),
            optional_text(m, "version"),
            trace_parent=tp,
            trace_state=ts_state,
            tags=dict(m.tags) or None,
        )
    if kind == "subOrchestrationInstanceCompleted":
        return h.SubOrchestrationInstanceCompleted(
            ts, eid, m.taskScheduledId, optional_text(m, "result")
        )
    if kind == "subOrchestrationInstanceFailed":
        return h.SubOrchestrationInstanceFailed(
            ts, eid, m.taskScheduledId, failure_from_pb(m.failureDetails)
        )
    return None
