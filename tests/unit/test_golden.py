"""Golden histories: histories recorded by ``tests/golden/record.py`` replay against the
current code without non-determinism and reach the recorded outcome.

For every episode of a stored history the executor is given the history before it as
``past`` and the episode's incoming events as ``new``; the actions it returns must be
the recording events the file holds for that episode, and the last episode must end
the way the stored ``ExecutionCompleted`` says.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from history_builders import recorded

from taskloom import history as h
from taskloom.core.executor import execute
from taskloom.models import Status

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
if str(GOLDEN) not in sys.path:
    sys.path.insert(0, str(GOLDEN))

import flows  # noqa: E402

FILES = sorted(GOLDEN.glob("*.json"))
RECORDING = (h.TaskScheduled, h.TimerCreated, h.SubOrchestrationInstanceCreated, h.EventSent)


@dataclass
class Golden:
    flow: str
    orchestrator: str
    instance_id: str
    input: Any
    raw: list[dict[str, Any]]
    history: list[h.HistoryEvent]


@dataclass
class Episode:
    start: int  # index of its OrchestratorStarted in the history
    inbound: list[h.HistoryEvent]
    recorded: list[h.HistoryEvent]
    completed: h.ExecutionCompleted | None


def load(path: Path) -> Golden:
    data = json.loads(path.read_text())
    events = [h.event_from_dict(d) for d in data["history"]]
    return Golden(
        data["flow"],
        data["orchestrator"],
        data["instance_id"],
        data["input"],
        data["history"],
        events,
    )


def episodes(history: list[h.HistoryEvent]) -> list[Episode]:
    """Split at each OrchestratorStarted: inbound events, then what the worker recorded."""
    out: list[Episode] = []
    for i, event in enumerate(history):
        if isinstance(event, h.OrchestratorStarted):
            out.append(Episode(i, [event], [], None))
        elif isinstance(event, h.ExecutionCompleted):
            out[-1].completed = event
        elif isinstance(event, RECORDING):
            out[-1].recorded.append(event)
        else:
            assert not out[-1].recorded, f"inbound {event.kind} after recorded actions"
            out[-1].inbound.append(event)
    return out


def _shape(event: h.HistoryEvent) -> dict[str, Any]:
    data = h.event_to_dict(event)
    data.pop("timestamp")
    return data


@pytest.fixture(params=FILES, ids=[p.stem for p in FILES])
def golden(request: pytest.FixtureRequest) -> Golden:
    return load(request.param)


def test_there_is_a_golden_file_for_every_flow() -> None:
    assert {p.stem for p in FILES} == {f.name for f in flows.FLOWS}
    assert len(FILES) >= 4


def test_golden_file_names_a_registered_orchestrator(golden: Golden) -> None:
    assert golden.orchestrator in flows.app.orchestrators
    started = next(e for e in golden.history if isinstance(e, h.ExecutionStarted))
    assert started.name == golden.orchestrator
    assert started.instance_id == golden.instance_id


def test_golden_events_round_trip_through_dicts(golden: Golden) -> None:
    assert [h.event_to_dict(e) for e in golden.history] == golden.raw


def test_golden_history_ends_with_a_successful_completion(golden: Golden) -> None:
    last = golden.history[-1]
    assert isinstance(last, h.ExecutionCompleted)
    assert last.status is Status.COMPLETED


def test_replaying_without_the_completion_reaches_the_recorded_output(golden: Golden) -> None:
    last = episodes(golden.history)[-1]
    assert last.completed is not None
    past = golden.history[: last.start]
    result = execute(golden.instance_id, flows.app.orchestrators.get, past, last.inbound)

    assert result.failure is None, result.failure and result.failure.message
    assert result.status is last.completed.status
    assert result.output == last.completed.result
    assert result.actions == []
    assert result.applied == last.inbound


def test_every_episode_replays_to_the_recorded_actions(golden: Golden) -> None:
    for ep in episodes(golden.history):
        past = golden.history[: ep.start]
        result = execute(golden.instance_id, flows.app.orchestrators.get, past, ep.inbound)
        assert result.failure is None, result.failure and result.failure.message
        produced = [_shape(e) for e in recorded(result.actions)]
        assert produced == [_shape(e) for e in ep.recorded], f"episode at {ep.start}"
        assert result.applied == ep.inbound
        assert result.status.is_terminal == (ep.completed is not None)


def test_full_history_replay_short_circuits_to_the_recorded_outcome(golden: Golden) -> None:
    result = execute(golden.instance_id, flows.app.orchestrators.get, golden.history, [])
    end = golden.history[-1]
    assert isinstance(end, h.ExecutionCompleted)
    assert (result.status, result.output) == (end.status, end.result)
    assert result.actions == []


def test_a_changed_orchestrator_is_caught_as_non_determinism() -> None:
    golden = load(GOLDEN / "activity_chain.json")

    def reordered(ctx: Any) -> Any:
        loud = yield ctx.call_activity("shout", ctx.get_input())
        return (yield ctx.call_activity("greet", loud))

    last = episodes(golden.history)[-1]
    result = execute(
        golden.instance_id,
        {golden.orchestrator: reordered}.get,
        golden.history[: last.start],
        last.inbound,
    )
    assert result.status is Status.FAILED
    assert result.failure is not None
    assert result.failure.error_type == "taskloom.errors.NonDeterminismError"
    assert "call_activity('greet') #0" in result.failure.message
    assert "call_activity('shout') #0" in result.failure.message
