"""The record of a registered subscription (``@app.subscription``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taskloom.storage.events_base import BUCKETS

__all__ = ["SubscriptionSpec", "check_partitions"]


def check_partitions(partitions: int) -> int:
    if not isinstance(partitions, int) or partitions < 1 or BUCKETS % partitions:
        choices = [n for n in range(1, BUCKETS + 1) if BUCKETS % n == 0]
        raise ValueError(f"partitions must divide {BUCKETS}: one of {choices}, not {partitions!r}")
    return partitions


@dataclass(frozen=True)
class SubscriptionSpec:
    """An at-least-once handler ``(event, client)`` following the log. Events of one
    stream go to one partition and are handled in stream order; partitions are spread
    over every process that runs the app."""

    name: str
    handler: Callable[..., Any]
    is_async: bool
    types: frozenset[str] | None = None
    partitions: int = 8
    max_attempts: int = 10
    start: str = "beginning"  # or "end": only events appended after registration
    wants_events: bool = False

    @property
    def consumer(self) -> str:
        return f"subscription:{self.name}"
