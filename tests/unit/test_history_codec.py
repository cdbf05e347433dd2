"""The history JSON codec: fields added later are left out at their defaults, so older
stored histories decode unchanged, and round-trip when set."""

from __future__ import annotations

from datetime import UTC, datetime

from taskloom import history as h
from taskloom.models import FailureDetails

T = datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC)


def test_non_retriable_failures_round_trip_and_old_ones_read_as_retriable() -> None:
    inner = FailureDetails("Inner", "cause", non_retriable=True)
    failed = h.TaskFailed(T, task_scheduled_id=3, failure=FailureDetails("E", "m", None, inner))
    text = h.dumps_event(failed)
    assert h.loads_event(text) == failed
    assert '"non_retriable":true' in text
    # Written before the field existed (and whenever it is false): no key at all.
    old = '{"kind":"TaskFailed","timestamp":"2026-12-04T12:00:00+00:00","task_scheduled_id":3,"failure":{"error_type":"E","message":"m"}}'  # noqa: E501
    decoded = h.loads_event(old)
    assert isinstance(decoded, h.TaskFailed) and decoded.failure is not None
    assert decoded.failure.non_retriable is False
    assert "non_retriable" not in h.dumps_event(decoded)
    assert FailureDetails.from_dict(FailureDetails("E", "m", non_retriable=True).to_dict()) == (
        FailureDetails("E", "m", non_retriable=True)
    )


def test_orchestrator_started_keeps_the_reported_span() -> None:
    event = h.OrchestratorStarted(T, span_id="00f067aa0ba902b7", span_started_at=T)
    assert h.loads_event(h.dumps_event(event)) == event
    assert h.event_from_dict(h.event_to_dict(event)) == event
    plain = h.OrchestratorStarted(T)
    assert (
        h.dumps_event(plain) == '{"kind":"OrchestratorStarted","timestamp":"' + T.isoformat() + '"}'
    )
    assert h.loads_event(h.dumps_event(plain)) == plain
