"""One orchestration episode: incoming messages + history -> executor -> EpisodeCommit.

Everything here is synchronous and does no I/O: the worker leases, calls
:func:`plan_episode`, and commits what it returns.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from taskloom import history as h
from taskloom.converter import default_converter
from taskloom.core.actions import (
    Action,
    CreateSubOrchestration,
    CreateTimer,
    ScheduleTask,
    SendEvent,
    recording_event,
)
from taskloom.core.executor import ExecutionResult, OrchestrationRun
from taskloom.core.rewind import Rewound, rewind_history
from taskloom.models import FailureDetails, Status
from taskloom.storage.base import (
    AT_ONCE,
    EpisodeCommit,
    InstanceRecord,
    LeasedEpisode,
    Message,
    NewInstance,
    NewWorkItem,
)

RunFactory = Callable[[str], OrchestrationRun]


@dataclass
class Planned:
    """A commit to apply and, if the run may continue, the run and history to cache."""

    commit: EpisodeCommit
    run: OrchestrationRun | None = None
    history: list[h.HistoryEvent] = field(default_factory=list)


@dataclass
class _Outbox:
    history: list[h.HistoryEvent] = field(default_factory=list)
    work_items: list[NewWorkItem] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    new_instances: list[NewInstance] = field(default_factory=list)


def plan_episode(
    episode: LeasedEpisode,
    history: list[h.HistoryEvent],
    cached: OrchestrationRun | None,
    new_run: RunFactory,
    now: datetime,
    *,
    sub_version: str | None = None,
) -> Planned:
    """Decide what one episode writes. ``cached`` is a run that has seen ``history``;
    ``new_run(instance_id)`` makes a fresh one. Sub-orchestrations started without a
    version get ``sub_version`` (the app's default version, else its version)."""
    rec = episode.instance
    consumed = [m.id for m in episode.messages]
    current = current_messages(episode)
    if rewind_due(episode):
        return _rewind(episode, history, new_run, now, consumed, sub_version)
    planned = plan_without_code(episode, history, now)
    if planned is not None:
        return planned
    events = [m.event for m in current]
    run = cached if cached is not None and history else None
    if run is None:
        run = new_run(rec.instance_id)
        past: Sequence[h.HistoryEvent] = history
    else:
        past = history[run.processed :]
    result = run.execute(past, [h.OrchestratorStarted(timestamp=now), *events])
    return _commit(
        episode, history, run, result, now, consumed, replace=False, sub_version=sub_version
    )


def current_messages(episode: LeasedEpisode) -> list[Message]:
    """The messages meant for the instance's current execution (results of a run that
    continued as new are consumed, never applied)."""
    eid = episode.instance.execution_id
    return [m for m in episode.messages if m.execution_id is None or m.execution_id == eid]


def rewind_due(episode: LeasedEpisode) -> bool:
    """Whether the episode rewinds a failed instance (an ``ExecutionRewound`` arrived)."""
    return episode.instance.status is Status.FAILED and any(
        isinstance(m.event, h.ExecutionRewound) for m in current_messages(episode)
    )


def plan_without_code(
    episode: LeasedEpisode, history: list[h.HistoryEvent], now: datetime
) -> Planned | None:
    """The commit of an episode that runs no orchestrator code, or None when code must
    run: messages for a finished instance are dropped; messages that arrive before a
    scheduled start wait for it (a terminate ends the instance unstarted). Not for a
    rewind (:func:`rewind_due`)."""
    rec = episode.instance
    consumed = [m.id for m in episode.messages]
    if rec.status.is_terminal:
        return Planned(EpisodeCommit(rec, episode.lease_token, consumed))
    current = current_messages(episode)
    started = not history and any(isinstance(m.event, h.ExecutionStarted) for m in current)
    if not history and not started:
        return _defer_until_start(episode, now, consumed)
    return None


def commit_result(
    episode: LeasedEpisode,
    history: Sequence[h.HistoryEvent],
    result: ExecutionResult,
    now: datetime,
    *,
    replace: bool = False,
) -> EpisodeCommit:
    """The commit of an episode whose orchestrator ran elsewhere (an SDK worker of the
    gRPC sidecar), from ``result`` as the executor would have returned it: the same
    writes, messages to parents and children, and continue-as-new as a native episode."""
    consumed = [m.id for m in episode.messages]
    planned = _commit(episode, list(history), None, result, now, consumed, replace=replace)
    return planned.commit


def _rewind(
    episode: LeasedEpisode,
    history: list[h.HistoryEvent],
    new_run: RunFactory,
    now: datetime,
    consumed: list[int],
    sub_version: str | None = None,
) -> Planned:
    rewound, new = prepare_rewind(episode, history, now)
    run = new_run(episode.instance.instance_id)
    result = run.execute(rewound.history, new)
    planned = _commit(
        episode, rewound.history, run, result, now, consumed, replace=True, sub_version=sub_version
    )
    return Planned(finish_rewind(planned.commit, rewound, new), planned.run, planned.history)


def prepare_rewind(
    episode: LeasedEpisode, history: list[h.HistoryEvent], now: datetime
) -> tuple[Rewound, list[h.HistoryEvent]]:
    """The rewound history of a failed instance (:func:`rewind_history`) and the new
    events its rewind episode replays after it."""
    reason = next(
        (m.event.reason for m in episode.messages if isinstance(m.event, h.ExecutionRewound)),
        None,
    )
    new = [h.OrchestratorStarted(timestamp=now), h.ExecutionRewound(timestamp=now, reason=reason)]
    return rewind_history(history), new


def finish_rewind(
    commit: EpisodeCommit, rewound: Rewound, new: list[h.HistoryEvent]
) -> EpisodeCommit:
    """The commit of a rewind episode: each failed child is rewound too (it reports to
    this parent again when it completes), and the instance's failure is cleared."""
    rewind = new[-1]
    rewinds = [Message(child, rewind, AT_ONCE) for child in rewound.failed_children]
    return dataclasses.replace(
        commit,
        messages=[*commit.messages, *rewinds],
        instance=dataclasses.replace(commit.instance, failure=None, output=None, completed_at=None),
    )


def _defer_until_start(episode: LeasedEpisode, now: datetime, consumed: list[int]) -> Planned:
    rec = episode.instance
    terminate = next(
        (m.event for m in episode.messages if isinstance(m.event, h.ExecutionTerminated)), None
    )
    if terminate is not None:
        # Terminated before its scheduled start: it never runs; the start message that
        # comes due later finds a finished instance and is dropped.
        output = None if terminate.reason is None else default_converter.dumps(terminate.reason)
        history = [
            h.OrchestratorStarted(now),
            terminate,
            h.ExecutionCompleted(now, status=Status.TERMINATED, result=output),
        ]
        instance = dataclasses.replace(
            rec,
            status=Status.TERMINATED,
            output=output,
            updated_at=now,
            completed_at=now,
            history_len=len(history),
        )
        return Planned(EpisodeCommit(instance, episode.lease_token, consumed, history))
    # Events raised before a scheduled start wait for it instead of being lost.
    later = rec.scheduled_start_at or now
    moved = [dataclasses.replace(m, id=0, visible_at=max(later, now)) for m in episode.messages]
    return Planned(EpisodeCommit(rec, episode.lease_token, consumed, messages=moved))


def _commit(
    episode: LeasedEpisode,
    history: list[h.HistoryEvent],
    run: OrchestrationRun | None,
    result: ExecutionResult,
    now: datetime,
    consumed: list[int],
    *,
    replace: bool,
    sub_version: str | None = None,
) -> Planned:
    rec = episode.instance
    out = _Outbox(history=list(result.applied))
    for action in result.actions:
        if isinstance(action, CreateSubOrchestration) and not action.version and sub_version:
            # Recorded with the version it got (replay does not compare versions).
            action = dataclasses.replace(action, version=sub_version)
        _apply_action(action, rec, out, now)
    for target, name, body in result.entity_messages:  # lock releases (docs/entities.md)
        out.messages.append(Message(target, h.EventRaised(now, name=name, input=body), AT_ONCE))
    status = result.status
    updates: dict[str, object] = {
        "status": status,
        "custom_status": result.custom_status,
        "updated_at": now,
    }
    if status is Status.CONTINUED_AS_NEW:
        return _continue_as_new(episode, history, result, now, consumed, out.messages)
    if status.is_terminal:
        _finish(rec, history, result, out, now)
        updates.update(output=result.output, failure=result.failure, completed_at=now)
    # ``history`` is extended in place rather than copied: it is either freshly loaded or
    # the worker's cached list, which is dropped if this commit does not apply. Copying
    # it would make every episode cost O(history) and long orchestrations quadratic.
    history.extend(out.history)
    updates["history_len"] = len(history)
    instance = dataclasses.replace(rec, **updates)  # type: ignore[arg-type]
    commit = EpisodeCommit(
        instance=instance,
        lease_token=episode.lease_token,
        consumed=consumed,
        history=list(history) if replace else out.history,
        replace_history=replace,
        work_items=out.work_items,
        messages=out.messages,
        new_instances=out.new_instances,
        prior_status=rec.status,
    )
    keep = not status.is_terminal
    return Planned(commit, run if keep else None, history if keep else [])


def _apply_action(action: Action, rec: InstanceRecord, out: _Outbox, now: datetime) -> None:
    iid, eid = rec.instance_id, rec.execution_id
    out.history.append(recording_event(action, now))
    if isinstance(action, ScheduleTask):
        out.work_items.append(
            NewWorkItem(
                iid,
                eid,
                action.id,
                action.name,
                action.input,
                AT_ONCE,
                action.attempt - 1,
                scheduled_at=now,
            )
        )
    elif isinstance(action, CreateTimer):
        fired = h.TimerFired(action.fire_at, timer_id=action.id, fire_at=action.fire_at)
        out.messages.append(Message(iid, fired, action.fire_at, eid))
    elif isinstance(action, CreateSubOrchestration):
        child_eid = uuid.uuid4().hex
        parent = h.ParentInstance(rec.name, iid, action.id, eid)
        out.new_instances.append(
            child_instance(
                parent,
                action.name,
                action.instance_id,
                child_eid,
                action.input,
                action.version,
                now,
            )
        )
    elif isinstance(action, SendEvent):
        raised = h.EventRaised(now, name=action.name, input=action.input)
        out.messages.append(Message(action.instance_id, raised, AT_ONCE))


def _started_event(events: Sequence[h.HistoryEvent]) -> h.ExecutionStarted | None:
    for event in events:
        if isinstance(event, h.ExecutionStarted):
            return event
    return None


def _finish(
    rec: InstanceRecord,
    full: list[h.HistoryEvent],
    result: ExecutionResult,
    out: _Outbox,
    now: datetime,
) -> None:
    status = result.status
    out.history.append(
        h.ExecutionCompleted(now, status=status, result=result.output, failure=result.failure)
    )
    started = _started_event(full) or _started_event(out.history)
    if started is not None and started.parent is not None:
        parent = started.parent
        done: h.HistoryEvent
        if status is Status.COMPLETED:
            done = h.SubOrchestrationInstanceCompleted(
                now, task_scheduled_id=parent.task_scheduled_id, result=result.output
            )
        else:
            failure = result.failure or FailureDetails(
                "taskloom.errors.TerminatedError",
                f"sub-orchestration {rec.instance_id!r} was terminated: {result.output}",
            )
            done = h.SubOrchestrationInstanceFailed(
                now, task_scheduled_id=parent.task_scheduled_id, failure=failure
            )
        out.messages.append(Message(parent.instance_id, done, AT_ONCE, parent.execution_id or None))
    if status is Status.TERMINATED:
        terminate = next(
            (e for e in reversed(result.applied) if isinstance(e, h.ExecutionTerminated)), None
        )
        if terminate is not None and terminate.recurse:
            for child in result.open_children:
                event = h.ExecutionTerminated(now, reason=terminate.reason, recurse=True)
                out.messages.append(Message(child, event, AT_ONCE))


def _continue_as_new(
    episode: LeasedEpisode,
    full: list[h.HistoryEvent],
    result: ExecutionResult,
    now: datetime,
    consumed: list[int],
    sent: list[Message],
) -> Planned:
    rec = episode.instance
    started = _started_event(full) or _started_event(result.applied)
    eid = uuid.uuid4().hex
    start = h.ExecutionStarted(
        now,
        -1,
        rec.name,
        rec.instance_id,
        eid,
        result.new_input,
        rec.version,
        started.parent if started else None,
    )
    messages = [*sent, Message(rec.instance_id, start, AT_ONCE)]
    for name, data in result.carryover:
        carried = h.EventRaised(now, name=name, input=data)
        # Meant for the new execution: so they can be told from events that arrived
        # while this episode ran (those come after them; see taskloom/grpc/work_items.py).
        messages.append(Message(rec.instance_id, carried, AT_ONCE, eid))
    instance = dataclasses.replace(
        rec,
        execution_id=eid,
        status=Status.CONTINUED_AS_NEW,
        input=result.new_input,
        output=None,
        failure=None,
        custom_status=result.custom_status,
        updated_at=now,
        history_len=0,
    )
    commit = EpisodeCommit(
        instance, episode.lease_token, consumed, (), replace_history=True, messages=messages
    )
    return Planned(commit)


def plan_version_failure(
    episode: LeasedEpisode,
    history: list[h.HistoryEvent],
    failure: FailureDetails,
    now: datetime,
) -> Planned:
    """Fail an instance whose version this worker may not run (``version_mismatch="fail"``):
    its messages are consumed, its history ends with the failure, and a parent hears of it
    as of any failed sub-orchestration."""
    rec = episode.instance
    consumed = [m.id for m in episode.messages]
    current = [
        m for m in episode.messages if m.execution_id is None or m.execution_id == rec.execution_id
    ]
    added: list[h.HistoryEvent] = [h.OrchestratorStarted(now)]
    if not history:
        start = [m.event for m in current if isinstance(m.event, h.ExecutionStarted)]
        if not start:  # a scheduled start not yet due: it fails when it comes
            return _defer_until_start(episode, now, consumed)
        added.append(start[0])
    added.append(h.ExecutionCompleted(now, status=Status.FAILED, failure=failure))
    messages: list[Message] = []
    started = _started_event(history) or _started_event(added)
    if started is not None and started.parent is not None:
        parent = started.parent
        done = h.SubOrchestrationInstanceFailed(
            now, task_scheduled_id=parent.task_scheduled_id, failure=failure
        )
        messages.append(Message(parent.instance_id, done, AT_ONCE, parent.execution_id or None))
    instance = dataclasses.replace(
        rec,
        status=Status.FAILED,
        failure=failure,
        output=None,
        updated_at=now,
        completed_at=now,
        history_len=len(history) + len(added),
    )
    commit = EpisodeCommit(
        instance,
        episode.lease_token,
        consumed,
        added,
        messages=messages,
        prior_status=rec.status,
    )
    return Planned(commit)


def child_instance(
    parent: h.ParentInstance,
    name: str,
    instance_id: str,
    execution_id: str,
    input: str | None,
    version: str | None,
    now: datetime,
    *,
    trace_parent: str | None = None,
    trace_state: str | None = None,
    tags: dict[str, str] | None = None,
) -> NewInstance:
    """A sub-orchestration's Pending row and its ExecutionStarted message, visible at once
    (the episode commit creates it beside the parent's history)."""
    start = h.ExecutionStarted(
        now,
        -1,
        name,
        instance_id,
        execution_id,
        input,
        version,
        parent,
        trace_parent=trace_parent,
        trace_state=trace_state,
        tags=tags,
    )
    record = InstanceRecord(
        instance_id=instance_id,
        execution_id=execution_id,
        name=name,
        status=Status.PENDING,
        created_at=now,
        updated_at=now,
        version=version,
        input=input,
        parent_instance_id=parent.instance_id,
    )
    return NewInstance(record, Message(instance_id, start, AT_ONCE))
