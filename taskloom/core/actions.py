"""Actions: what an orchestrator asks for in an episode. The worker turns each into
history events and store writes; on replay each is matched against history by ``id``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from taskloom import history as h


@dataclass(frozen=True)
class Action:
    id: int

    def describe(self) -> str:
        return f"{type(self).__name__} #{self.id}"


@dataclass(frozen=True)
class ScheduleTask(Action):
    name: str
    input: str | None = None
    version: str | None = None
    retry_of: int | None = None  # the first attempt's id, for retries
    # Which try of a retry policy this is: handed to the activity, not recorded in
    # history, so it takes no part in replay matching.
    attempt: int = field(default=1, compare=False)

    def describe(self) -> str:
        return f"call_activity({self.name!r}) #{self.id}"


@dataclass(frozen=True)
class CreateTimer(Action):
    fire_at: datetime
    purpose: str | None = None
    retry_of: int | None = None

    def describe(self) -> str:
        return f"create_timer({self.fire_at.isoformat()}) #{self.id}"


@dataclass(frozen=True)
class CreateSubOrchestration(Action):
    name: str
    instance_id: str
    input: str | None = None
    version: str | None = None
    retry_of: int | None = None

    def describe(self) -> str:
        return f"call_sub_orchestrator({self.name!r}, instance_id={self.instance_id!r}) #{self.id}"


@dataclass(frozen=True)
class SendEvent(Action):
    instance_id: str
    name: str
    input: str | None = None

    def describe(self) -> str:
        return f"send_event({self.instance_id!r}, {self.name!r}) #{self.id}"


def recording_event(action: Action, timestamp: datetime) -> h.HistoryEvent:
    """The history event that records ``action`` (matched by ``event_id`` on replay)."""
    if isinstance(action, ScheduleTask):
        return h.TaskScheduled(
            timestamp, action.id, action.name, action.input, action.version, action.retry_of
        )
    if isinstance(action, CreateTimer):
        return h.TimerCreated(timestamp, action.id, action.fire_at, action.purpose, action.retry_of)
    if isinstance(action, CreateSubOrchestration):
        return h.SubOrchestrationInstanceCreated(
            timestamp,
            action.id,
            action.name,
            action.instance_id,
            action.input,
            action.version,
            action.retry_of,
        )
    if isinstance(action, SendEvent):
        return h.EventSent(timestamp, action.id, action.instance_id, action.name, action.input)
    raise TypeError(f"unknown action {action!r}")
