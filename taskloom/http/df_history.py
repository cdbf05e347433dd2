"""``historyEvents`` in Durable Functions' shape.

Durable Functions answers ``GET instances/{id}?showHistory=true`` with the Durable Task
Framework's history events, reshaped by the extension: PascalCase members (``EventType``,
``Timestamp``, ...), the ``OrchestratorStarted``/``OrchestratorCompleted`` markers left
out, and each ``TaskScheduled`` (``SubOrchestrationInstanceCreated``) folded into the event
that finished it, which gains the ``FunctionName`` and the ``ScheduledTime``; a task still
running keeps its ``TaskScheduled`` with its ``Name``. Inputs are never shown (not of
activities, events or the orchestration); results (``Result``) only with
``showHistoryOutput=true``. Failures carry ``Reason``, ``Details`` and ``FailureDetails``
(``ErrorType``, ``ErrorMessage``, ``StackTrace``, ``InnerFailure``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from taskloom import history as h
from taskloom.models import FailureDetails


def timestamp(moment: datetime) -> str:
    """``2026-01-31T09:00:00.123456Z``: UTC with a ``Z``, as .NET writes DateTimes."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _failure(failure: FailureDetails | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {
        "ErrorType": failure.error_type,
        "ErrorMessage": failure.message,
        "StackTrace": failure.stack_trace,
        "InnerFailure": _failure(failure.inner),
        "IsNonRetriable": failure.non_retriable,
    }


def _failed(item: dict[str, Any], failure: FailureDetails | None) -> None:
    item["Reason"] = failure.message if failure else None
    item["Details"] = failure.stack_trace if failure else None
    item["FailureDetails"] = _failure(failure)


def durable_history(
    events: Sequence[h.HistoryEvent], *, show_history_output: bool = False
) -> list[dict[str, Any]]:
    """The history as Durable Functions shows it (see the module docstring)."""
    items: list[dict[str, Any] | None] = []
    scheduled: dict[tuple[str, int], int] = {}  # (kind, event id) -> index in items

    def fold(kind: str, item: dict[str, Any], task_id: int) -> None:
        at = scheduled.pop((kind, task_id), None)
        if at is None:
            return
        origin = items[at]
        items[at] = None
        if origin is not None:
            item["ScheduledTime"] = origin["Timestamp"]
            item["FunctionName"] = origin["Name"]

    for event in events:
        item: dict[str, Any] = {"EventType": event.kind, "Timestamp": timestamp(event.timestamp)}
        match event:
            case h.OrchestratorStarted():
                continue
            case h.ExecutionStarted():
                item["FunctionName"] = event.name
                if event.scheduled_start is not None:
                    item["ScheduledStartTime"] = timestamp(event.scheduled_start)
            case h.ExecutionCompleted():
                item["OrchestrationStatus"] = event.status.value
                if show_history_output:
                    item["Result"] = _json(event.result)
                if event.failure is not None:
                    item["FailureDetails"] = _failure(event.failure)
            case h.ContinueAsNew():
                item["OrchestrationStatus"] = "ContinuedAsNew"
                if show_history_output:
                    item["Result"] = _json(event.input)
            case h.ExecutionTerminated():
                pass  # Durable Functions drops the reason (its Input) here
            case h.ExecutionSuspended() | h.ExecutionResumed() | h.ExecutionRewound():
                item["Reason"] = event.reason
            case h.TaskScheduled() | h.SubOrchestrationInstanceCreated():
                item["Name"] = event.name
                if isinstance(event, h.SubOrchestrationInstanceCreated):
                    item["InstanceId"] = event.instance_id
                scheduled[(event.kind, event.event_id)] = len(items)
            case h.TaskCompleted():
                fold("TaskScheduled", item, event.task_scheduled_id)
                if show_history_output:
                    item["Result"] = _json(event.result)
            case h.TaskFailed():
                fold("TaskScheduled", item, event.task_scheduled_id)
                _failed(item, event.failure)
            case h.SubOrchestrationInstanceCompleted():
                fold("SubOrchestrationInstanceCreated", item, event.task_scheduled_id)
                if show_history_output:
                    item["Result"] = _json(event.result)
            case h.SubOrchestrationInstanceFailed():
                fold("SubOrchestrationInstanceCreated", item, event.task_scheduled_id)
                _failed(item, event.failure)
            case h.TimerCreated() | h.TimerFired():
                if event.fire_at is not None:
                    item["FireAt"] = timestamp(event.fire_at)
            case h.EventRaised():
                item["Name"] = event.name
            case h.EventSent():
                item["InstanceId"] = event.instance_id
                item["Name"] = event.name
                item["Input"] = _json(event.input)
        items.append(item)
    return [item for item in items if item is not None]
