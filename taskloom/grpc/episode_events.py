"""Which events an SDK worker's ``OrchestratorRequest`` carries as ``newEvents``, and in
what order: each result once (the SDKs reuse an action's id for its retries, so a result
is a duplicate when its id already has as many results as schedulings), one start, and
a new execution's start before the events that came with or after it.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskloom import history as h
from taskloom.storage.base import Message

__all__ = ["fresh_events", "start_order"]


def fresh_events(
    past: Sequence[h.HistoryEvent], events: Sequence[h.HistoryEvent]
) -> list[h.HistoryEvent]:
    """``events`` without duplicates (a result delivered twice, a second start), so
    history records each once. The SDKs reuse an action's id for its retries, so a
    result is a duplicate when its id already has as many results as schedulings."""
    open_ids: dict[tuple[str, int], int] = {}
    started = False
    for e in past:
        started = _count(e, open_ids) or started
    out: list[h.HistoryEvent] = []
    for e in events:
        key = _result_key(e)
        if key is not None and open_ids.get(key, 0) <= 0:
            continue
        if isinstance(e, h.ExecutionStarted) and started:
            continue
        started = _count(e, open_ids) or started
        out.append(e)
    return out


def _count(event: h.HistoryEvent, open_ids: dict[tuple[str, int], int]) -> bool:
    """Track scheduled-but-unanswered action ids; True for a start."""
    if isinstance(event, h.TaskScheduled | h.SubOrchestrationInstanceCreated):
        key = ("task", event.event_id)
        open_ids[key] = open_ids.get(key, 0) + 1
    elif isinstance(event, h.TimerCreated):
        key = ("timer", event.event_id)
        open_ids[key] = open_ids.get(key, 0) + 1
    else:
        result = _result_key(event)
        if result is not None:
            open_ids[result] = open_ids.get(result, 0) - 1
    return isinstance(event, h.ExecutionStarted)


def start_order(message: Message, execution_id: str) -> int:
    """The order of a new execution's first messages: its start, then the events carried
    over by continue-as-new (addressed to the execution), then the events that arrived
    meanwhile (the SDKs ignore events before an executionStarted; the carried ones were
    received first)."""
    if isinstance(message.event, h.ExecutionStarted):
        return 0
    return 1 if message.execution_id == execution_id else 2


def _result_key(event: h.HistoryEvent) -> tuple[str, int] | None:
    if isinstance(event, h.TimerFired):
        return "timer", event.timer_id
    task = getattr(event, "task_scheduled_id", None)
    if task is not None:
        return "task", task
    return None
