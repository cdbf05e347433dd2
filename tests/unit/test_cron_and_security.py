"""Cron parsing and next-tick computation; key hashing and signed links."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskloom.cron import Cron, CronError
from taskloom.security import (
    EventLink,
    allows,
    check_role,
    hash_key,
    new_key,
    sign_link,
    verify_link,
)

T0 = datetime(2026, 11, 21, 10, 0, 7, tzinfo=UTC)  # a Saturday


def ticks(expr: str, start: datetime, n: int) -> list[datetime]:
    cron, out, t = Cron.parse(expr), [], start
    for _ in range(n):
        t = cron.next_after(t)
        out.append(t)
    return out


def test_every_15_seconds() -> None:
    assert [t.second for t in ticks("*/15 * * * * *", T0, 5)] == [15, 30, 45, 0, 15]


def test_five_field_cron_implies_second_zero() -> None:
    assert ticks("*/5 * * * *", T0, 2) == [
        datetime(2026, 11, 21, 10, 5, tzinfo=UTC),
        datetime(2026, 11, 21, 10, 10, tzinfo=UTC),
    ]


def test_weekday_names_and_ranges() -> None:
    assert ticks("0 9 * * MON-FRI", T0, 1) == [datetime(2026, 11, 23, 9, tzinfo=UTC)]
    assert ticks("0 0 12 * * 0", T0, 1) == [datetime(2026, 11, 22, 12, tzinfo=UTC)]
    assert ticks("0 0 12 * * 7", T0, 1) == [datetime(2026, 11, 22, 12, tzinfo=UTC)]


def test_month_rollover_and_lists() -> None:
    assert ticks("0 0 0 1 JAN,JUL *", T0, 2) == [
        datetime(2027, 1, 1, tzinfo=UTC),
        datetime(2027, 7, 1, tzinfo=UTC),
    ]


def test_day_and_weekday_either_matches() -> None:
    # The 1st of the month or any Monday, as in cron.
    got = ticks("0 0 0 1 * MON", T0, 3)
    assert got == [
        datetime(2026, 11, 23, tzinfo=UTC),
        datetime(2026, 11, 30, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("* * * *", "4 fields"),
        ("61 * * * * *", "second field '61' is out of range 0-59"),
        ("*/0 * * * * *", "step"),
        ("* * * * FOO *", "month field 'FOO' is not a number or a name"),
        ("5-1 * * * * *", "backwards"),
        ("0 0 0 31 FEB *", "never matches"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expr: str, words: str) -> None:
    with pytest.raises(CronError, match=words.replace("(", r"\(")):
        Cron.parse(expr).next_after(T0)


def test_roles_and_keys() -> None:
    assert allows("admin", "write") and allows("contributor", "write")
    assert not allows("reader", "write") and not allows("contributor", "admin")
    assert allows("worker", "read") and not allows("nobody", "read")
    with pytest.raises(ValueError, match="use one of: reader, worker, contributor, admin"):
        check_role("root")
    key = new_key()
    assert key.startswith("tlk_") and len(key) > 40 and new_key() != key
    assert hash_key(key) == hash_key(key) != hash_key(key + "x")


def test_signed_links_round_trip_and_refuse_tampering_and_expiry() -> None:
    link = EventLink("doc-1", "ApprovalEvent", 2_000_000_000, {"approved": True})
    token = sign_link(link, "s3cret")
    assert verify_link(token, "s3cret", now=1_900_000_000) == link
    assert verify_link(token, "other", now=1_900_000_000) is None
    assert verify_link(token, "s3cret", now=2_000_000_001) is None
    payload, mac = token.split(".")
    forged = sign_link(EventLink("doc-2", "ApprovalEvent", 2_000_000_000, None), "x")
    assert verify_link(f"{forged.split('.')[0]}.{mac}", "s3cret", now=0) is None
    assert verify_link("garbage", "s3cret", now=0) is None
    assert verify_link(payload + "x." + mac, "s3cret", now=0) is None
