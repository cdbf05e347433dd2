"""The orchestration context: everything orchestrator code may ask of the engine.

All of it is deterministic: time comes from history, ids from a counter, and every
call that reaches the outside world becomes an action recorded in history.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from taskloom.core.actions import CreateSubOrchestration, CreateTimer, ScheduleTask, SendEvent
from taskloom.core.state import ReplayState
from taskloom.entities import protocol as entity_protocol
from taskloom.entities.records import EntityId
from taskloom.entities.tasks import CriticalSection, EntityResponseTask
from taskloom.errors import OrchestrationError, TaskTimeoutError
from taskloom.models import FailureDetails
from taskloom.retry import RetryPolicy
from taskloom.tasks import (
    CompletableTask,
    ExternalEventTask,
    RetryableTask,
    Task,
    TimerTask,
    WhenAllTask,
    WhenAnyTask,
)

_UUID_NAMESPACE = uuid.UUID("6f1c3d0e-52a4-4b8e-9a55-1b2f0d7e9c41")


def function_name(fn_or_name: Callable[..., Any] | str) -> str:
    """The registered name of an activity or orchestrator given as a function or a name."""
    if isinstance(fn_or_name, str):
        return fn_or_name
    name = getattr(fn_or_name, "__taskloom_name__", None) or getattr(fn_or_name, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"expected a function or a name, got {fn_or_name!r}")
    return name


class OrchestrationContext:
    """Handed to every orchestrator; see the table in the API guide."""

    def __init__(self, state: ReplayState) -> None:
        self._state = state

    # -- identity -------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        return self._state.instance_id

    @property
    def name(self) -> str:
        return self._state.name

    @property
    def parent_instance_id(self) -> str | None:
        return self._state.parent_instance_id

    @property
    def version(self) -> str | None:
        return self._state.version

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs past history; use it to avoid duplicate logs."""
        return self._state.is_replaying

    @property
    def current_utc_datetime(self) -> datetime:
        """The time this episode started (aware, UTC): the same on every replay."""
        now = self._state.current_time
        assert now is not None, "the executor sets the time before running code"
        return now

    def get_input(self) -> Any:
        return self._state.converter.loads(self._state.input)

    def new_uuid(self) -> uuid.UUID:
        """A UUID that is the same on every replay of this point of the code."""
        self._state.uuid_counter += 1
        seed = f"{self.instance_id}_{self.current_utc_datetime.isoformat()}"
        return uuid.uuid5(_UUID_NAMESPACE, f"{seed}_{self._state.uuid_counter}")

    def set_custom_status(self, value: Any) -> None:
        """A JSON value shown in status queries (``None`` clears it)."""
        text = None if value is None else self._encode(value, "custom status")
        self._state.custom_status = text

    # -- activities and sub-orchestrations -----------------------------------------

    def call_activity(
        self,
        fn_or_name: Callable[..., Any] | str,
        input: Any = None,
        *,
        retry_policy: RetryPolicy | None = None,
    ) -> Task[Any]:
        """Schedule an activity; the task's result is its return value."""
        name = function_name(fn_or_name)
        text = self._encode(input, f"input of activity {name!r}")

        def start(retry_of: int | None = None, attempt: int = 1) -> CompletableTask[Any]:
            task_id = self._state.next_id()
            task: CompletableTask[Any] = CompletableTask(task_id, f"activity {name!r}")
            action = ScheduleTask(task_id, name, text, None, retry_of, attempt)
            self._state.add_action(action, task)
            return task

        return start() if retry_policy is None else RetryableTask(self, retry_policy, start)

    def call_activity_with_retry(
        self, fn_or_name: Callable[..., Any] | str, retry_policy: RetryPolicy, input: Any = None
    ) -> Task[Any]:
        """The Durable Functions spelling of ``call_activity(..., retry_policy=...)``."""
        return self.call_activity(fn_or_name, input, retry_policy=retry_policy)

    def call_sub_orchestrator(
        self,
        fn_or_name: Callable[..., Any] | str,
        input: Any = None,
        instance_id: str | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        version: str | None = None,
    ) -> Task[Any]:
        """Start a child orchestration and wait for its output.

        Without ``instance_id`` the child gets ``"{parent id}:{task id:04d}"``, which is
        stable across replays. A retry reuses an explicit ``instance_id`` (the failed
        child is replaced) and otherwise gets the id of its own task.
        """
        name = function_name(fn_or_name)
        text = self._encode(input, f"input of sub-orchestration {name!r}")

        def start(retry_of: int | None = None, attempt: int = 1) -> CompletableTask[Any]:
            task_id = self._state.next_id()
            child_id = instance_id or f"{self.instance_id}:{task_id:04d}"
            task: CompletableTask[Any] = CompletableTask(
                task_id, f"sub-orchestration {name!r} ({child_id})"
            )
            action = CreateSubOrchestration(task_id, name, child_id, text, version, retry_of)
            self._state.add_action(action, task)
            return task

        return start() if retry_policy is None else RetryableTask(self, retry_policy, start)

    # -- timers and events ----------------------------------------------------------

    def create_timer(self, fire_at: datetime | timedelta) -> TimerTask:
        """A durable timer firing at an aware datetime or after a timedelta."""
        if isinstance(fire_at, timedelta):
            fire_at = self.current_utc_datetime + fire_at
        elif fire_at.tzinfo is None:
            raise ValueError(
                f"create_timer needs an aware datetime, got naive {fire_at!r}; "
                "use ctx.current_utc_datetime + timedelta(...)"
            )
        return self._create_timer(fire_at, purpose=None)

    def _create_timer(
        self, fire_at: datetime, purpose: str | None, retry_of: int | None = None
    ) -> TimerTask:
        task_id = self._state.next_id()
        task = TimerTask(task_id, fire_at, self)
        self._state.add_action(CreateTimer(task_id, fire_at, purpose, retry_of), task)
        return task

    def _forget_task(self, task_id: int) -> None:
        self._state.open_tasks.pop(task_id, None)

    def wait_for_external_event(self, name: str, *, timeout: timedelta | None = None) -> Task[Any]:
        """Wait for ``raise_event(instance, name, data)``; names ignore case.

        Events that came before the wait are buffered and delivered first in, first out.
        With ``timeout`` the task fails with :class:`TaskTimeoutError` when none came.
        """
        key = name.lower()
        task = ExternalEventTask(name)
        buffered = self._state.event_buffer.get(key)
        if buffered:
            _, data = buffered.popleft()
            task._set_result(self._state.converter.loads(data))
            return task
        self._state.event_waiters.setdefault(key, deque()).append(task)
        if timeout is not None:
            timer = self._create_timer(self.current_utc_datetime + timeout, purpose=None)
            task.timer = timer
            timer._on_done(lambda _t: self._event_timed_out(key, task, timeout))
        return task

    def _event_timed_out(self, key: str, task: ExternalEventTask, timeout: timedelta) -> None:
        waiters = self._state.event_waiters.get(key)
        if waiters and task in waiters:
            waiters.remove(task)
        message = (
            f"orchestration {self.instance_id!r} waited {timeout} for external event "
            f"{task.name!r} and none arrived"
        )
        details = FailureDetails("taskloom.errors.TaskTimeoutError", message)
        task._set_exception(TaskTimeoutError(message, details))

    def task_all(self, tasks: Sequence[Task[Any]]) -> Task[list[Any]]:
        """A task completing with all results (in order), or failing with the first failure."""
        return WhenAllTask(tasks)

    def task_any(self, tasks: Sequence[Task[Any]]) -> Task[Task[Any]]:
        """A task completing with the first of ``tasks`` to finish."""
        return WhenAnyTask(tasks)

    def send_event(self, instance_id: str, name: str, data: Any = None) -> None:
        """Raise an event on another instance (fire and forget, recorded in history)."""
        text = self._encode(data, f"data of event {name!r}")
        self._state.add_action(SendEvent(self._state.next_id(), instance_id, name, text), None)

    # -- entities -------------------------------------------------------------------

    def call_entity(
        self, entity_id: EntityId | str, operation_name: str, input: Any = None
    ) -> Task[Any]:
        """Run an operation on an entity and wait for its result; the task fails with
        :class:`TaskFailedError` when the operation raised."""
        target = EntityId.of(entity_id)
        held = self._state.critical_section
        if held is not None and target.instance_id not in held[1]:
            raise OrchestrationError(
                f"orchestration {self.instance_id!r} called entity {target} inside a "
                "critical section that does not lock it; inside ctx.lock_entities(...) "
                "call only the locked entities (signal the others)"
            )
        text = self._encode(input, f"input of operation {operation_name!r} on {target}")
        request_id = str(self.new_uuid())
        body = entity_protocol.operation(
            operation_name,
            text,
            request_id=request_id,
            parent=self.instance_id,
            execution_id=self._state.execution_id,
        )
        action = SendEvent(
            self._state.next_id(), target.instance_id, entity_protocol.OPERATION, body
        )
        self._state.add_action(action, None)
        task = EntityResponseTask(request_id, f"operation {operation_name!r} on entity {target}")
        self._state.event_waiters.setdefault(request_id, deque()).append(task)
        return task

    def signal_entity(
        self, entity_id: EntityId | str, operation_name: str, input: Any = None
    ) -> None:
        """Send an operation to an entity without waiting (recorded in history)."""
        target = EntityId.of(entity_id)
        text = self._encode(input, f"input of operation {operation_name!r} on {target}")
        body = entity_protocol.operation(operation_name, text, parent=self.instance_id)
        action = SendEvent(
            self._state.next_id(), target.instance_id, entity_protocol.OPERATION, body
        )
        self._state.add_action(action, None)

    def lock_entities(self, entities: Sequence[EntityId | str]) -> Task[CriticalSection]:
        """Lock ``entities`` for a critical section: ``with (yield ctx.lock_entities([a,
        b])):``. Requests go to the entities in one global order (sorted ids), so
        orchestrations locking the same entities in any order never deadlock. The locks
        are released when the block ends or the orchestration ends in any way."""
        ids = sorted({EntityId.of(e) for e in entities})
        if not ids:
            raise ValueError("lock_entities needs at least one entity")
        if self._state.critical_section is not None:
            raise OrchestrationError(
                f"orchestration {self.instance_id!r} already holds a critical section; "
                "critical sections do not nest (lock all the entities at once)"
            )
        lock_id = str(self.new_uuid())
        targets = [e.instance_id for e in ids]
        body = entity_protocol.lock_request(
            lock_id, targets, 0, self.instance_id, self._state.execution_id
        )
        action = SendEvent(self._state.next_id(), targets[0], entity_protocol.OPERATION, body)
        self._state.add_action(action, None)
        self._state.critical_section = (lock_id, targets)

        def granted(_: Any) -> CriticalSection:
            return CriticalSection(lock_id, ids, self._release_locks)

        names = ", ".join(map(str, ids))
        task = EntityResponseTask(lock_id, f"lock of entities {names}", granted)
        self._state.event_waiters.setdefault(lock_id, deque()).append(task)
        return task

    def _release_locks(self, lock_id: str) -> None:
        held = self._state.critical_section
        if held is None or held[0] != lock_id:
            return
        self._state.critical_section = None
        if not self._state.is_replaying:
            body = entity_protocol.release(lock_id, self.instance_id)
            self._state.entity_messages.extend(
                (entity, entity_protocol.RELEASE, body) for entity in held[1]
            )

    # -- lifecycle ------------------------------------------------------------------

    def continue_as_new(self, input: Any = None, *, save_events: bool = False) -> None:
        """Finish this run and start the orchestration afresh with ``input`` and an empty
        history; with ``save_events`` unprocessed external events carry over."""
        text = self._encode(input, "input of continue_as_new")
        self._state.continued_as_new = (text, save_events)

    def _encode(self, value: Any, what: str) -> str | None:
        if value is None:
            return None
        return self._state.converter.dumps(value, what=what)
