"""The mutable state one orchestration run shares between its context and the executor."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskloom.converter import DataConverter
from taskloom.core.actions import Action
from taskloom.tasks import CompletableTask, ExternalEventTask


@dataclass
class ReplayState:
    """What the executor knows about a run: open actions, waiting tasks, buffered events.

    ``pending_actions`` holds actions the code produced that history has not recorded
    yet: on replay a recording event removes its action; after the last new event the
    ones left are the episode's new actions.
    """

    instance_id: str
    name: str
    converter: DataConverter
    input: str | None = None
    parent_instance_id: str | None = None
    version: str | None = None
    current_time: datetime | None = None
    is_replaying: bool = True
    sequence: int = 0
    uuid_counter: int = 0
    pending_actions: dict[int, Action] = field(default_factory=dict)
    open_tasks: dict[int, CompletableTask[Any]] = field(default_factory=dict)
    event_waiters: dict[str, deque[ExternalEventTask]] = field(default_factory=dict)
    event_buffer: dict[str, deque[tuple[str, str | None]]] = field(default_factory=dict)
    custom_status: str | None = None
    continued_as_new: tuple[str | None, bool] | None = None
    execution_id: str = ""
    # Entities: the critical section held or requested (lock id, sorted entity ids), and
    # the messages to entities that history does not record (lock releases), sent with
    # the episode that produced them (see docs/entities.md).
    critical_section: tuple[str, list[str]] | None = None
    entity_messages: list[tuple[str, str, str]] = field(default_factory=list)

    def next_id(self) -> int:
        task_id = self.sequence
        self.sequence += 1
        return task_id

    def add_action(self, action: Action, task: CompletableTask[Any] | None) -> None:
        self.pending_actions[action.id] = action
        if task is not None:
            self.open_tasks[action.id] = task
