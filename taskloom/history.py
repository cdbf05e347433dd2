"""History events: the append-only record of everything that happened to an instance.

Kinds and fields follow the Durable Task Framework, so a history reads the same as in
Durable Functions and maps one-to-one onto the durabletask gRPC protocol. Payloads
(``input``, ``result``) are kept as the converter's JSON text, never as Python objects,
so the core does not depend on user types.

``event_id`` is the sequence number an orchestrator gave the action that caused the
event (a TaskScheduled, TimerCreated, ...), or -1 for events no action caused. A
completion names its action with ``task_scheduled_id`` (or ``timer_id``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from taskloom.models import FailureDetails, Status

_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
_dumps = functools.partial(json.dumps, separators=(",", ":"))


@dataclass(frozen=True)
class HistoryEvent:
    """Base of all events. ``timestamp`` is when the event was recorded (UTC)."""

    kind: ClassVar[str] = "HistoryEvent"
    timestamp: datetime
    event_id: int = -1


@dataclass(frozen=True)
class ParentInstance:
    """Who started a sub-orchestration, and which of its actions waits for it."""

    name: str
    instance_id: str
    task_scheduled_id: int
    execution_id: str = ""


@dataclass(frozen=True)
class ExecutionStarted(HistoryEvent):
    kind: ClassVar[str] = "ExecutionStarted"
    name: str = ""
    instance_id: str = ""
    execution_id: str = ""
    input: str | None = None
    version: str | None = None
    parent: ParentInstance | None = None
    scheduled_start: datetime | None = None
    # W3C trace context of the span that caused this (traceparent, tracestate), kept so
    # that one request is one trace across processes; tags are user labels.
    trace_parent: str | None = None
    trace_state: str | None = None
    tags: dict[str, str] | None = None


@dataclass(frozen=True)
class ExecutionCompleted(HistoryEvent):
    kind: ClassVar[str] = "ExecutionCompleted"
    status: Status = Status.COMPLETED
    result: str | None = None
    failure: FailureDetails | None = None


@dataclass(frozen=True)
class ExecutionTerminated(HistoryEvent):
    kind: ClassVar[str] = "ExecutionTerminated"
    reason: str | None = None
    recurse: bool = True


@dataclass(frozen=True)
class ExecutionSuspended(HistoryEvent):
    kind: ClassVar[str] = "ExecutionSuspended"
    reason: str | None = None


@dataclass(frozen=True)
class ExecutionResumed(HistoryEvent):
    kind: ClassVar[str] = "ExecutionResumed"
    reason: str | None = None


@dataclass(frozen=True)
class ExecutionRewound(HistoryEvent):
    kind: ClassVar[str] = "ExecutionRewound"
    reason: str | None = None


@dataclass(frozen=True)
class ContinueAsNew(HistoryEvent):
    kind: ClassVar[str] = "ContinueAsNew"
    input: str | None = None


@dataclass(frozen=True)
class OrchestratorStarted(HistoryEvent):
    kind: ClassVar[str] = "OrchestratorStarted"
    # The orchestration's own span, as the Durable Task SDK worker that ran the episode
    # reported it (the protocol's OrchestrationTraceContext), on the first event of the
    # episode that reported it, and only when it changed; the gRPC sidecar sends the
    # latest one back with the execution's next episodes. None in native histories.
    span_id: str | None = None
    span_started_at: datetime | None = None


@dataclass(frozen=True)
class TaskScheduled(HistoryEvent):
    kind: ClassVar[str] = "TaskScheduled"
    name: str = ""
    input: str | None = None
    version: str | None = None
    # For a retry: the event id of the first attempt (rewind removes failed retry chains).
    retry_of: int | None = None
    # W3C trace context of the span that caused this (traceparent, tracestate), kept so
    # that one request is one trace across processes; tags are user labels.
    trace_parent: str | None = None
    trace_state: str | None = None
    tags: dict[str, str] | None = None


@dataclass(frozen=True)
class TaskCompleted(HistoryEvent):
    kind: ClassVar[str] = "TaskCompleted"
    task_scheduled_id: int = -1
    result: str | None = None
    # When the attempt began to run (``timestamp`` is when it ended), so the dashboard
    # can split queue wait (scheduled to started) from run time; None in older histories.
    started_at: datetime | None = None


@dataclass(frozen=True)
class TaskFailed(HistoryEvent):
    kind: ClassVar[str] = "TaskFailed"
    task_scheduled_id: int = -1
    failure: FailureDetails | None = None
    started_at: datetime | None = None  # as on TaskCompleted


@dataclass(frozen=True)
class TimerCreated(HistoryEvent):
    kind: ClassVar[str] = "TimerCreated"
    fire_at: datetime | None = None
    # "retry" for the timers a RetryPolicy waits on (rewind removes them), None otherwise.
    purpose: str | None = None
    retry_of: int | None = None


@dataclass(frozen=True)
class TimerFired(HistoryEvent):
    kind: ClassVar[str] = "TimerFired"
    timer_id: int = -1
    fire_at: datetime | None = None


@dataclass(frozen=True)
class EventRaised(HistoryEvent):
    kind: ClassVar[str] = "EventRaised"
    name: str = ""
    input: str | None = None


@dataclass(frozen=True)
class EventSent(HistoryEvent):
    kind: ClassVar[str] = "EventSent"
    instance_id: str = ""
    name: str = ""
    input: str | None = None


@dataclass(frozen=True)
class SubOrchestrationInstanceCreated(HistoryEvent):
    kind: ClassVar[str] = "SubOrchestrationInstanceCreated"
    name: str = ""
    instance_id: str = ""
    input: str | None = None
    version: str | None = None
    retry_of: int | None = None
    # W3C trace context of the span that caused this (traceparent, tracestate), kept so
    # that one request is one trace across processes; tags are user labels.
    trace_parent: str | None = None
    trace_state: str | None = None
    tags: dict[str, str] | None = None


@dataclass(frozen=True)
class SubOrchestrationInstanceCompleted(HistoryEvent):
    kind: ClassVar[str] = "SubOrchestrationInstanceCompleted"
    task_scheduled_id: int = -1
    result: str | None = None


@dataclass(frozen=True)
class SubOrchestrationInstanceFailed(HistoryEvent):
    kind: ClassVar[str] = "SubOrchestrationInstanceFailed"
    task_scheduled_id: int = -1
    failure: FailureDetails | None = None


EVENT_TYPES: dict[str, type[HistoryEvent]] = {
    cls.kind: cls
    for cls in (
        ExecutionStarted,
        ExecutionCompleted,
        ExecutionTerminated,
        ExecutionSuspended,
        ExecutionResumed,
        ExecutionRewound,
        ContinueAsNew,
        OrchestratorStarted,
        TaskScheduled,
        TaskCompleted,
        TaskFailed,
        TimerCreated,
        TimerFired,
        EventRaised,
        EventSent,
        SubOrchestrationInstanceCreated,
        SubOrchestrationInstanceCompleted,
        SubOrchestrationInstanceFailed,
    )
}


def event_to_dict(event: HistoryEvent) -> dict[str, Any]:
    """The JSON-ready form: ``{"kind": ..., field: value, ...}``; defaults are left out."""
    data: dict[str, Any] = {"kind": event.kind}
    for name in _field_names(type(event)):
        value = getattr(event, name)
        if value is None or (name == "event_id" and value == -1):
            continue
        data[name] = value if type(value) in _PLAIN else _encode_field(value)
    return data


_PLAIN = frozenset({str, int, bool, float})
_FIELDS: dict[type[HistoryEvent], tuple[str, ...]] = {}


def _field_names(cls: type[HistoryEvent]) -> tuple[str, ...]:
    # dataclasses.fields() is slow enough to show in profiles of busy workers.
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _encode_field(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Status):
        return value.value
    if isinstance(value, FailureDetails):
        return value.to_dict()
    if isinstance(value, ParentInstance):
        return dataclasses.asdict(value)
    return value


_DATETIME_FIELDS = frozenset(
    {"timestamp", "fire_at", "scheduled_start", "started_at", "span_started_at"}
)
_DECODERS: dict[str, Callable[[Any], Any]] = {
    **{name: datetime.fromisoformat for name in _DATETIME_FIELDS},
    "status": Status,
    "failure": FailureDetails.from_dict,
    "parent": lambda value: ParentInstance(**value),
}


def event_from_dict(data: dict[str, Any]) -> HistoryEvent:
    """Inverse of :func:`event_to_dict`."""
    cls = EVENT_TYPES.get(data.get("kind", ""))
    if cls is None:
        raise ValueError(f"unknown history event kind {data.get('kind')!r}")
    decoders = _DECODERS
    kwargs = {
        name: value if (decode := decoders.get(name)) is None else decode(value)
        for name, value in data.items()
        if name != "kind"
    }
    return cls(**kwargs)


# The text of every stored event is written here on the hot path (every episode commit
# and every message), so it is built directly rather than through a dict and a fresh
# json.JSONEncoder per call; the result is exactly what
# ``json.dumps(event_to_dict(event), separators=(",", ":"))`` writes.
_PREFIXES: dict[type[HistoryEvent], tuple[str, tuple[tuple[str, str], ...]]] = {}


def _prefixes(cls: type[HistoryEvent]) -> tuple[str, tuple[tuple[str, str], ...]]:
    found = _PREFIXES.get(cls)
    if found is None:
        head = '{"kind":' + _quote(cls.kind)
        found = _PREFIXES[cls] = (head, tuple((n, f",{_quote(n)}:") for n in _field_names(cls)))
    return found


def dumps_event(event: HistoryEvent) -> str:
    head, fields = _prefixes(type(event))
    parts = [head]
    for name, key in fields:
        value = getattr(event, name)
        kind = type(value)
        if kind is str:
            parts.append(key + _quote(value))
        elif kind is int:
            if value != -1 or name != "event_id":
                parts.append(key + int.__repr__(value))
        elif kind is datetime:
            parts.append(f'{key}"{value.isoformat()}"')
        elif value is not None:
            parts.append(key + _dumps(_encode_field(value)))
    parts.append("}")
    return "".join(parts)


def loads_event(text: str) -> HistoryEvent:
    return event_from_dict(json.loads(text))
