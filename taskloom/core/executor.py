"""The replay executor: runs orchestrator code against its history. Pure: no I/O, no clock.

``execute(past, new)`` replays ``past`` (events already in history), then applies ``new``
(the episode's incoming events), and returns the actions the code produced that history
does not yet record, plus the run's status. One small ``_apply_<Kind>`` method per event
kind. An :class:`OrchestrationRun` can be kept between episodes (the worker's sticky
cache) and fed only the events it has not seen.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskloom import history as h
from taskloom.context import OrchestrationContext
from taskloom.converter import DataConverter, default_converter
from taskloom.core import nondeterminism
from taskloom.core.actions import (
    Action,
    CreateSubOrchestration,
    CreateTimer,
    ScheduleTask,
    SendEvent,
)
from taskloom.core.state import ReplayState
from taskloom.entities.protocol import RELEASE, release
from taskloom.entities.tasks import EntityResponseTask
from taskloom.errors import NonDeterminismError, TaskFailedError
from taskloom.models import FailureDetails, Status
from taskloom.tasks import Task

# Resolves an orchestrator name to a callable taking the context (None when unknown).
Resolver = Callable[[str], Callable[[OrchestrationContext], Any] | None]


@dataclass
class ExecutionResult:
    """What one episode decided. ``applied`` are the new events to append to history
    (duplicates and stale completions are left out)."""

    status: Status
    actions: list[Action] = field(default_factory=list)
    applied: list[h.HistoryEvent] = field(default_factory=list)
    output: str | None = None
    failure: FailureDetails | None = None
    custom_status: str | None = None
    new_input: str | None = None
    carryover: list[tuple[str, str | None]] = field(default_factory=list)
    open_children: list[str] = field(default_factory=list)
    # (entity instance id, event name, body): unrecorded messages to entities (releases).
    entity_messages: list[tuple[str, str, str]] = field(default_factory=list)


class OrchestrationRun:
    """One execution of one orchestration instance, replayable event by event."""

    def __init__(
        self,
        instance_id: str,
        resolve: Resolver,
        converter: DataConverter = default_converter,
        known_names: Callable[[], Sequence[str]] = tuple,
    ) -> None:
        self.state = ReplayState(instance_id=instance_id, name="", converter=converter)
        self.ctx = OrchestrationContext(self.state)
        self.processed = 0
        self._resolve = resolve
        self._known_names = known_names
        self._gen: Generator[Any, Any, Any] | None = None
        self._current: Task[Any] | None = None
        self._status = Status.PENDING
        self._output: str | None = None
        self._failure: FailureDetails | None = None
        self._suspended: list[h.HistoryEvent] | None = None
        self._children: dict[int, str] = {}
        self._applied: list[h.HistoryEvent] = []
        self._late_events: list[h.EventRaised] = []

    @property
    def is_done(self) -> bool:
        return self._status.is_terminal or self._status is Status.CONTINUED_AS_NEW

    def execute(
        self, past: Sequence[h.HistoryEvent], new: Sequence[h.HistoryEvent]
    ) -> ExecutionResult:
        """Replay ``past``, apply ``new``, and report the episode's outcome."""
        self._applied = []
        self._late_events = []
        self.state.entity_messages = []
        try:
            self.state.is_replaying = True
            for event in past:
                self._apply(event, is_new=False)
            self.state.is_replaying = False
            for index, event in enumerate(new):
                if self.is_done:
                    # Events that came after continue_as_new belong to the next run.
                    rest = new[index:]
                    self._late_events = [e for e in rest if isinstance(e, h.EventRaised)]
                    break
                self._apply(event, is_new=True)
        except NonDeterminismError as exc:
            self.state.is_replaying = False  # the run fails now, in this episode
            self._fail(exc)
        except Exception as exc:
            # A retry policy's ``handle`` or a converter raised while applying an event:
            # the orchestration fails with that error rather than retrying forever.
            self.state.is_replaying = False
            self._fail(exc)
        self.processed += len(past) + len(self._applied)
        return self._result()

    # -- dispatch -------------------------------------------------------------------

    def _apply(self, event: h.HistoryEvent, *, is_new: bool) -> None:
        if is_new:
            self._applied.append(event)
        if self._suspended is not None and not isinstance(
            event,
            h.ExecutionResumed
            | h.ExecutionTerminated
            | h.OrchestratorStarted
            | h.ExecutionSuspended,
        ):
            self._suspended.append(event)
            return
        handler = getattr(self, f"_apply_{event.kind}", None)
        if handler is not None:
            handler(event)
        if not self.is_done:
            self._resume()

    def _drop_if_new(self, event: h.HistoryEvent) -> None:
        # A completion nobody waits for (a duplicate, or for a cancelled timer) is not
        # recorded; on replay such events are ignored the same way.
        if self.state.is_replaying:
            return
        for index in range(len(self._applied) - 1, -1, -1):
            if self._applied[index] is event:
                del self._applied[index]
                return

    # -- lifecycle events -----------------------------------------------------------

    def _apply_OrchestratorStarted(self, event: h.OrchestratorStarted) -> None:
        self.state.current_time = event.timestamp

    def _apply_ExecutionStarted(self, event: h.ExecutionStarted) -> None:
        if self._status is not Status.PENDING:
            self._drop_if_new(event)  # a duplicate start message: the run is under way
            return
        st = self.state
        st.name, st.input, st.version = event.name, event.input, event.version
        st.execution_id = event.execution_id
        st.parent_instance_id = event.parent.instance_id if event.parent else None
        if st.current_time is None:
            st.current_time = event.timestamp
        self._status = Status.RUNNING
        fn = self._resolve(event.name)
        if fn is None:
            names = ", ".join(sorted(self._known_names())) or "none"
            message = (
                f"no orchestrator named {event.name!r} is registered with this app "
                f"(registered: {names}); register it with @app.orchestrator or fix the name"
            )
            self._finish(Status.FAILED, failure=FailureDetails("OrchestratorNotFound", message))
            return
        try:
            produced = fn(self.ctx)
        except Exception as exc:
            self._fail(exc)
            return
        if inspect.isgenerator(produced):
            self._gen = produced
            self._step(None)
        else:
            self._complete(produced)

    def _apply_ExecutionCompleted(self, event: h.ExecutionCompleted) -> None:
        self._finish(event.status, output=event.result, failure=event.failure)

    def _apply_ExecutionTerminated(self, event: h.ExecutionTerminated) -> None:
        output = None if event.reason is None else self.state.converter.dumps(event.reason)
        self._finish(Status.TERMINATED, output=output)

    def _apply_ExecutionSuspended(self, event: h.ExecutionSuspended) -> None:
        if self._suspended is None:  # suspending a suspended run changes nothing
            self._suspended = []

    def _apply_ExecutionResumed(self, event: h.ExecutionResumed) -> None:
        held, self._suspended = self._suspended or [], None
        for queued in held:
            handler = getattr(self, f"_apply_{queued.kind}", None)
            if handler is not None:
                handler(queued)
            if self.is_done:
                return
            self._resume()

    # -- events that record actions -------------------------------------------------

    def _record(self, event: h.HistoryEvent, kind: type[Action], name: str | None) -> Action:
        action = self.state.pending_actions.pop(event.event_id, None)
        if action is None:
            raise nondeterminism.missing_action(self.state, event)
        if not isinstance(action, kind) or (name is not None and name != _action_name(action)):
            raise nondeterminism.wrong_action(self.state, event, action)
        return action

    def _apply_TaskScheduled(self, event: h.TaskScheduled) -> None:
        self._record(event, ScheduleTask, event.name)

    def _apply_TimerCreated(self, event: h.TimerCreated) -> None:
        self._record(event, CreateTimer, None)

    def _apply_SubOrchestrationInstanceCreated(
        self, event: h.SubOrchestrationInstanceCreated
    ) -> None:
        self._record(event, CreateSubOrchestration, event.name)
        self._children[event.event_id] = event.instance_id

    def _apply_EventSent(self, event: h.EventSent) -> None:
        self._record(event, SendEvent, event.name)

    # -- completions ----------------------------------------------------------------

    def _apply_TaskCompleted(self, event: h.TaskCompleted) -> None:
        self._complete_task(event, event.task_scheduled_id, event.result)

    def _apply_TaskFailed(self, event: h.TaskFailed) -> None:
        self._fail_task(event, event.task_scheduled_id, event.failure, "activity")

    def _apply_SubOrchestrationInstanceCompleted(
        self, event: h.SubOrchestrationInstanceCompleted
    ) -> None:
        self._children.pop(event.task_scheduled_id, None)
        self._complete_task(event, event.task_scheduled_id, event.result)

    def _apply_SubOrchestrationInstanceFailed(
        self, event: h.SubOrchestrationInstanceFailed
    ) -> None:
        self._children.pop(event.task_scheduled_id, None)
        self._fail_task(event, event.task_scheduled_id, event.failure, "sub-orchestration")

    def _apply_TimerFired(self, event: h.TimerFired) -> None:
        task = self.state.open_tasks.pop(event.timer_id, None)
        if task is None:
            self._drop_if_new(event)
            return
        task._set_result(None)

    def _apply_EventRaised(self, event: h.EventRaised) -> None:
        key = event.name.lower()
        waiters = self.state.event_waiters.get(key)
        if waiters:
            waiter = waiters.popleft()
            if waiter.timer is not None:
                waiter.timer.cancel()
            if isinstance(waiter, EntityResponseTask):
                waiter._receive(event.input, self.state.converter)
            else:
                waiter._set_result(self.state.converter.loads(event.input))
        else:
            self.state.event_buffer.setdefault(key, deque()).append((event.name, event.input))

    def _complete_task(self, event: h.HistoryEvent, task_id: int, result: str | None) -> None:
        task = self.state.open_tasks.pop(task_id, None)
        if task is None:
            self._drop_if_new(event)
            return
        try:
            value = self.state.converter.loads(result)
        except Exception as exc:
            task._set_exception(exc)
            return
        task._set_result(value)

    def _fail_task(
        self, event: h.HistoryEvent, task_id: int, failure: FailureDetails | None, what: str
    ) -> None:
        task = self.state.open_tasks.pop(task_id, None)
        if task is None:
            self._drop_if_new(event)
            return
        details = failure or FailureDetails("Unknown", "the task failed without details")
        message = f"{getattr(task, 'description', what)} failed: {details.message}"
        task._set_exception(TaskFailedError(message, details))

    # -- driving the generator ------------------------------------------------------

    def _resume(self) -> None:
        while self._gen is not None and not self.is_done:
            task = self._current
            if task is None or not task.is_complete:
                return
            self._step(task._result, task.get_exception())

    def _step(self, value: Any, exc: BaseException | None = None) -> None:
        """Advance the generator by sending ``value`` (or throwing ``exc``) into it."""
        assert self._gen is not None
        try:
            yielded = self._gen.throw(exc) if exc is not None else self._gen.send(value)
        except StopIteration as stop:
            self._complete(stop.value)
            return
        except Exception as err:
            self._fail(err)
            return
        if self.state.continued_as_new is not None:
            self._finish(Status.CONTINUED_AS_NEW)
            return
        if not isinstance(yielded, Task):
            self._fail(
                TypeError(
                    f"orchestrator {self.state.name!r} yielded {yielded!r}; yield only the "
                    "tasks that ctx methods return (call_activity, create_timer, task_all, ...)"
                )
            )
            return
        self._current = yielded

    def _complete(self, value: Any) -> None:
        if self.state.continued_as_new is not None:
            self._finish(Status.CONTINUED_AS_NEW)
            return
        try:
            output = (
                None
                if value is None
                else self.state.converter.dumps(
                    value, what=f"output of orchestration {self.state.name!r}"
                )
            )
        except Exception as exc:
            self._fail(exc)
            return
        self._finish(Status.COMPLETED, output=output)

    def _fail(self, exc: BaseException) -> None:
        self._finish(Status.FAILED, failure=FailureDetails.from_exception(exc))

    def _finish(
        self, status: Status, *, output: str | None = None, failure: FailureDetails | None = None
    ) -> None:
        self._status, self._output, self._failure = status, output, failure
        if self._gen is not None:
            self._gen.close()
            self._gen = None

    def _result(self) -> ExecutionResult:
        st = self.state
        status = self._status
        if status is Status.RUNNING and self._suspended is not None:
            status = Status.SUSPENDED
        result = ExecutionResult(
            status=status,
            applied=self._applied,
            output=self._output,
            failure=self._failure,
            custom_status=st.custom_status,
        )
        if status is Status.CONTINUED_AS_NEW and st.continued_as_new is not None:
            result.new_input, save_events = st.continued_as_new
            if save_events:
                result.carryover = [item for queue in st.event_buffer.values() for item in queue]
            result.carryover += [(e.name, e.input) for e in self._late_events]
        if status is Status.TERMINATED:
            result.open_children = list(self._children.values())
        if self.is_done and st.critical_section is not None and not st.is_replaying:
            # Ended in any way while holding (or waiting for) locks: release them.
            lock_id, entities = st.critical_section
            st.critical_section = None
            body = release(lock_id, st.instance_id)
            st.entity_messages.extend((entity, RELEASE, body) for entity in entities)
        result.entity_messages = list(st.entity_messages)
        if not self.is_done:
            result.actions = list(st.pending_actions.values())
        elif status is not Status.FAILED:
            # Events sent just before finishing (notify, then return or continue as new)
            # still go out; anything else scheduled with them is moot once the run ends.
            result.actions = [a for a in st.pending_actions.values() if isinstance(a, SendEvent)]
        return result


def _action_name(action: Action) -> str | None:
    return getattr(action, "name", None)


def execute(
    instance_id: str,
    resolve: Resolver,
    past: Sequence[h.HistoryEvent],
    new: Sequence[h.HistoryEvent],
    converter: DataConverter = default_converter,
    known_names: Callable[[], Sequence[str]] = tuple,
) -> ExecutionResult:
    """Replay ``past`` and apply ``new`` on a fresh run (the pure entry point)."""
    return OrchestrationRun(instance_id, resolve, converter, known_names).execute(past, new)
