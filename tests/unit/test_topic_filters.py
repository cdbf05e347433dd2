"""Event Grid style subscription filters: every operator, missing keys, case, arrays,
nested keys, limits, JSON round trip and error fields."""

from __future__ import annotations

from typing import Any

import pytest

from taskloom.errors import InvalidFilterError
from taskloom.topics.filters import (
    MAX_FILTER_VALUES,
    OPERATOR_TYPES,
    AdvancedFilter,
    EventFilter,
)

EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "e-1",
    "source": "/orders/Shop",
    "type": "Orders.Created",
    "subject": "/Orders/Europe/42.json",
    "comexampleothervalue": 5,
    "flagext": True,
    "data": {
        "amount": 12.5,
        "count": 3,
        "paid": True,
        "name": "Azure Data Factory",
        "nothing": None,
        "tags": ["Urgent", "billing", 7],
        "scores": [1, 5, 9],
        "flags": [True, False],
        "customer": {"address": {"city": "Lisbon"}, "tier": 2},
        "objects": [{"a": 1}],
    },
}


def ok(op: str, key: str, value: Any = None, values: Any = None, *, arrays: bool = False) -> bool:
    return AdvancedFilter(op, key, value, values).evaluate(EVENT, arrays=arrays)


# Every operator, a matching and a non-matching case on a scalar.
SCALAR_CASES = [
    ("NumberIn", "data.count", None, [1, 3], True),
    ("NumberIn", "data.count", None, [1, 2], False),
    ("NumberIn", "data.amount", None, [12.5], True),
    ("NumberNotIn", "data.count", None, [1, 2], True),
    ("NumberNotIn", "data.count", None, [3], False),
    ("NumberLessThan", "data.amount", 13, None, True),
    ("NumberLessThan", "data.amount", 12.5, None, False),
    ("NumberGreaterThan", "data.amount", 12, None, True),
    ("NumberGreaterThan", "data.amount", 12.5, None, False),
    ("NumberLessThanOrEquals", "data.amount", 12.5, None, True),
    ("NumberLessThanOrEquals", "data.amount", 12.4, None, False),
    ("NumberGreaterThanOrEquals", "data.amount", 12.5, None, True),
    ("NumberGreaterThanOrEquals", "data.amount", 12.6, None, False),
    ("NumberInRange", "data.amount", None, [[0, 1], [10, 20]], True),
    ("NumberInRange", "data.amount", None, [[12.5, 12.5]], True),
    ("NumberInRange", "data.amount", None, [[0, 1]], False),
    ("NumberNotInRange", "data.amount", None, [[0, 1]], True),
    ("NumberNotInRange", "data.amount", None, [[0, 1], [12, 13]], False),
    ("BoolEquals", "data.paid", True, None, True),
    ("BoolEquals", "data.paid", False, None, False),
    ("StringContains", "data.name", None, ["microsoft", "DATA"], True),
    ("StringContains", "data.name", None, ["aws"], False),
    ("StringNotContains", "data.name", None, ["aws", "gcp"], True),
    ("StringNotContains", "data.name", None, ["aws", "factory"], False),
    ("StringBeginsWith", "data.name", None, ["event", "azure"], True),
    ("StringBeginsWith", "data.name", None, ["data"], False),
    ("StringNotBeginsWith", "data.name", None, ["data"], True),
    ("StringNotBeginsWith", "data.name", None, ["AZURE"], False),
    ("StringEndsWith", "data.name", None, ["png", "Factory"], True),
    ("StringEndsWith", "data.name", None, ["azure"], False),
    ("StringNotEndsWith", "data.name", None, ["azure"], True),
    ("StringNotEndsWith", "data.name", None, ["FACTORY"], False),
    ("StringIn", "data.name", None, ["azure data factory"], True),
    ("StringIn", "data.name", None, ["azure"], False),
    ("StringNotIn", "data.name", None, ["aws", "bridge"], True),
    ("StringNotIn", "data.name", None, ["AZURE DATA FACTORY"], False),
    ("IsNullOrUndefined", "data.name", None, None, False),
    ("IsNullOrUndefined", "data.nothing", None, None, True),
    ("IsNotNull", "data.name", None, None, True),
    ("IsNotNull", "data.nothing", None, None, False),
    # context attributes, extension attributes, nested data
    ("StringIn", "type", None, ["orders.created"], True),
    ("StringBeginsWith", "source", None, ["/ORDERS"], True),
    ("StringContains", "Subject", None, ["europe"], True),
    ("StringBeginsWith", "comexampleothervalue", None, ["5", "1"], True),
    ("StringIn", "flagext", None, ["TRUE"], True),
    ("NumberIn", "comexampleothervalue", None, [5], True),
    ("StringIn", "data.customer.address.city", None, ["lisbon"], True),
    ("NumberGreaterThan", "Data.Customer.Tier", 1, None, True),
]


