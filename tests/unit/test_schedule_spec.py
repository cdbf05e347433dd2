"""Schedule specs (ticks of cron and interval schedules) and tick message bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskloom.errors import ConfigurationError
from taskloom.manage import Spec, parse_tick_body, tick_body

T = datetime(2024, 5, 1, 12, 0, 7, 250000, tzinfo=UTC)


def test_cron_ticks() -> None:
    spec = Spec.parse("cron:*/15 * * * * *")
    assert spec.after(T) == T.replace(second=15, microsecond=0)
    assert spec.following(T.replace(second=15, microsecond=0)) == T.replace(
        second=30, microsecond=0
    )
    on_tick = T.replace(second=15, microsecond=0)
    assert spec.at_or_after(on_tick) == on_tick
    assert spec.after(on_tick) == T.replace(second=30, microsecond=0)


def test_five_field_cron_has_zero_seconds() -> None:
    assert Spec.parse("cron:0 3 * * *").after(T) == datetime(2024, 5, 2, 3, tzinfo=UTC)


def test_intervals_are_aligned_to_the_epoch() -> None:
    minute = Spec.parse("every:60")
    assert minute.after(T) == T.replace(minute=1, second=0, microsecond=0)
    assert minute.following(T.replace(second=0, microsecond=0)) == T.replace(
        minute=1, second=0, microsecond=0
    )
    on_tick = T.replace(second=0, microsecond=0)
    assert minute.at_or_after(on_tick) == on_tick
    assert minute.after(on_tick) == on_tick + timedelta(minutes=1)
    half = Spec.parse("every:1.5")
    assert half.after(T).timestamp() % 1.5 == 0


@pytest.mark.parametrize("text", ["every:0", "every:x", "hourly", "cron:* * *"])
def test_bad_specs(text: str) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        Spec.parse(text)


def test_tick_body_round_trips() -> None:
    message = parse_tick_body(tick_body("nightly", T, kind="manual"))
    assert (message.schedule, message.tick, message.kind) == ("nightly", T, "manual")
    assert parse_tick_body(tick_body("n", T)).kind == "tick"
