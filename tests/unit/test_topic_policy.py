"""Event Grid style delivery retry: schedule, limits, status codes, decisions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskloom.topics.policy import (
    DeadLetterReason,
    DecisionKind,
    InvalidRetryPolicyError,
    Outcome,
    OutcomeKind,
    RetryPolicy,
    classify_status,
)

S, M, H = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [
        (1, 10 * S),
        (2, 30 * S),
        (3, 1 * M),
        (4, 5 * M),
        (5, 10 * M),
        (6, 30 * M),
        (7, 1 * H),
        (8, 3 * H),
        (9, 6 * H),
        (10, 12 * H),
        (11, 12 * H),
        (29, 12 * H),
    ],
)
def test_schedule(attempts: int, delay: timedelta) -> None:
    assert RetryPolicy().next_delay(attempts) == delay


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "1"])
def test_next_delay_rejects_bad_attempts(bad: Any) -> None:
    with pytest.raises(ValueError, match="attempts_made"):
        RetryPolicy().next_delay(bad)


def test_jitter_is_deterministic_and_bounded() -> None:
    p = RetryPolicy(jitter=0.2)
    assert p.next_delay(4) == 5 * M  # no rng, no jitter
    a = [p.next_delay(4, random.Random(7)) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    for seed in range(50):
        d = p.next_delay(4, random.Random(seed))
        assert 4 * M <= d <= 6 * M
    assert RetryPolicy().next_delay(4, random.Random(1)) == 5 * M  # jitter 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_delivery_attempts": 0}, "max_delivery_attempts"),
        ({"max_delivery_attempts": 31}, "max_delivery_attempts"),
        ({"max_delivery_attempts": True}, "max_delivery_attempts"),
        ({"max_delivery_attempts": 2.0}, "max_delivery_attempts"),
        ({"event_ttl": timedelta(seconds=59)}, "event_ttl"),
        ({"event_ttl": timedelta(minutes=1441)}, "event_ttl"),
        ({"event_ttl": 60}, "event_ttl"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 0.6}, "jitter"),
    ],
)
def test_policy_validation(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRetryPolicyError) as info:
        RetryPolicy(**kwargs)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(field)


def test_policy_edges_and_defaults() -> None:
    assert RetryPolicy() == RetryPolicy(30, timedelta(hours=24))
    RetryPolicy(1, timedelta(minutes=1))
    RetryPolicy(30, timedelta(minutes=1440), jitter=0.5)


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ("x", "retryPolicy"),
        ({"maxDeliveryAttempts": 0}, "maxDeliveryAttempts"),
        ({"eventTimeToLiveInMinutes": 0}, "eventTimeToLiveInMinutes"),
        ({"eventTimeToLiveInMinutes": 1441}, "eventTimeToLiveInMinutes"),
        ({"eventTimeToLiveInMinutes": "5"}, "eventTimeToLiveInMinutes"),
        ({"maxAttempts": 3}, "maxAttempts"),
    ],
)
def test_policy_json_errors(obj: Any, field: str) -> None:
    with pytest.raises(InvalidRetryPolicyError) as info:
        RetryPolicy.from_json(obj)
    assert info.value.field == field


def test_policy_json_round_trip() -> None:
    p = RetryPolicy.from_json({"maxDeliveryAttempts": 5, "eventTimeToLiveInMinutes": 30})
    assert p == RetryPolicy(5, timedelta(minutes=30))
    assert p.to_json() == {"maxDeliveryAttempts": 5, "eventTimeToLiveInMinutes": 30}
    assert RetryPolicy.from_json({}) == RetryPolicy()


STATUS_CASES = [
    (200, OutcomeKind.SUCCESS, timedelta(0), None, "Succeeded"),
    (201, OutcomeKind.SUCCESS, timedelta(0), None, "Succeeded"),
    (202, OutcomeKind.SUCCESS, timedelta(0), None, "Succeeded"),
    (203, OutcomeKind.SUCCESS, timedelta(0), None, "Succeeded"),
    (204, OutcomeKind.SUCCESS, timedelta(0), None, "Succeeded"),
    (205, OutcomeKind.RETRY, 10 * S, None, "ResetContent"),
    (301, OutcomeKind.RETRY, 10 * S, None, "MovedPermanently"),
    (400, OutcomeKind.DEAD_LETTER, timedelta(0), DeadLetterReason.HTTP_BAD_REQUEST, "BadRequest"),
    (401, OutcomeKind.RETRY, 5 * M, None, "Unauthorized"),
    (403, OutcomeKind.RETRY, 5 * M, None, "Forbidden"),
    (404, OutcomeKind.RETRY, 5 * M, None, "NotFound"),
    (408, OutcomeKind.RETRY, 2 * M, None, "TimedOut"),
    (
        413,
        OutcomeKind.DEAD_LETTER,
        timedelta(0),
        DeadLetterReason.HTTP_REQUEST_ENTITY_TOO_LARGE,
        "RequestEntityTooLarge",
    ),
    (429, OutcomeKind.RETRY, 10 * S, None, "TooManyRequests"),
    (500, OutcomeKind.RETRY, 10 * S, None, "InternalServerError"),
    (503, OutcomeKind.RETRY, 30 * S, None, "ServiceUnavailable"),
    (504, OutcomeKind.RETRY, 10 * S, None, "GatewayTimeout"),
    (599, OutcomeKind.RETRY, 10 * S, None, "Http599"),
]


@pytest.mark.parametrize(("status", "kind", "min_delay", "reason", "label"), STATUS_CASES)
def test_classify_status(
    status: int,
    kind: OutcomeKind,
    min_delay: timedelta,
    reason: DeadLetterReason | None,
    label: str,
) -> None:
    o = classify_status(status)
    assert (o.kind, o.min_delay, o.dead_letter_reason, o.label, o.status) == (
        kind,
        min_delay,
        reason,
        label,
        status,
    )


@pytest.mark.parametrize("bad", [99, 600, True, "200", 200.0])
def test_classify_status_rejects(bad: Any) -> None:
    with pytest.raises(ValueError, match="status"):
        classify_status(bad)


@pytest.mark.parametrize(
    "outcome", [Outcome.timeout(), Outcome.connection_error(), Outcome.handler_error()]
)
def test_transport_and_handler_outcomes_retry(outcome: Outcome) -> None:
    assert outcome.kind is OutcomeKind.RETRY
    d = RetryPolicy().decide(1, T0, T0, outcome)
    assert d.kind is DecisionKind.RETRY and d.retry_at == T0 + 10 * S


def test_success_completes() -> None:
    d = RetryPolicy().decide(3, T0, T0 + H, classify_status(204))
    assert d.kind is DecisionKind.COMPLETE and d.retry_at is None and d.reason is None


@pytest.mark.parametrize("status", [400, 413])
def test_no_retry_codes_dead_letter_on_first_attempt(status: int) -> None:
    d = RetryPolicy().decide(1, T0, T0, classify_status(status))
    assert d.dead_letter and d.reason == classify_status(status).dead_letter_reason
    assert d.reason is not None and d.reason.value.startswith("UndeliverableDueToHttp")


@pytest.mark.parametrize(
    ("attempts", "status", "after"),
    [
        (1, 500, 10 * S),
        (1, 503, 30 * S),  # status minimum beats the 10 s step
        (1, 408, 2 * M),
        (1, 404, 5 * M),
        (3, 503, 1 * M),  # schedule beats the 30 s minimum
        (5, 401, 10 * M),
        (7, 403, 1 * H),
    ],
)
def test_retry_at_is_max_of_schedule_and_minimum(
    attempts: int, status: int, after: timedelta
) -> None:
    now = T0 + 7 * M
    d = RetryPolicy().decide(attempts, T0, now, classify_status(status))
    assert d.retry and d.retry_at == now + after and d.attempts_made == attempts


@pytest.mark.parametrize(
    ("limit", "attempts", "dead"),
    [(1, 1, True), (5, 4, False), (5, 5, True), (30, 29, False), (30, 30, True)],
)
def test_attempt_cut_off(limit: int, attempts: int, dead: bool) -> None:
    d = RetryPolicy(max_delivery_attempts=limit).decide(attempts, T0, T0, classify_status(500))
    if dead:
        assert d.dead_letter and d.reason is DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED
    else:
        assert d.retry


def test_ttl_cut_off_is_inclusive() -> None:
    p = RetryPolicy(event_ttl=timedelta(minutes=30))
    # next attempt exactly at the expiry instant: still retried
    d = p.decide(1, T0, T0 + 30 * M - 10 * S, classify_status(500))
    assert d.retry and d.retry_at == T0 + 30 * M
    d = p.decide(1, T0, T0 + 30 * M - 9 * S, classify_status(500))
    assert d.dead_letter and d.reason is DeadLetterReason.TIME_TO_LIVE_EXCEEDED
    # a status minimum can push past the ttl
    d = p.decide(1, T0, T0 + 26 * M, classify_status(404))
    assert d.dead_letter and d.reason is DeadLetterReason.TIME_TO_LIVE_EXCEEDED


def test_attempts_checked_before_ttl() -> None:
    p = RetryPolicy(max_delivery_attempts=2, event_ttl=timedelta(minutes=1))
    d = p.decide(2, T0, T0 + H, classify_status(500))
    assert d.reason is DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED


def test_whole_run_with_defaults() -> None:
    """The documented example: ttl 30 min with a failing endpoint allows at most six
    attempts (0, 10 s, 40 s, 1m40, 6m40, 16m40); the seventh would be at 46m40."""
    p = RetryPolicy(max_delivery_attempts=10, event_ttl=timedelta(minutes=30))
    now, attempts = T0, 0
    while True:
        attempts += 1
        d = p.decide(attempts, T0, now, classify_status(500))
        if not d.retry:
            break
        assert d.retry_at is not None
        now = d.retry_at
    assert attempts == 6 and d.reason is DeadLetterReason.TIME_TO_LIVE_EXCEEDED
    # With the defaults (30 attempts, 24 h) the ttl ends the run after eleven attempts.
    p, now, attempts = RetryPolicy(), T0, 0
    while True:
        attempts += 1
        d = p.decide(attempts, T0, now, classify_status(500))
        if not d.retry:
            break
        assert d.retry_at is not None
        now = d.retry_at
    assert attempts == 11 and d.reason is DeadLetterReason.TIME_TO_LIVE_EXCEEDED


def test_decide_with_jitter_is_reproducible() -> None:
    p = RetryPolicy(jitter=0.1)
    a = p.decide(4, T0, T0, classify_status(500), random.Random(3))
    b = p.decide(4, T0, T0, classify_status(500), random.Random(3))
    assert a == b and a.retry_at is not None
    assert T0 + 4.5 * M <= a.retry_at <= T0 + 5.5 * M