def test_every_operator_is_covered() -> None:
    assert {c[0] for c in SCALAR_CASES} == set(OPERATOR_TYPES)
    assert len(OPERATOR_TYPES) == 19


@pytest.mark.parametrize(("op", "key", "value", "values", "expected"), SCALAR_CASES)
def test_operator_on_scalar(op: str, key: str, value: Any, values: Any, expected: bool) -> None:
    assert ok(op, key, value, values) is expected


# Missing key and null value: documented "not matched" for all but NumberNotIn and
# StringNotIn (matched); NumberNotInRange follows NumberNotIn (our choice).
MISSING_MATCHED = {"NumberNotIn", "StringNotIn", "NumberNotInRange", "IsNullOrUndefined"}


def _sample(op: str) -> tuple[Any, Any]:
    if op in ("IsNullOrUndefined", "IsNotNull"):
        return None, None
    if op == "BoolEquals":
        return True, None
    if op.startswith("Number") and "Range" in op:
        return None, [[0, 100]]
    if op in ("NumberIn", "NumberNotIn"):
        return None, [1]
    if op.startswith("Number"):
        return 1, None
    return None, ["x"]


@pytest.mark.parametrize("op", OPERATOR_TYPES)
@pytest.mark.parametrize("key", ["data.absent", "absentattr", "data.nothing", "data.name.deeper"])
def test_missing_or_null_key(op: str, key: str) -> None:
    value, values = _sample(op)
    assert ok(op, key, value, values) is (op in MISSING_MATCHED)


def test_data_base64_has_no_data_keys() -> None:
    event = {"type": "t", "data_base64": "AAEC"}
    assert not AdvancedFilter("IsNotNull", "data.x").evaluate(event)
    assert AdvancedFilter("IsNullOrUndefined", "data").evaluate(event)


# Wrong scalar type: not matched, negated operators included.
WRONG_TYPE = [
    ("NumberIn", "data.name", None, [1]),
    ("NumberNotIn", "data.name", None, [1]),
    ("NumberGreaterThan", "data.paid", 0, None),  # a boolean is not a number
    ("NumberNotInRange", "data.name", None, [[0, 1]]),
    ("BoolEquals", "data.count", True, None),
    ("StringIn", "data.count", None, ["3"]),  # no coercion inside data
    ("StringNotIn", "data.count", None, ["4"]),
    ("StringContains", "data.customer", None, ["a"]),
    ("NumberIn", "source", None, [1]),
]


@pytest.mark.parametrize(("op", "key", "value", "values"), WRONG_TYPE)
def test_wrong_type_does_not_match(op: str, key: str, value: Any, values: Any) -> None:
    assert ok(op, key, value, values) is False


# Arrays: off -> never matched (except the null checks); on -> any element for the
# positive operators, no element for the negated ones; wrong-typed elements ignored.
ARRAY_CASES = [
    ("StringIn", "data.tags", None, ["urgent"], True),
    ("StringContains", "data.tags", None, ["bill"], True),
    ("StringIn", "data.tags", None, ["7"], False),
    ("StringNotIn", "data.tags", None, ["urgent"], False),
    ("StringNotIn", "data.tags", None, ["nope"], True),
    ("StringNotContains", "data.tags", None, ["ill"], False),
    ("StringNotBeginsWith", "data.tags", None, ["x"], True),
    ("StringEndsWith", "data.tags", None, ["ING"], True),
    ("StringNotEndsWith", "data.tags", None, ["ent"], False),
    ("StringBeginsWith", "data.tags", None, ["urg"], True),
    ("NumberIn", "data.scores", None, [9], True),
    ("NumberIn", "data.tags", None, [7], True),
    ("NumberNotIn", "data.scores", None, [2, 4], True),
    ("NumberNotIn", "data.scores", None, [5], False),
    ("NumberGreaterThan", "data.scores", 8, None, True),
    ("NumberGreaterThan", "data.scores", 9, None, False),
    ("NumberLessThan", "data.scores", 2, None, True),
    ("NumberLessThanOrEquals", "data.scores", 1, None, True),
    ("NumberGreaterThanOrEquals", "data.scores", 10, None, False),
    ("NumberInRange", "data.scores", None, [[4, 6]], True),
    ("NumberInRange", "data.scores", None, [[2, 4]], False),
    ("NumberNotInRange", "data.scores", None, [[2, 4]], True),
    ("NumberNotInRange", "data.scores", None, [[4, 6]], False),
    ("BoolEquals", "data.flags", False, None, True),
    ("BoolEquals", "data.scores", True, None, False),
    ("StringIn", "data.objects", None, ["a"], False),
    ("StringNotIn", "data.objects", None, ["a"], True),  # nothing comparable: no failure
    ("IsNotNull", "data.tags", None, None, True),
]


