"""Helper constructors for history events, and a tiny in-memory "worker" for executor tests.

Payloads are the converter's JSON text, as in a real history: ``completed(0, {"a": 1})``
stores ``'{"a":1}'``. Times default to ``T0``; ``at(seconds)`` gives a later instant.

:func:`drive` plays the worker's part without I/O: it runs a fresh executor over the
history plus one episode, then appends what the worker would append (the applied
events, one recording event per action, and ``ExecutionCompleted`` when the run ended).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from taskloom import history as h
from taskloom.context import OrchestrationContext
from taskloom.converter import default_converter
from taskloom.core.actions import (
    Action,
    recording_event,
)
from taskloom.core.executor import ExecutionResult, OrchestrationRun, Resolver, execute
from taskloom.models import FailureDetails, Status

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
IID = "inst-1"


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def dumps(value: Any) -> str | None:
    """A payload as history stores it (``None`` stays ``None``)."""
    return None if value is None else default_converter.dumps(value)


def loads(text: str | None) -> Any:
    return default_converter.loads(text)


# -- lifecycle ------------------------------------------------------------------------


def started(
    name: str,
    input: Any = None,
    *,
    t: datetime = T0,
    iid: str = IID,
    parent: h.ParentInstance | None = None,
    version: str | None = None,
) -> h.ExecutionStarted:
    return h.ExecutionStarted(
        t, -1, name, iid, "exec-1", dumps(input), version=version, parent=parent
    )


def orch_started(t: datetime = T0) -> h.OrchestratorStarted:
    return h.OrchestratorStarted(timestamp=t)


def execution_completed(
    result: Any = None,
    *,
    status: Status = Status.COMPLETED,
    failure: FailureDetails | None = None,
    t: datetime = T0,
) -> h.ExecutionCompleted:
    return h.ExecutionCompleted(t, status=status, result=dumps(result), failure=failure)


def terminated(
    reason: str | None = None, *, recurse: bool = True, t: datetime = T0
) -> h.HistoryEvent:
    return h.ExecutionTerminated(t, reason=reason, recurse=recurse)


def suspended(reason: str | None = None, *, t: datetime = T0) -> h.ExecutionSuspended:
    return h.ExecutionSuspended(t, reason=reason)


def resumed(reason: str | None = None, *, t: datetime = T0) -> h.ExecutionResumed:
    return h.ExecutionResumed(t, reason=reason)


def rewound(reason: str | None = None, *, t: datetime = T0) -> h.ExecutionRewound:
    return h.ExecutionRewound(t, reason=reason)


# -- activities -----------------------------------------------------------------------


def scheduled(
    id: int, name: str, input: Any = None, *, t: datetime = T0, retry_of: int | None = None
) -> h.TaskScheduled:
    return h.TaskScheduled(t, id, name=name, input=dumps(input), retry_of=retry_of)


def completed(id: int, result: Any = None, *, t: datetime = T0) -> h.TaskCompleted:
    return h.TaskCompleted(t, task_scheduled_id=id, result=dumps(result))


def failure(error_type: str = "ValueError", message: str = "boom") -> FailureDetails:
    return FailureDetails(error_type, message, "Traceback (most recent call last): ...")


def failed(
    id: int, error_type: str = "ValueError", message: str = "boom", *, t: datetime = T0
) -> h.TaskFailed:
    return h.TaskFailed(t, task_scheduled_id=id, failure=failure(error_type, message))


# -- timers and events ----------------------------------------------------------------


def timer_created(
    id: int,
    fire_at: datetime,
    *,
    purpose: str | None = None,
    t: datetime = T0,
    retry_of: int | None = None,
) -> h.TimerCreated:
    if purpose == "retry" and retry_of is None:
        retry_of = 0  # the first attempt is task #0 in these tests
    return h.TimerCreated(t, id, fire_at=fire_at, purpose=purpose, retry_of=retry_of)


def timer_fired(
    id: int, fire_at: datetime | None = None, *, t: datetime | None = None
) -> h.TimerFired:
    when = t or fire_at or T0
    return h.TimerFired(when, timer_id=id, fire_at=fire_at or when)


def event_raised(name: str, data: Any = None, *, t: datetime = T0) -> h.EventRaised:
    return h.EventRaised(t, name=name, input=dumps(data))


def event_sent(
    id: int, instance_id: str, name: str, data: Any = None, *, t: datetime = T0
) -> h.EventSent:
    return h.EventSent(t, id, instance_id=instance_id, name=name, input=dumps(data))


# -- sub-orchestrations ---------------------------------------------------------------


def sub_created(
    id: int,
    name: str,
    iid: str,
    input: Any = None,
    *,
    t: datetime = T0,
    retry_of: int | None = None,
) -> h.SubOrchestrationInstanceCreated:
    return h.SubOrchestrationInstanceCreated(
        t, id, name=name, instance_id=iid, input=dumps(input), retry_of=retry_of
    )


def sub_completed(
    id: int, result: Any = None, *, t: datetime = T0
) -> h.SubOrchestrationInstanceCompleted:
    return h.SubOrchestrationInstanceCompleted(t, task_scheduled_id=id, result=dumps(result))


def sub_failed(
    id: int, error_type: str = "ValueError", message: str = "boom", *, t: datetime = T0
) -> h.SubOrchestrationInstanceFailed:
    return h.SubOrchestrationInstanceFailed(
        t, task_scheduled_id=id, failure=failure(error_type, message)
    )


# -- episodes and the in-memory worker ------------------------------------------------


def episode(t: datetime, *events: h.HistoryEvent) -> list[h.HistoryEvent]:
    """What the worker feeds the executor as ``new``: ``OrchestratorStarted`` first."""
    return [orch_started(t), *events]


def recorded(actions: Sequence[Action], t: datetime = T0) -> list[h.HistoryEvent]:
    """The events the worker appends for an episode's actions."""
    return [recording_event(a, t) for a in actions]


@dataclass
class Driver:
    """Plays episodes against one instance the way the worker does, with no store.

    Each :meth:`step` replays the whole history on a fresh run (no sticky cache) unless
    ``sticky`` is set, in which case one :class:`OrchestrationRun` is kept and fed only
    the events it has not seen, as the worker's cache does.
    """

    resolve: Resolver
    iid: str = IID
    sticky: bool = False
    history: list[h.HistoryEvent] = field(default_factory=list)
    results: list[ExecutionResult] = field(default_factory=list)
    _run: OrchestrationRun | None = None

    def step(self, t: datetime, *events: h.HistoryEvent) -> ExecutionResult:
        new = episode(t, *events)
        if self.sticky:
            if self._run is None:
                self._run = OrchestrationRun(self.iid, self.resolve)
            result = self._run.execute(self.history[self._run.processed :], new)
        else:
            result = execute(self.iid, self.resolve, self.history, new)
        self.history.extend(result.applied)
        self.history.extend(recorded(result.actions, t))
        if result.status.is_terminal:
            self.history.append(
                h.ExecutionCompleted(
                    t, status=result.status, result=result.output, failure=result.failure
                )
            )
        self.results.append(result)
        return result


def resolver(**fns: Callable[..., Any]) -> Resolver:
    """``resolver(main=fn)``: a name -> orchestrator lookup."""
    return fns.get


# -- orchestrators shared by several test modules ------------------------------------

Gen = Generator[Any, Any, Any]


def chain(ctx: OrchestrationContext) -> Gen:
    """Two activities in a row: ``a(input)`` then ``b(result of a)``."""
    a = yield ctx.call_activity("a", ctx.get_input())
    b = yield ctx.call_activity("b", a)
    return [a, b]
