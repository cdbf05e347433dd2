"""Rewind: rewrite a failed instance's history so that its failed tasks run again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from taskloom import history as h


@dataclass
class Rewound:
    history: list[h.HistoryEvent]
    failed_children: list[str] = field(default_factory=list)


def rewind_history(events: Sequence[h.HistoryEvent]) -> Rewound:
    """Drop the failure and what led to it, keep everything that succeeded.

    Removed: ``ExecutionCompleted``; each ``TaskFailed`` with the ``TaskScheduled`` it
    answers (so the activity is scheduled afresh on replay); retry timers (so the retry
    policy starts over); each ``SubOrchestrationInstanceFailed`` (its ``...Created`` stays,
    and the child itself is rewound: ``failed_children`` lists them). Code that caught a
    failure and went on before failing later cannot be rewound this way: its later
    actions no longer line up, and the replay reports non-determinism.
    """
    failed_tasks = {e.task_scheduled_id for e in events if isinstance(e, h.TaskFailed)}
    retry_timers = {
        e.event_id for e in events if isinstance(e, h.TimerCreated) and e.purpose == "retry"
    }
    failed_subs = {
        e.task_scheduled_id for e in events if isinstance(e, h.SubOrchestrationInstanceFailed)
    }
    kept: list[h.HistoryEvent] = []
    children: list[str] = []
    for event in events:
        if isinstance(event, h.ExecutionCompleted | h.TaskFailed):
            continue
        if isinstance(event, h.SubOrchestrationInstanceFailed):
            continue
        if isinstance(event, h.TaskScheduled) and event.event_id in failed_tasks:
            continue
        if isinstance(event, h.TimerCreated) and event.event_id in retry_timers:
            continue
        if isinstance(event, h.TimerFired) and event.timer_id in retry_timers:
            continue
        if isinstance(event, h.SubOrchestrationInstanceCreated) and event.event_id in failed_subs:
            children.append(event.instance_id)
        kept.append(event)
    return Rewound(kept, children)