@pytest.mark.parametrize(("op", "key", "value", "values", "expected"), ARRAY_CASES)
def test_arrays_enabled(op: str, key: str, value: Any, values: Any, expected: bool) -> None:
    assert ok(op, key, value, values, arrays=True) is expected


@pytest.mark.parametrize(("op", "key", "value", "values", "expected"), ARRAY_CASES)
def test_arrays_disabled(op: str, key: str, value: Any, values: Any, expected: bool) -> None:
    assert ok(op, key, value, values, arrays=False) is (op == "IsNotNull")


def test_empty_array() -> None:
    event = {"data": {"tags": []}}
    assert not AdvancedFilter("StringIn", "data.tags", values=["a"]).evaluate(event, arrays=True)
    assert AdvancedFilter("StringNotIn", "data.tags", values=["a"]).evaluate(event, arrays=True)


def test_exact_key_wins_over_case_insensitive() -> None:
    event = {"data": {"Name": "upper", "name": "lower"}}
    assert AdvancedFilter("StringIn", "data.Name", values=["upper"]).evaluate(event)
    assert AdvancedFilter("StringIn", "data.name", values=["lower"]).evaluate(event)
    assert AdvancedFilter("StringIn", "data.NAME", values=["upper"]).evaluate(event)


# -- EventFilter ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, True),
        ({"included_event_types": ["Orders.Created"]}, True),
        ({"included_event_types": ["orders.created", "x"]}, True),
        ({"included_event_types": ["Orders.Deleted"]}, False),
        ({"included_event_types": ["All"]}, True),
        ({"subject_begins_with": "/orders/"}, True),
        ({"subject_begins_with": "/orders/", "is_subject_case_sensitive": True}, False),
        ({"subject_begins_with": "/Orders/", "is_subject_case_sensitive": True}, True),
        ({"subject_ends_with": ".JSON"}, True),
        ({"subject_ends_with": ".JSON", "is_subject_case_sensitive": True}, False),
        ({"subject_begins_with": "/orders", "subject_ends_with": ".xml"}, False),
        ({"subject_begins_with": ""}, True),
    ],
)
def test_event_filter_basic(kwargs: dict[str, Any], expected: bool) -> None:
    assert EventFilter(**kwargs).matches(EVENT) is expected


def test_subject_filter_with_no_subject() -> None:
    assert not EventFilter(subject_begins_with="/a").matches({"type": "t"})
    assert EventFilter().matches({"type": "t"})
    assert not EventFilter(included_event_types=["t"]).matches({"subject": "s"})


def test_and_across_filters_or_within() -> None:
    a = AdvancedFilter.string("Contains", "subject", "europe", "asia")
    b = AdvancedFilter.number_greater_than("data.amount", 5)
    c = AdvancedFilter.number_less_than("data.amount", 10)
    assert EventFilter(advanced_filters=[a, b]).matches(EVENT)
    assert not EventFilter(advanced_filters=[a, b, c]).matches(EVENT)
    assert not EventFilter(included_event_types=["x"], advanced_filters=[a]).matches(EVENT)


def test_array_flag_passes_through() -> None:
    f = AdvancedFilter.string("In", "data.tags", "billing")
    assert not EventFilter(advanced_filters=[f]).matches(EVENT)
    assert EventFilter(advanced_filters=[f], enable_advanced_filtering_on_arrays=True).matches(
        EVENT
    )


