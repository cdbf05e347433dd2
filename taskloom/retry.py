"""Retry policies for activities and sub-orchestrations; retries wait on durable timers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from taskloom.models import FailureDetails


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed task.

    The n-th retry waits ``first_retry_interval * backoff_coefficient ** (n - 1)``, capped
    by ``max_retry_interval``. ``max_number_of_attempts`` counts the first try. No retry
    starts after ``retry_timeout`` has passed since the first try. ``handle`` receives the
    failure details and returns whether this failure is worth retrying.
    """

    first_retry_interval: timedelta
    max_number_of_attempts: int
    backoff_coefficient: float = 1.0
    max_retry_interval: timedelta | None = None
    retry_timeout: timedelta | None = None
    handle: Callable[[FailureDetails], bool] | None = None

    def __post_init__(self) -> None:
        if self.first_retry_interval <= timedelta(0):
            raise ValueError("RetryPolicy.first_retry_interval must be positive")
        if self.max_number_of_attempts < 1:
            raise ValueError("RetryPolicy.max_number_of_attempts must be at least 1")
        if self.backoff_coefficient < 1.0:
            raise ValueError("RetryPolicy.backoff_coefficient must be at least 1.0")

    def delay_before(self, attempt: int) -> timedelta:
        """The wait before try number ``attempt`` (2 for the first retry)."""
        delay = self.first_retry_interval * (self.backoff_coefficient ** (attempt - 2))
        if self.max_retry_interval is not None:
            delay = min(delay, self.max_retry_interval)
        return delay
