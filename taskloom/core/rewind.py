"""Rewind: rewrite a failed instance's history so that its failed work runs again."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from taskloom import history as h


@dataclass
class Rewound:
    history: list[h.HistoryEvent]
    failed_children: list[str] = field(default_factory=list)


_ACTIONS = (h.TaskScheduled, h.SubOrchestrationInstanceCreated, h.TimerCreated)


def rewind_history(events: Sequence[h.HistoryEvent]) -> Rewound:
    """Drop the failure and what led to it, keep everything that succeeded.

    Actions are grouped into retry chains (an attempt, its retry timers and later
    attempts share the first attempt's id in ``retry_of``). A chain whose last attempt
    failed, or that never finished, is removed with its results, so replay schedules it
    afresh and its retry policy starts over; chains that succeeded stay. Timers that
    never fired are removed too (their firing was discarded while the instance was
    Failed). A sub-orchestration that failed without retries keeps its ``...Created``
    event and is rewound in place: ``failed_children`` lists those.
    ``ExecutionCompleted`` goes in every case.
    """
    outcome: dict[int, str] = {}
    for event in events:
        if isinstance(event, h.TaskCompleted | h.SubOrchestrationInstanceCompleted):
            outcome[event.task_scheduled_id] = "ok"
        elif isinstance(event, h.TaskFailed | h.SubOrchestrationInstanceFailed):
            outcome[event.task_scheduled_id] = "failed"
        elif isinstance(event, h.TimerFired):
            outcome[event.timer_id] = "ok"
    chains: dict[int, list[h.HistoryEvent]] = defaultdict(list)
    for event in events:
        if isinstance(event, _ACTIONS):
            root = event.retry_of if event.retry_of is not None else event.event_id
            chains[root].append(event)
    removed: set[int] = set()
    children: list[str] = []
    for members in chains.values():
        attempts = [e for e in members if not isinstance(e, h.TimerCreated)]
        if not attempts:  # a plain timer
            if outcome.get(members[0].event_id) != "ok":
                removed.add(members[0].event_id)
            continue
        last = attempts[-1]
        result = outcome.get(last.event_id)
        if result == "ok":
            continue
        if (
            result == "failed"
            and len(members) == 1
            and isinstance(last, h.SubOrchestrationInstanceCreated)
        ):
            children.append(last.instance_id)
            continue
        removed.update(e.event_id for e in members)
    kept = [e for e in events if _keep(e, removed, children)]
    return Rewound(kept, children)


def _keep(event: h.HistoryEvent, removed: set[int], children: list[str]) -> bool:
    if isinstance(event, h.ExecutionCompleted):
        return False
    if isinstance(event, _ACTIONS):
        return event.event_id not in removed
    if isinstance(event, h.TaskCompleted | h.TaskFailed | h.SubOrchestrationInstanceCompleted):
        return event.task_scheduled_id not in removed
    if isinstance(event, h.SubOrchestrationInstanceFailed):
        return False  # the child either runs again or is rewound and reports anew
    if isinstance(event, h.TimerFired):
        return event.timer_id not in removed
    return True
