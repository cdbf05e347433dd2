"""How the SQLite backend encodes values: times as INTEGER microseconds since the epoch
(they sort, and round-trip exactly to aware UTC datetimes), and chunked ``IN`` lists."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Stay well below SQLITE_MAX_VARIABLE_NUMBER (32766 today, 999 in old builds).
CHUNK = 500


def us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND


def us_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else us(moment)


def dt(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def dt_or_none(value: int | None) -> datetime | None:
    return None if value is None else dt(value)


def seconds_to_us(seconds: float) -> int:
    return round(seconds * 1_000_000)


def chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def marks(count: int) -> str:
    """``?, ?, ...`` for ``count`` parameters."""
    return ", ".join("?" * count)
