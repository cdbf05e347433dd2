"""The worker's spans: what an orchestration episode records, as OpenTelemetry spans.

The worker calls :meth:`EpisodeTraces.prepare` for each planned episode while tracing is
on. It follows the instance's history (kept per instance beside the sticky cache, so an
episode costs only its new events) and returns the commit with trace contexts stamped on
what leaves the episode (the work items' ``trace_parent``, a sub-orchestration's
``ExecutionStarted.trace_parent``), and the spans to emit if the commit applies:

- ``activity:{name}`` (client) from ``TaskScheduled`` to its result; the activity's run
  (server span, :mod:`taskloom.runtime.activities`) is its child;
- ``orchestration:{name}`` (client) from ``SubOrchestrationInstanceCreated`` to the
  child's result; the child's own orchestration span is its child;
- ``orchestration:{name}:timer`` (internal) from ``TimerCreated`` to the episode that
  applied the ``TimerFired``;
- ``orchestration_event:{name}`` (producer) for each ``EventSent``;
- ``orchestration:{name}`` (server) from the first episode to completion, emitted at
  completion (or at continue-as-new), with the derived span id its children point to.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from taskloom import history as h
from taskloom.entities.records import is_entity_id
from taskloom.models import Status
from taskloom.observability import spans
from taskloom.observability.context import OrchestrationTrace, TraceContext
from taskloom.runtime.episodes import Planned
from taskloom.storage.base import EpisodeCommit, LeasedEpisode, Message, NewInstance

Emit = Callable[[], None]

log = logging.getLogger("taskloom.worker")


def trace_batch(
    traces: EpisodeTraces,
    episodes: Iterable[LeasedEpisode],
    histories: Mapping[str, Sequence[h.HistoryEvent]],
    planned: Mapping[str, Planned],
) -> dict[str, list[Emit]]:
    """Stamp the planned commits of a batch (in place); the spans of each instance."""
    out: dict[str, list[Emit]] = {}
    for episode in episodes:
        iid = episode.instance.instance_id
        plan = planned.get(iid)
        if plan is None or is_entity_id(iid):
            continue
        plan.commit, out[iid] = traces.prepare(episode, histories.get(iid, ()), plan.commit)
    return out


def emit_all(emits: Iterable[Emit]) -> None:
    """Emit spans; a failing exporter is logged, never the worker's problem."""
    for emit in emits:
        try:
            emit()
        except Exception:
            log.exception("emitting a span failed")


@dataclass
class _Scheduled:
    kind: str  # "activity", "suborchestration", "timer"
    name: str
    at: datetime
    target: str = ""  # a child's instance id
    fire_at: datetime | None = None


@dataclass
class _State:
    """What the spans of one execution need from its history so far."""

    trace: OrchestrationTrace
    fed: int = 0  # history events seen
    name: str = ""
    version: str | None = None
    started: datetime | None = None
    now: datetime | None = None  # the last episode's time
    scheduled: dict[int, _Scheduled] = field(default_factory=dict)


def trace_of(started: h.ExecutionStarted, execution_id: str | None = None) -> OrchestrationTrace:
    """The trace of the execution ``started`` begins."""
    parent = TraceContext.parse(started.trace_parent, started.trace_state)
    return OrchestrationTrace(started.instance_id, execution_id or started.execution_id, parent)


