"""``historyEvents`` in Durable Functions' shape, from histories built by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from taskloom import history as h
from taskloom.http.df_history import durable_history, timestamp
from taskloom.models import FailureDetails, Status

T0 = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_tasks_fold_into_their_completions_and_markers_go() -> None:
    events = [
        h.OrchestratorStarted(at(0)),
        h.ExecutionStarted(at(0), name="orders", instance_id="o1", input='{"n": 1}'),
        h.TaskScheduled(at(1), event_id=0, name="charge", input="5"),
        h.SubOrchestrationInstanceCreated(at(1), event_id=1, name="ship", instance_id="o1:1"),
        h.OrchestratorStarted(at(2)),
        h.TaskCompleted(at(2), task_scheduled_id=0, result='"ok"'),
        h.SubOrchestrationInstanceFailed(
            at(3),
            task_scheduled_id=1,
            failure=FailureDetails("ValueError", "no stock", "Traceback...", None),
        ),
        h.ExecutionCompleted(at(4), status=Status.COMPLETED, result="[1, 2]"),
    ]
    shown = durable_history(events)
    assert [e["EventType"] for e in shown] == [
        "ExecutionStarted",
        "TaskCompleted",
        "SubOrchestrationInstanceFailed",
        "ExecutionCompleted",
    ]
    started, completed, failed, finished = shown
    assert started == {
        "EventType": "ExecutionStarted",
        "Timestamp": "2026-01-31T09:00:00Z",
        "FunctionName": "orders",
    }
    assert completed == {
        "EventType": "TaskCompleted",
        "Timestamp": "2026-01-31T09:00:02Z",
        "ScheduledTime": "2026-01-31T09:00:01Z",
        "FunctionName": "charge",
    }
    assert failed["FunctionName"] == "ship" and failed["Reason"] == "no stock"
    assert failed["Details"] == "Traceback..."
    assert failed["FailureDetails"]["ErrorType"] == "ValueError"
    assert finished == {
        "EventType": "ExecutionCompleted",
        "Timestamp": "2026-01-31T09:00:04Z",
        "OrchestrationStatus": "Completed",
    }
    with_output = durable_history(events, show_history_output=True)
    assert with_output[1]["Result"] == "ok" and with_output[3]["Result"] == [1, 2]


def test_pending_tasks_timers_events_and_control() -> None:
    events = [
        h.ExecutionStarted(at(0), name="approve", scheduled_start=at(-5)),
        h.TaskScheduled(at(1), event_id=0, name="notify", input="1"),
        h.TimerCreated(at(1), event_id=1, fire_at=at(60)),
        h.EventSent(at(1), event_id=2, instance_id="other", name="Ping", input='{"a": 1}'),
        h.ExecutionSuspended(at(2), reason="pause"),
        h.ExecutionResumed(at(3), reason="go"),
        h.EventRaised(at(4), name="Approval", input="true"),
        h.TimerFired(at(60), timer_id=1, fire_at=at(60)),
        h.ExecutionTerminated(at(61), reason="enough"),
    ]
    shown = durable_history(events)
    assert shown[0]["ScheduledStartTime"] == "2026-01-31T08:59:55Z"
    assert shown[1] == {
        "EventType": "TaskScheduled",
        "Timestamp": "2026-01-31T09:00:01Z",
        "Name": "notify",
    }
    assert shown[2]["FireAt"] == "2026-01-31T09:01:00Z"
    assert shown[3]["InstanceId"] == "other" and shown[3]["Input"] == {"a": 1}
    assert [e.get("Reason") for e in shown[4:6]] == ["pause", "go"]
    assert shown[6] == {
        "EventType": "EventRaised",
        "Timestamp": "2026-01-31T09:00:04Z",
        "Name": "Approval",
    }
    assert shown[7]["EventType"] == "TimerFired" and "TimerId" not in shown[7]
    assert shown[8] == {"EventType": "ExecutionTerminated", "Timestamp": "2026-01-31T09:01:01Z"}


def test_failures_and_continue_as_new() -> None:
    inner = FailureDetails("KeyError", "'x'", None, None)
    failure = FailureDetails("TaskFailedError", "step failed", "tb", inner)
    events = [
        h.ExecutionStarted(at(0), name="loop"),
        h.TaskScheduled(at(1), event_id=0, name="step"),
        h.TaskFailed(at(2), task_scheduled_id=0, failure=failure),
        h.ContinueAsNew(at(3), input="7"),
        h.ExecutionCompleted(at(3), status=Status.FAILED, failure=failure),
    ]
    shown = durable_history(events, show_history_output=True)
    failed = shown[1]
    assert failed["FunctionName"] == "step" and failed["ScheduledTime"] == timestamp(at(1))
    assert failed["FailureDetails"]["InnerFailure"]["ErrorType"] == "KeyError"
    assert shown[2] == {
        "EventType": "ContinueAsNew",
        "Timestamp": "2026-01-31T09:00:03Z",
        "OrchestrationStatus": "ContinuedAsNew",
        "Result": 7,
    }
    assert shown[3]["OrchestrationStatus"] == "Failed"
    assert shown[3]["FailureDetails"]["ErrorMessage"] == "step failed"


def test_timestamps_are_utc_with_a_z() -> None:
    assert timestamp(datetime(2026, 1, 1, 12, 0, 0, 250000, tzinfo=UTC)) == (
        "2026-01-01T12:00:00.250000Z"
    )
    plus_two = datetime(2026, 1, 1, 14, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert timestamp(plus_two) == "2026-01-01T14:00:00Z"
