"""Cron expressions: Azure Functions' six-field NCRONTAB (seconds first) and classic
five-field cron (a ``0`` seconds field is implied).

Fields: ``second minute hour day month day-of-week``; each takes ``*``, ``n``, ``a-b``,
``*/s``, ``a-b/s`` and comma lists; months and weekdays also take names (``JAN``,
``MON``); Sunday is 0 or 7. As in cron, when both day fields are restricted a day
matches if either does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    offset: int = 0  # value of names[0]


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day", 1, 31),
    _Field("month", 1, 12, tuple(_MONTHS), 1),
    _Field("day-of-week", 0, 7, tuple(_DAYS), 0),
)


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message says which field and why."""


@dataclass(frozen=True)
class Cron:
    """A parsed expression; :meth:`next_after` gives the next matching second."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        parts = expression.split()
        if len(parts) == 5:
            parts = ["0", *parts]
        if len(parts) != 6:
            raise CronError(
                f"cron expression {expression!r} has {len(parts)} fields; use six "
                "(second minute hour day month day-of-week, e.g. '*/15 * * * * *') or five"
            )
        sets = [_parse_field(text, f, expression) for text, f in zip(parts, _FIELDS, strict=True)]
        return cls(
            expression,
            seconds=sets[0],
            minutes=sets[1],
            hours=sets[2],
            days=sets[3],
            months=sets[4],
            weekdays=frozenset(d % 7 for d in sets[5]),  # Sunday is 0 or 7
            any_day=parts[3] in ("*", "?"),
            any_weekday=parts[5] in ("*", "?"),
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first matching time strictly after ``moment`` (same tzinfo, whole seconds)."""
        t = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = moment + timedelta(days=366 * 5)
        while t <= limit:
            if t.month not in self.months:
                t = _first_of_next_month(t)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t = t.replace(second=0) + timedelta(minutes=1)
                continue
            if t.second not in self.seconds:
                t += timedelta(seconds=1)
                continue
            return t
        raise CronError(f"cron expression {self.expression!r} never matches")

    def _day_matches(self, t: datetime) -> bool:
        day_ok = t.day in self.days
        weekday_ok = (t.isoweekday() % 7) in self.weekdays
        if self.any_day:
            return weekday_ok
        if self.any_weekday:
            return day_ok
        return day_ok or weekday_ok


def _first_of_next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)


def _parse_field(text: str, field: _Field, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        values |= _parse_item(item, field, expression)
    return frozenset(values)


def _parse_item(item: str, field: _Field, expression: str) -> set[int]:
    def bad(why: str) -> CronError:
        return CronError(f"cron expression {expression!r}: {field.name} field {item!r} {why}")

    base, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) == 0:
            raise bad("has a step that is not a positive number")
        step = int(step_text)
    if base in ("*", "?"):
        low, high = field.low, field.high
    elif "-" in base:
        a, _, b = base.partition("-")
        low, high = _value(a, field, bad), _value(b, field, bad)
        if low > high:
            raise bad("is a range that runs backwards")
    else:
        low = _value(base, field, bad)
        high = field.high if step_text else low
    return set(range(low, high + 1, step))


def _value(text: str, field: _Field, bad: Callable[[str], CronError]) -> int:
    upper = text.upper()
    if upper in field.names:
        return field.names.index(upper) + field.offset
    if not text.isdigit():
        raise bad(f"is not a number{' or a name' if field.names else ''}")
    value = int(text)
    if not field.low <= value <= field.high:
        raise bad(f"is out of range {field.low}-{field.high}")
    return value