class EpisodeTraces:
    """Per-worker tracing state of the instances it runs (LRU, ``size`` entries)."""

    def __init__(self, size: int = 10_000) -> None:
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._size = size

    def forget(self, instance_id: str) -> None:
        self._states.pop(instance_id, None)

    def prepare(
        self, episode: LeasedEpisode, history: Sequence[h.HistoryEvent], commit: EpisodeCommit
    ) -> tuple[EpisodeCommit, list[Emit]]:
        """``commit`` with trace contexts stamped, and the spans to emit once it applied.
        ``history`` starts with the ``history_len`` events stored before the episode."""
        rec = episode.instance
        if commit.replace_history and commit.instance.status is not Status.CONTINUED_AS_NEW:
            # A rewind: start over from the new history, emit nothing for it.
            self.forget(rec.instance_id)
            state = self._build(rec.instance_id, rec.execution_id, commit.history)
            if state is not None:
                self._keep(rec.instance_id, state)
            return self._stamp(commit, state), []
        state = self._states.get(rec.instance_id)
        if state is None or state.trace.execution_id != rec.execution_id:
            state = None
        if state is None or state.fed != rec.history_len:
            state = self._build(rec.instance_id, rec.execution_id, history[: rec.history_len])
        new = () if commit.replace_history else commit.history
        emits: list[Emit] = []
        if state is None:
            started = next((e for e in new if isinstance(e, h.ExecutionStarted)), None)
            if started is None:
                return commit, []
            state = _State(trace_of(started, rec.execution_id))
        for event in new:
            emit = _feed(state, event)
            if emit is not None:
                emits.append(emit)
        state.fed = commit.instance.history_len
        status = commit.instance.status
        if status is Status.CONTINUED_AS_NEW:
            emits.append(_orchestration_span(state, "ContinuedAsNew", None, state.now))
        if status.is_terminal or status is Status.CONTINUED_AS_NEW:
            self.forget(rec.instance_id)
        else:
            self._keep(rec.instance_id, state)
        return self._stamp(commit, state), emits

    def _keep(self, instance_id: str, state: _State) -> None:
        self._states[instance_id] = state
        self._states.move_to_end(instance_id)
        while len(self._states) > self._size:
            self._states.popitem(last=False)

    def _build(
        self, instance_id: str, execution_id: str, events: Sequence[h.HistoryEvent]
    ) -> _State | None:
        started = next((e for e in events if isinstance(e, h.ExecutionStarted)), None)
        if started is None:
            return None
        state = _State(trace_of(started, execution_id))
        for event in events:
            _feed(state, event, emit=False)
        state.fed = len(events)
        return state

    def _stamp(self, commit: EpisodeCommit, state: _State | None) -> EpisodeCommit:
        if state is None:
            return commit
        trace = state.trace
        work = [
            w
            if w.trace_parent
            else dataclasses.replace(w, trace_parent=trace.task("activity", w.task_id).traceparent)
            for w in commit.work_items
        ]
        children = [_stamp_child(new, trace) for new in commit.new_instances]
        messages = list(commit.messages)
        if commit.instance.status is Status.CONTINUED_AS_NEW:
            # The next generation continues the trace: a sibling under the same parent.
            follow = trace.parent or trace.context
            messages = [_stamp_start(m, follow) for m in messages]
        return dataclasses.replace(
            commit, work_items=work, new_instances=children, messages=messages
        )


def _stamp_start(message: Message, ctx: TraceContext) -> Message:
    event = message.event
    if not isinstance(event, h.ExecutionStarted) or event.trace_parent:
        return message
    stamped = dataclasses.replace(event, trace_parent=ctx.traceparent, trace_state=ctx.state)
    return dataclasses.replace(message, event=stamped)


def _stamp_child(new: NewInstance, trace: OrchestrationTrace) -> NewInstance:
    event = new.start.event
    if not isinstance(event, h.ExecutionStarted) or event.parent is None:
        return new
    ctx = trace.task("suborchestration", event.parent.task_scheduled_id)
    return dataclasses.replace(new, start=_stamp_start(new.start, ctx))


_RESULTS = (
    h.TaskCompleted,
    h.TaskFailed,
    h.SubOrchestrationInstanceCompleted,
    h.SubOrchestrationInstanceFailed,
)


