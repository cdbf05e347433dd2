"""Clocks: the one place taskloom reads time, so tests and TestEnv can move it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, tz-aware UTC."""
        ...

    @property
    def is_virtual(self) -> bool: ...


class SystemClock:
    """The wall clock."""

    is_virtual = False

    def now(self) -> datetime:
        return datetime.now(UTC)


class VirtualClock:
    """A clock that moves only when told to (``advance``, ``jump_to``)."""

    is_virtual = True

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("a clock cannot move backwards")
        self._now += delta

    def jump_to(self, when: datetime) -> None:
        if when > self._now:
            self._now = when
