"""Event Grid style delivery retry: the backoff schedule, the retry policy's two limits
(delivery attempts and event time-to-live), webhook status classification and the
retry / dead-letter decision.

Pure: the caller passes every instant (``first_published_at``, ``now``) and, for
jitter, its own ``random.Random``. docs/topics-delivery.md lists the semantics and the
places where Event Grid's documentation leaves the choice to us.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from http import HTTPStatus
from typing import Any, Final

from taskloom.errors import TaskloomError

MIN_DELIVERY_ATTEMPTS: Final = 1
MAX_DELIVERY_ATTEMPTS: Final = 30
MIN_EVENT_TTL: Final = timedelta(minutes=1)
MAX_EVENT_TTL: Final = timedelta(minutes=1440)
MAX_JITTER: Final = 0.5

#: Delay before attempt n+1 after the n-th failure; the last step repeats.
SCHEDULE: Final = (
    timedelta(seconds=10),
    timedelta(seconds=30),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
)


class InvalidRetryPolicyError(TaskloomError, ValueError):
    """A retry policy setting is out of range; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class DeadLetterReason(StrEnum):
    """Values for a dead-lettered event's ``deadLetterReason``."""

    MAX_DELIVERY_ATTEMPTS_EXCEEDED = "MaxDeliveryAttemptsExceeded"
    TIME_TO_LIVE_EXCEEDED = "TimeToLiveExceeded"
    #: 400 from the endpoint: never retried.
    HTTP_BAD_REQUEST = "UndeliverableDueToHttpBadRequest"
    #: 413 from the endpoint: never retried (name chosen by taskloom).
    HTTP_REQUEST_ENTITY_TOO_LARGE = "UndeliverableDueToHttpRequestEntityTooLarge"


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Outcome:
    """What one delivery attempt came to. ``label`` is the ``lastDeliveryOutcome``
    text; ``min_delay`` is the least wait before the next attempt (status-specific)."""

    kind: OutcomeKind
    label: str
    status: int | None = None
    min_delay: timedelta = timedelta(0)
    dead_letter_reason: DeadLetterReason | None = None

    @property
    def succeeded(self) -> bool:
        return self.kind is OutcomeKind.SUCCESS

    @classmethod
    def timeout(cls) -> Outcome:
        """The endpoint did not answer in time (Event Grid waits 30 s)."""
        return cls(OutcomeKind.RETRY, "TimedOut")

    @classmethod
    def connection_error(cls) -> Outcome:
        """The endpoint could not be reached (DNS, refused, TLS, reset)."""
        return cls(OutcomeKind.RETRY, "Unreachable")

    @classmethod
    def handler_error(cls) -> Outcome:
        """An in-process handler raised; retried on the schedule."""
        return cls(OutcomeKind.RETRY, "HandlerError")


_SUCCESS_CODES: Final = frozenset(range(200, 205))
_STATUS_MIN_DELAY: Final = {
    401: timedelta(minutes=5),
    403: timedelta(minutes=5),
    404: timedelta(minutes=5),
    408: timedelta(minutes=2),
    503: timedelta(seconds=30),
}
_DEFAULT_MIN_DELAY: Final = timedelta(seconds=10)
_NO_RETRY: Final = {
    400: DeadLetterReason.HTTP_BAD_REQUEST,
    413: DeadLetterReason.HTTP_REQUEST_ENTITY_TOO_LARGE,
}


def _status_label(status: int) -> str:
    if status == 408:
        return "TimedOut"
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


def classify_status(status: int) -> Outcome:
    """Classify a webhook's HTTP response code: 200-204 succeed; 400 and 413
    dead-letter at once; everything else is retried, no sooner than its minimum delay
    (401/403/404: 5 min, 408: 2 min, 503: 30 s, others: 10 s)."""
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"status: must be an HTTP status code 100..599, not {status!r}")
    label = "Succeeded" if status in _SUCCESS_CODES else _status_label(status)
    if status in _SUCCESS_CODES:
        return Outcome(OutcomeKind.SUCCESS, label, status)
    if status in _NO_RETRY:
        return Outcome(OutcomeKind.DEAD_LETTER, label, status, dead_letter_reason=_NO_RETRY[status])
    delay = _STATUS_MIN_DELAY.get(status, _DEFAULT_MIN_DELAY)
    return Outcome(OutcomeKind.RETRY, label, status, min_delay=delay)


class DecisionKind(StrEnum):
    COMPLETE = "complete"
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"


@dataclass(frozen=True)
class Decision:
    """``COMPLETE``; ``RETRY`` at ``retry_at``; or ``DEAD_LETTER`` with ``reason``."""

    kind: DecisionKind
    attempts_made: int
    outcome: Outcome
    retry_at: datetime | None = None
    reason: DeadLetterReason | None = None

    @property
    def retry(self) -> bool:
        return self.kind is DecisionKind.RETRY

    @property
    def dead_letter(self) -> bool:
        return self.kind is DecisionKind.DEAD_LETTER


