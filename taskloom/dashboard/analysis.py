"""What a history says, for the detail page and the why-panel: the tasks with every
attempt, the timers, retries and children, and the timeline's bars. Pure functions of the
history (no I/O), except :func:`waited_events`, which replays it with the app's code.

Queue wait and run time: an attempt's ``TaskScheduled`` is when it was asked for,
``TaskCompleted``/``TaskFailed.started_at`` when a worker began it and their timestamp
when it ended, so wait = started - scheduled and run = ended - started (histories written
before ``started_at`` existed show one bar, scheduled to ended). An episode's wait is
from the earliest message it consumed to its ``OrchestratorStarted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskloom import history as h
from taskloom.models import FailureDetails


@dataclass
class Attempt:
    """One run of an activity (or one sub-orchestration instance)."""

    task_id: int
    scheduled_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    failure: FailureDetails | None = None
    ok: bool | None = None  # None while pending


@dataclass
class TaskChain:
    """An activity or sub-orchestration and its retries (``retry_of`` links them)."""

    kind: str  # "activity" or "sub-orchestration"
    name: str
    first_id: int
    attempts: list[Attempt] = field(default_factory=list)
    child_instance_id: str | None = None
    next_retry_at: datetime | None = None

    @property
    def pending(self) -> bool:
        return self.next_retry_at is not None or any(a.ok is None for a in self.attempts)

    @property
    def failures(self) -> list[Attempt]:
        return [a for a in self.attempts if a.failure is not None]


@dataclass
class Timer:
    timer_id: int
    created_at: datetime
    fire_at: datetime | None
    purpose: str | None
    fired: bool = False


@dataclass
class Episode:
    started_at: datetime
    first_message_at: datetime | None
    consumed: list[str] = field(default_factory=list)

    @property
    def wait_seconds(self) -> float:
        if self.first_message_at is None:
            return 0.0
        return max(0.0, (self.started_at - self.first_message_at).total_seconds())


_INBOUND = (
    h.ExecutionStarted,
    h.TaskCompleted,
    h.TaskFailed,
    h.TimerFired,
    h.EventRaised,
    h.SubOrchestrationInstanceCompleted,
    h.SubOrchestrationInstanceFailed,
    h.ExecutionTerminated,
    h.ExecutionSuspended,
    h.ExecutionResumed,
    h.ExecutionRewound,
)


@dataclass
class Summary:
    """A history, digested."""

    chains: list[TaskChain]
    timers: list[Timer]
    episodes: list[Episode]
    children: list[str]


def summarize(events: list[h.HistoryEvent]) -> Summary:
    chains: dict[int, TaskChain] = {}
    by_task: dict[int, tuple[TaskChain, Attempt]] = {}
    timers: dict[int, Timer] = {}
    episodes: list[Episode] = []
    children: list[str] = []
    for event in events:
        if isinstance(event, h.OrchestratorStarted):
            episodes.append(Episode(event.timestamp, None))
        elif isinstance(event, _INBOUND) and episodes:
            episode = episodes[-1]
            episode.consumed.append(event.kind)
            if episode.first_message_at is None or event.timestamp < episode.first_message_at:
                episode.first_message_at = event.timestamp
        if isinstance(event, h.TaskScheduled | h.SubOrchestrationInstanceCreated):
            key = event.retry_of if event.retry_of is not None else event.event_id
            kind = "activity" if isinstance(event, h.TaskScheduled) else "sub-orchestration"
            chain = chains.setdefault(key, TaskChain(kind, event.name, key))
            attempt = Attempt(event.event_id, event.timestamp)
            chain.attempts.append(attempt)
            chain.next_retry_at = None
            by_task[event.event_id] = (chain, attempt)
            if isinstance(event, h.SubOrchestrationInstanceCreated):
                chain.child_instance_id = event.instance_id
                children.append(event.instance_id)
        elif isinstance(event, h.TaskCompleted | h.SubOrchestrationInstanceCompleted):
            found = by_task.get(event.task_scheduled_id)
            if found is not None:
                found[1].ok, found[1].ended_at = True, event.timestamp
                found[1].started_at = getattr(event, "started_at", None)
        elif isinstance(event, h.TaskFailed | h.SubOrchestrationInstanceFailed):
            found = by_task.get(event.task_scheduled_id)
            if found is not None:
                found[1].ok, found[1].ended_at = False, event.timestamp
                found[1].failure = event.failure
                found[1].started_at = getattr(event, "started_at", None)
        elif isinstance(event, h.TimerCreated):
            timers[event.event_id] = Timer(
                event.event_id, event.timestamp, event.fire_at, event.purpose
            )
            if event.purpose == "retry" and event.retry_of in chains:
                chains[event.retry_of].next_retry_at = event.fire_at
        elif isinstance(event, h.TimerFired):
            timer = timers.get(event.timer_id)
            if timer is not None:
                timer.fired = True
                if timer.purpose == "retry":
                    for chain in chains.values():
                        if chain.next_retry_at == timer.fire_at:
                            chain.next_retry_at = None
    return Summary(list(chains.values()), list(timers.values()), episodes, children)


def pending_retries(events: list[h.HistoryEvent]) -> list[Timer]:
    """Retry timers that have not fired: the instance is waiting to try again."""
    return [t for t in summarize(events).timers if t.purpose == "retry" and not t.fired]


def waited_events(
    app: Any, instance_id: str, name: str, events: list[h.HistoryEvent]
) -> set[str] | None:
    """The (lower-cased) event names the orchestration waits for after replaying
    ``events`` with ``app``'s code; None when that cannot be known (no app, an
    orchestrator it lacks, or a replay that fails)."""
    if app is None or name not in getattr(app, "orchestrators", {}):
        return None
    from taskloom.core.executor import OrchestrationRun

    run = OrchestrationRun(
        instance_id, app.orchestrators.get, app.converter, lambda: list(app.orchestrators)
    )
    try:
        run.execute(events, [])
    except Exception:
        return None
    return {key for key, waiters in run.state.event_waiters.items() if waiters}


@dataclass(frozen=True)
class Bar:
    """One bar of the timeline: a row label, where it starts and ends, and its kind
    (``wait``, ``run``, ``fail``, ``ep``, ``timer``)."""

    row: int
    label: str
    start: float
    end: float
    kind: str
    title: str


def timeline(summary: Summary, origin: datetime, now: datetime, limit: int = 200) -> list[Bar]:
    """Bars (seconds from ``origin``) for the episodes, the first ``limit`` timers (created
    to due, cut at ``now`` while pending) and the first ``limit`` attempts."""
    bars: list[Bar] = []

    def secs(moment: datetime) -> float:
        return (moment - origin).total_seconds()

    row = 0
    for n, episode in enumerate(summary.episodes[:limit]):
        if episode.first_message_at is not None and episode.wait_seconds > 0:
            bars.append(
                Bar(
                    row,
                    "episodes",
                    secs(episode.first_message_at),
                    secs(episode.started_at),
                    "wait",
                    f"episode {n + 1}: waited {episode.wait_seconds:.3f}s in the queue",
                )
            )
        bars.append(
            Bar(
                row,
                "episodes",
                secs(episode.started_at),
                secs(episode.started_at),
                "ep",
                f"episode {n + 1} ran ({', '.join(episode.consumed) or 'no messages'})",
            )
        )
    for timer in summary.timers[:limit]:
        if timer.fire_at is None:
            continue
        row += 1
        what = "retry timer" if timer.purpose == "retry" else "timer"
        due = (timer.fire_at - timer.created_at).total_seconds()
        state = "fired" if timer.fired else "pending"
        bars.append(
            Bar(
                row,
                f"{what} {timer.timer_id}",
                secs(timer.created_at),
                secs(min(timer.fire_at, now) if not timer.fired else timer.fire_at),
                "timer",
                f"{what} {timer.timer_id}: {due:.3f}s, {state}",
            )
        )
    shown = 0
    for chain in summary.chains:
        for attempt in chain.attempts:
            if shown >= limit:
                return bars
            shown += 1
            row += 1
            label = f"{chain.name} #{chain.attempts.index(attempt) + 1}"
            end = attempt.ended_at or now
            if attempt.started_at is not None:
                wait = (attempt.started_at - attempt.scheduled_at).total_seconds()
                bars.append(
                    Bar(
                        row,
                        label,
                        secs(attempt.scheduled_at),
                        secs(attempt.started_at),
                        "wait",
                        f"{label}: queued {wait:.3f}s",
                    )
                )
                run_kind = "fail" if attempt.ok is False else "run"
                ran = (end - attempt.started_at).total_seconds()
                bars.append(
                    Bar(
                        row,
                        label,
                        secs(attempt.started_at),
                        secs(end),
                        run_kind,
                        f"{label}: ran {ran:.3f}s",
                    )
                )
            else:
                kind = "fail" if attempt.ok is False else ("wait" if attempt.ok is None else "run")
                total = (end - attempt.scheduled_at).total_seconds()
                what = "pending" if attempt.ok is None else "scheduled to done"
                bars.append(
                    Bar(
                        row,
                        label,
                        secs(attempt.scheduled_at),
                        secs(end),
                        kind,
                        f"{label}: {what} {total:.3f}s",
                    )
                )
    return bars