def test_friendly_constructors() -> None:
    assert AdvancedFilter.number_in("data.count", 3) == AdvancedFilter(
        "NumberIn", "data.count", values=(3,)
    )
    assert AdvancedFilter.number_in_range("data.amount", (10, 20)).evaluate(EVENT)
    assert AdvancedFilter.bool_equals("data.paid", True).evaluate(EVENT)
    assert AdvancedFilter.is_null_or_undefined("data.gone").evaluate(EVENT)
    assert AdvancedFilter.is_not_null("id").evaluate(EVENT)


# -- JSON -------------------------------------------------------------------------

FULL_JSON: dict[str, Any] = {
    "includedEventTypes": ["Orders.Created"],
    "subjectBeginsWith": "/orders",
    "subjectEndsWith": ".json",
    "isSubjectCaseSensitive": False,
    "enableAdvancedFilteringOnArrays": True,
    "advancedFilters": [
        {"operatorType": "NumberGreaterThanOrEquals", "key": "data.amount", "value": 5},
        {"operatorType": "NumberInRange", "key": "data.amount", "values": [[1, 20]]},
        {"operatorType": "StringContains", "key": "subject", "values": ["europe", "asia"]},
        {"operatorType": "BoolEquals", "key": "data.paid", "value": True},
        {"operatorType": "IsNotNull", "key": "data.customer.tier"},
    ],
}


def test_json_round_trip() -> None:
    f = EventFilter.from_json(FULL_JSON)
    assert f.to_json() == FULL_JSON
    assert EventFilter.from_json(f.to_json()) == f
    assert f.matches(EVENT)


def test_json_minimal_and_nulls() -> None:
    f = EventFilter.from_json({"isSubjectCaseSensitive": None, "advancedFilters": None})
    assert f == EventFilter()
    assert f.to_json() == {
        "isSubjectCaseSensitive": False,
        "enableAdvancedFilteringOnArrays": False,
        "advancedFilters": [],
    }


def _af(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"operatorType": "StringIn", "key": "subject", "values": ["a"]}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


BAD_JSON = [
    ("x", "filter"),
    ({"subjectbeginswith": "a"}, "subjectbeginswith"),
    ({"includedEventTypes": "a"}, "includedEventTypes"),
    ({"includedEventTypes": []}, "includedEventTypes"),
    ({"includedEventTypes": ["a", 3]}, "includedEventTypes[1]"),
    ({"subjectBeginsWith": 3}, "subjectBeginsWith"),
    ({"subjectEndsWith": ["a"]}, "subjectEndsWith"),
    ({"isSubjectCaseSensitive": "yes"}, "isSubjectCaseSensitive"),
    ({"enableAdvancedFilteringOnArrays": 1}, "enableAdvancedFilteringOnArrays"),
    ({"advancedFilters": {}}, "advancedFilters"),
    ({"advancedFilters": [_af(), "x"]}, "advancedFilters[1]"),
    (
        {"advancedFilters": [_af(), _af(), _af(operatorType="StringLike")]},
        "advancedFilters[2].operatorType",
    ),
    ({"advancedFilters": [_af(operatorType=...)]}, "advancedFilters[0].operatorType"),
    ({"advancedFilters": [_af(key=...)]}, "advancedFilters[0].key"),
    ({"advancedFilters": [_af(key="")]}, "advancedFilters[0].key"),
    ({"advancedFilters": [_af(key="data..a")]}, "advancedFilters[0].key"),
    ({"advancedFilters": [_af(key=".".join(["data"] + ["k"] * 10))]}, "advancedFilters[0].key"),
    ({"advancedFilters": [_af(key="k" * 513)]}, "advancedFilters[0].key"),
    ({"advancedFilters": [_af(extra=1)]}, "advancedFilters[0].extra"),
    ({"advancedFilters": [_af(values=...)]}, "advancedFilters[0].values"),
    ({"advancedFilters": [_af(values=[])]}, "advancedFilters[0].values"),
    ({"advancedFilters": [_af(values="abc")]}, "advancedFilters[0].values"),
    ({"advancedFilters": [_af(values=["a", 1])]}, "advancedFilters[0].values[1]"),
    ({"advancedFilters": [_af(values=["a" * 513])]}, "advancedFilters[0].values[0]"),
    ({"advancedFilters": [_af(values=["a"] * 26)]}, "advancedFilters[0].values"),
    ({"advancedFilters": [_af(value="a")]}, "advancedFilters[0].value"),
    (
        {"advancedFilters": [_af(operatorType="NumberIn", values=["1"])]},
        "advancedFilters[0].values[0]",
    ),
    (
        {"advancedFilters": [_af(operatorType="NumberIn", values=[True])]},
        "advancedFilters[0].values[0]",
    ),
    (
        {"advancedFilters": [_af(operatorType="NumberIn", values=[float("nan")])]},
        "advancedFilters[0].values[0]",
    ),
    (
        {"advancedFilters": [_af(operatorType="NumberInRange", values=[[1]])]},
        "advancedFilters[0].values[0]",
    ),
    (
        {"advancedFilters": [_af(operatorType="NumberInRange", values=[[1, "2"]])]},
        "advancedFilters[0].values[0][1]",
    ),
    (
        {"advancedFilters": [_af(operatorType="NumberNotInRange", values=[[3, 2]])]},
        "advancedFilters[0].values[0]",
    ),
    (
        {"advancedFilters": [_af(operatorType="NumberLessThan", values=...)]},
        "advancedFilters[0].value",
    ),
    (
        {"advancedFilters": [_af(operatorType="NumberLessThan", values=..., value="1")]},
        "advancedFilters[0].value",
    ),
    (
        {"advancedFilters": [_af(operatorType="NumberLessThan", value=1)]},
        "advancedFilters[0].values",
    ),
    (
        {"advancedFilters": [_af(operatorType="BoolEquals", values=..., value="true")]},
        "advancedFilters[0].value",
    ),
    ({"advancedFilters": [_af(operatorType="IsNotNull")]}, "advancedFilters[0].values"),
    (
        {"advancedFilters": [_af(operatorType="IsNotNull", values=..., value=1)]},
        "advancedFilters[0].value",
    ),
    ({"advancedFilters": [_af()] * 26}, "advancedFilters"),
    (
        {"advancedFilters": [_af(values=["a"] * 20), _af(values=["b"] * 6)]},
        "advancedFilters[1].values",
    ),
]


