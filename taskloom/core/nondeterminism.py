"""Factories for :class:`NonDeterminismError` with messages that say what to do."""

from __future__ import annotations

from taskloom import history as h
from taskloom.core.actions import Action
from taskloom.core.state import ReplayState
from taskloom.errors import NonDeterminismError

_ADVICE = (
    "the orchestrator code changed while this instance was running; deploy changes that "
    "alter the order of calls under a new orchestrator name or version, or terminate and "
    "restart the instance"
)


def _describe_event(event: h.HistoryEvent) -> str:
    name = getattr(event, "name", None)
    label = {
        "TaskScheduled": "call_activity",
        "TimerCreated": "create_timer",
        "SubOrchestrationInstanceCreated": "call_sub_orchestrator",
        "EventSent": "send_event",
    }.get(event.kind, event.kind)
    inner = f"({name!r})" if name else "()"
    return f"{label}{inner} #{event.event_id}"


def missing_action(state: ReplayState, event: h.HistoryEvent) -> NonDeterminismError:
    produced = ", ".join(a.describe() for a in state.pending_actions.values()) or "nothing"
    return NonDeterminismError(
        f"non-determinism in orchestration {state.name!r} (instance {state.instance_id!r}): "
        f"history expected {_describe_event(event)} but the code produced {produced}; {_ADVICE}"
    )


def wrong_action(state: ReplayState, event: h.HistoryEvent, action: Action) -> NonDeterminismError:
    return NonDeterminismError(
        f"non-determinism in orchestration {state.name!r} (instance {state.instance_id!r}): "
        f"history expected {_describe_event(event)} but the code produced "
        f"{action.describe()}; {_ADVICE}"
    )