@dataclass(frozen=True)
class RetryPolicy:
    """An event subscription's retry policy. ``jitter`` (0..0.5) spreads each delay by
    up to that fraction either way, only when a ``random.Random`` is passed."""

    max_delivery_attempts: int = MAX_DELIVERY_ATTEMPTS
    event_ttl: timedelta = MAX_EVENT_TTL
    jitter: float = 0.0

    def __post_init__(self) -> None:
        n = self.max_delivery_attempts
        if isinstance(n, bool) or not isinstance(n, int):
            raise InvalidRetryPolicyError(
                "max_delivery_attempts", f"must be an integer 1..30, not {n!r}"
            )
        if not MIN_DELIVERY_ATTEMPTS <= n <= MAX_DELIVERY_ATTEMPTS:
            raise InvalidRetryPolicyError("max_delivery_attempts", f"must be 1..30, not {n}")
        ttl = self.event_ttl
        if not isinstance(ttl, timedelta) or not MIN_EVENT_TTL <= ttl <= MAX_EVENT_TTL:
            raise InvalidRetryPolicyError(
                "event_ttl", f"must be a timedelta of 1 to 1440 minutes, not {ttl!r}"
            )
        j = self.jitter
        if isinstance(j, bool) or not isinstance(j, int | float) or not 0 <= j <= MAX_JITTER:
            raise InvalidRetryPolicyError("jitter", f"must be 0..{MAX_JITTER}, not {j!r}")

    def next_delay(self, attempts_made: int, rng: random.Random | None = None) -> timedelta:
        """The wait before attempt ``attempts_made + 1`` after ``attempts_made`` failed."""
        if isinstance(attempts_made, bool) or not isinstance(attempts_made, int):
            raise ValueError(f"attempts_made: must be an integer >= 1, not {attempts_made!r}")
        if attempts_made < 1:
            raise ValueError(f"attempts_made: must be >= 1, not {attempts_made}")
        delay = SCHEDULE[min(attempts_made, len(SCHEDULE)) - 1]
        if rng is not None and self.jitter:
            delay = delay * (1 + rng.uniform(-self.jitter, self.jitter))
        return delay

    def expires_at(self, first_published_at: datetime) -> datetime:
        return first_published_at + self.event_ttl

    def decide(
        self,
        attempts_made: int,
        first_published_at: datetime,
        now: datetime,
        outcome: Outcome,
        rng: random.Random | None = None,
    ) -> Decision:
        """What to do after the ``attempts_made``-th attempt ended with ``outcome`` at
        ``now``: complete, dead-letter (with the reason), or retry at a time that is at
        least the schedule's delay and the outcome's minimum delay after ``now``."""
        if outcome.succeeded:
            return Decision(DecisionKind.COMPLETE, attempts_made, outcome)
        if outcome.kind is OutcomeKind.DEAD_LETTER:
            reason = outcome.dead_letter_reason or DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED
            return Decision(DecisionKind.DEAD_LETTER, attempts_made, outcome, reason=reason)
        delay = max(self.next_delay(attempts_made, rng), outcome.min_delay)
        if attempts_made >= self.max_delivery_attempts:
            return Decision(
                DecisionKind.DEAD_LETTER,
                attempts_made,
                outcome,
                reason=DeadLetterReason.MAX_DELIVERY_ATTEMPTS_EXCEEDED,
            )
        retry_at = now + delay
        if retry_at > self.expires_at(first_published_at):
            return Decision(
                DecisionKind.DEAD_LETTER,
                attempts_made,
                outcome,
                reason=DeadLetterReason.TIME_TO_LIVE_EXCEEDED,
            )
        return Decision(DecisionKind.RETRY, attempts_made, outcome, retry_at=retry_at)

    def to_json(self) -> dict[str, Any]:
        """Event Grid's ``retryPolicy`` shape (whole minutes are rounded down)."""
        return {
            "maxDeliveryAttempts": self.max_delivery_attempts,
            "eventTimeToLiveInMinutes": int(self.event_ttl.total_seconds() // 60),
        }

    @classmethod
    def from_json(cls, obj: object) -> RetryPolicy:
        if not isinstance(obj, dict):
            raise InvalidRetryPolicyError("retryPolicy", f"must be a JSON object, not {obj!r}")
        for name in obj:
            if name not in ("maxDeliveryAttempts", "eventTimeToLiveInMinutes"):
                raise InvalidRetryPolicyError(
                    str(name),
                    "is not a property; allowed: maxDeliveryAttempts, eventTimeToLiveInMinutes",
                )
        minutes = obj.get("eventTimeToLiveInMinutes", 1440)
        if isinstance(minutes, bool) or not isinstance(minutes, int):
            raise InvalidRetryPolicyError(
                "eventTimeToLiveInMinutes", f"must be an integer 1..1440, not {minutes!r}"
            )
        if not 1 <= minutes <= 1440:
            raise InvalidRetryPolicyError(
                "eventTimeToLiveInMinutes", f"must be 1..1440, not {minutes}"
            )
        try:
            return cls(
                obj.get("maxDeliveryAttempts", MAX_DELIVERY_ATTEMPTS), timedelta(minutes=minutes)
            )
        except InvalidRetryPolicyError as e:
            raise InvalidRetryPolicyError("maxDeliveryAttempts", e.problem) from None