@pytest.mark.parametrize(("obj", "field"), BAD_JSON)
def test_bad_json_names_the_field(obj: Any, field: str) -> None:
    with pytest.raises(InvalidFilterError) as info:
        EventFilter.from_json(obj)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert isinstance(info.value, ValueError)


def test_error_message_lists_allowed_operators() -> None:
    with pytest.raises(InvalidFilterError, match="allowed: BoolEquals, IsNotNull"):
        AdvancedFilter("Equals", "subject", values=["a"])


def test_limits_are_exactly_at_the_edge() -> None:
    at_limit = [AdvancedFilter("StringIn", "subject", values=["a"])] * 25
    assert len(EventFilter(advanced_filters=at_limit).advanced_filters) == 25
    assert EventFilter(
        advanced_filters=[AdvancedFilter("StringIn", "subject", values=["a"] * MAX_FILTER_VALUES)]
    )
    AdvancedFilter("StringIn", "subject", values=["a" * 512])
    AdvancedFilter("IsNotNull", ".".join(["data"] + ["k"] * 9))
    # null checks spend no values; single-value operators spend one
    nulls = [AdvancedFilter("IsNotNull", "id")] * 25
    assert EventFilter(advanced_filters=nulls)
    singles = [AdvancedFilter("NumberLessThan", "data.x", 1)] * 25
    assert EventFilter(advanced_filters=singles)
    with pytest.raises(InvalidFilterError) as info:
        EventFilter(
            advanced_filters=[*singles[:24], AdvancedFilter("StringIn", "id", values=["a", "b"])]
        )
    assert info.value.field == "advancedFilters[24].values"


def test_python_constructor_errors() -> None:
    with pytest.raises(InvalidFilterError) as info:
        EventFilter(advanced_filters=["x"])  # type: ignore[list-item]
    assert info.value.field == "advancedFilters[0]"
    with pytest.raises(InvalidFilterError) as info:
        EventFilter(is_subject_case_sensitive="no")  # type: ignore[arg-type]
    assert info.value.field == "isSubjectCaseSensitive"


def test_filters_are_frozen_and_hashable() -> None:
    f = EventFilter.from_json(FULL_JSON)
    assert hash(f) == hash(EventFilter.from_json(FULL_JSON))
    with pytest.raises(AttributeError):
        f.subject_begins_with = "x"  # type: ignore[misc]
