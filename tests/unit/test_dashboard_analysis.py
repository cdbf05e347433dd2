"""What the dashboard reads from a history: attempts with queue wait and run time, retry
timers, episodes' waits, the timeline's bars, and the trace id."""

from __future__ import annotations

import pytest
from history_builders import at

from taskloom import history as h
from taskloom.dashboard import analysis
from taskloom.dashboard.detail import trace_of
from taskloom.models import FailureDetails

BOOM = FailureDetails("builtins.RuntimeError", "disk on fire")


def _retried_history() -> list[h.HistoryEvent]:
    """An activity that failed once, whose retry timer has not fired yet."""
    return [
        h.OrchestratorStarted(at(0)),
        h.ExecutionStarted(
            at(0), name="flow", instance_id="i", trace_parent=f"00-{'a' * 32}-{'b' * 16}-01"
        ),
        h.TaskScheduled(at(0), event_id=0, name="work"),
        h.OrchestratorStarted(at(3)),
        h.TaskFailed(at(2.5), task_scheduled_id=0, failure=BOOM, started_at=at(1)),
        h.TimerCreated(at(3), event_id=1, fire_at=at(60), purpose="retry", retry_of=0),
    ]


def test_attempts_split_queue_wait_from_run_time_and_name_the_next_retry() -> None:
    summary = analysis.summarize(_retried_history())
    [chain] = summary.chains
    assert chain.name == "work" and chain.pending and chain.next_retry_at == at(60)
    [attempt] = chain.attempts
    assert (attempt.scheduled_at, attempt.started_at, attempt.ended_at) == (at(0), at(1), at(2.5))
    assert chain.failures == [attempt] and attempt.failure == BOOM
    assert [e.wait_seconds for e in summary.episodes] == [0.0, 0.5]  # 2.5 s -> 3 s
    bars = analysis.timeline(summary, at(0), at(10))
    rows = [(b.row, b.label, b.kind, b.start, b.end) for b in bars if b.row > 0]
    assert rows == [
        (1, "retry timer 1", "timer", 3.0, 10.0),  # pending: drawn up to now
        (2, "work #1", "wait", 0.0, 1.0),
        (2, "work #1", "fail", 1.0, 2.5),
    ]
    assert [t.timer_id for t in analysis.pending_retries(_retried_history())] == [1]


def test_a_fired_retry_timer_and_a_second_attempt_end_the_wait() -> None:
    events = [
        *_retried_history(),
        h.OrchestratorStarted(at(61)),
        h.TimerFired(at(60), timer_id=1, fire_at=at(60)),
        h.TaskScheduled(at(61), event_id=2, name="work", retry_of=0),
    ]
    [chain] = analysis.summarize(events).chains
    assert chain.next_retry_at is None and len(chain.attempts) == 2
    assert chain.pending  # the second attempt has not ended
    assert analysis.pending_retries(events) == []
    done = [*events, h.TaskCompleted(at(62), task_scheduled_id=2, result="1")]
    assert not analysis.summarize(done).chains[0].pending


def test_without_an_app_waited_events_are_unknown() -> None:
    assert analysis.waited_events(None, "i", "flow", _retried_history()) is None


def test_the_trace_id_and_its_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKLOOM_TRACE_URL", raising=False)
    assert trace_of(_retried_history()) == ("a" * 32, None)
    monkeypatch.setenv("TASKLOOM_TRACE_URL", "https://jaeger.example/trace/{trace_id}")
    assert trace_of(_retried_history()) == ("a" * 32, f"https://jaeger.example/trace/{'a' * 32}")
    monkeypatch.setenv("TASKLOOM_TRACE_URL", "javascript:alert(1)//{trace_id}")
    assert trace_of(_retried_history()) == ("a" * 32, None)
    assert trace_of([h.OrchestratorStarted(at(0))]) == (None, None)