def _feed(state: _State, event: h.HistoryEvent, *, emit: bool = True) -> Emit | None:
    """Take ``event`` into ``state``; the span it completes, if any (and ``emit``)."""
    if isinstance(event, h.OrchestratorStarted):
        state.now = event.timestamp
        if state.started is None:
            state.started = event.timestamp
    elif isinstance(event, h.ExecutionStarted):
        state.name, state.version = event.name, event.version
    elif isinstance(event, h.TaskScheduled):
        state.scheduled[event.event_id] = _Scheduled("activity", event.name, event.timestamp)
    elif isinstance(event, h.SubOrchestrationInstanceCreated):
        child = _Scheduled("suborchestration", event.name, event.timestamp, event.instance_id)
        state.scheduled[event.event_id] = child
    elif isinstance(event, h.TimerCreated):
        timer = _Scheduled("timer", state.name, event.timestamp, fire_at=event.fire_at)
        state.scheduled[event.event_id] = timer
    elif isinstance(event, _RESULTS):
        task_id = getattr(event, "task_scheduled_id", -1)
        done = state.scheduled.pop(task_id, None)
        if done is not None and emit:
            return _task_span(state, task_id, done, event.timestamp, _message(event))
    elif isinstance(event, h.TimerFired):
        done = state.scheduled.pop(event.timer_id, None)
        if done is not None and emit:
            return _timer_span(state, event.timer_id, done, state.now or event.timestamp)
    elif isinstance(event, h.EventSent) and emit:
        return _event_span(state, event)
    elif isinstance(event, h.ExecutionCompleted) and emit:
        error = None
        if event.status is Status.FAILED:
            error = event.failure.message if event.failure else "failed"
        return _orchestration_span(state, event.status.value, error, event.timestamp)
    return None


def _message(event: h.HistoryEvent) -> str | None:
    failure = getattr(event, "failure", None)
    if isinstance(event, h.TaskFailed | h.SubOrchestrationInstanceFailed):
        return failure.message if failure is not None else "failed"
    return None


def _task_span(
    state: _State, task_id: int, done: _Scheduled, end: datetime, error: str | None
) -> Emit:
    trace = state.trace
    if done.kind == "activity":
        name, kind = f"activity:{done.name}", "activity"
        attributes: dict[str, str | int | bool] = {
            spans.TYPE: "activity",
            spans.NAME: done.name,
            spans.INSTANCE_ID: trace.instance_id,
            spans.TASK_ID: task_id,
        }
    else:
        name, kind = f"orchestration:{done.name}", "suborchestration"
        attributes = {
            spans.TYPE: "orchestration",
            spans.NAME: done.name,
            spans.INSTANCE_ID: done.target,
            spans.TASK_ID: task_id,
        }
    ids = trace.task(kind, task_id)
    parent = trace.context
    return lambda: spans.emit(
        name, "client", parent, done.at, end, attributes, ids=ids, error=error
    )


def _timer_span(state: _State, timer_id: int, done: _Scheduled, end: datetime) -> Emit:
    attributes: dict[str, str | int | bool] = {
        spans.TYPE: "timer",
        spans.NAME: state.name,
        spans.INSTANCE_ID: state.trace.instance_id,
        spans.TASK_ID: timer_id,
    }
    if done.fire_at is not None:
        attributes[spans.FIRE_AT] = done.fire_at.isoformat()
    parent = state.trace.context
    name = f"orchestration:{state.name}:timer"
    return lambda: spans.emit(name, "internal", parent, done.at, end, attributes)


def _event_span(state: _State, event: h.EventSent) -> Emit:
    attributes: dict[str, str | int | bool] = {
        spans.TYPE: "event",
        spans.NAME: event.name,
        spans.INSTANCE_ID: state.trace.instance_id,
        spans.EXECUTION_ID: state.trace.execution_id,
        spans.EVENT_TARGET: event.instance_id,
    }
    parent = state.trace.context
    name = f"orchestration_event:{event.name}"
    at = event.timestamp
    return lambda: spans.emit(name, "producer", parent, at, at, attributes)


def _orchestration_span(
    state: _State, status: str, error: str | None, end: datetime | None
) -> Emit:
    trace = state.trace
    attributes: dict[str, str | int | bool] = {
        spans.TYPE: "orchestration",
        spans.NAME: state.name,
        spans.INSTANCE_ID: trace.instance_id,
        spans.EXECUTION_ID: trace.execution_id,
        spans.STATUS: status,
    }
    if state.version:
        attributes[spans.VERSION] = state.version
    start = state.started or end
    finish = end or start
    ids = trace.context
    name = f"orchestration:{state.name}"

    def emit() -> None:
        if start is not None and finish is not None:
            spans.emit(
                name, "server", trace.parent, start, finish, attributes, ids=ids, error=error
            )

    return emit
