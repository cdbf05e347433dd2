"""Event Grid style subscription filters, evaluated on a CloudEvent in its structured
JSON form (a mapping with ``id``, ``source``, ``type``, ``subject``, ``data`` and the
extension attributes at top level).

Pure: no I/O, no clock. ``EventFilter.from_json`` / ``to_json`` use the property names
of an Event Grid subscription's ``filter`` object. docs/topics-delivery.md lists the
semantics, including every choice the Event Grid documentation leaves open.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from taskloom.errors import InvalidFilterError

MAX_ADVANCED_FILTERS: Final = 25
MAX_FILTER_VALUES: Final = 25  # across all the advanced filters of one subscription
MAX_STRING_LENGTH: Final = 512
MAX_KEY_DEPTH: Final = 10  # dot-separated segments, ``data`` included (our choice)

_SINGLE_NUMBER: Final = frozenset(
    f"Number{cmp}{eq}" for cmp in ("LessThan", "GreaterThan") for eq in ("", "OrEquals")
)
_NUMBER_LIST: Final = frozenset({"NumberIn", "NumberNotIn"})
_RANGE_LIST: Final = frozenset({"NumberInRange", "NumberNotInRange"})
_STRING_LIST: Final = frozenset(
    f"String{neg}{test}"
    for neg in ("", "Not")
    for test in ("Contains", "BeginsWith", "EndsWith", "In")
)
_NULL_CHECKS: Final = frozenset({"IsNullOrUndefined", "IsNotNull"})
_ALL: Final = _SINGLE_NUMBER | _NUMBER_LIST | _RANGE_LIST | _STRING_LIST | _NULL_CHECKS
OPERATOR_TYPES: Final = tuple(sorted(_ALL | {"BoolEquals"}))
_NEGATED: Final = frozenset(op for op in _ALL if "Not" in op and op != "IsNotNull")
# Documented: a missing key matches NumberNotIn and StringNotIn and nothing else (besides
# IsNullOrUndefined). NumberNotInRange is not in the documented list; we treat it like
# NumberNotIn.
_MISSING_MATCHES: Final = frozenset({"NumberNotIn", "StringNotIn", "NumberNotInRange"})

_COMPARE: Final = {
    "NumberLessThan": operator.lt,
    "NumberGreaterThan": operator.gt,
    "NumberLessThanOrEquals": operator.le,
    "NumberGreaterThanOrEquals": operator.ge,
}
_MISSING: Final = object()
_SKIP: Final = object()


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_number(v: object, field: str) -> float:
    if not _is_number(v):
        raise InvalidFilterError(field, f"must be a finite JSON number, not {v!r}")
    return v  # type: ignore[return-value]


def _check_string(v: object, field: str) -> str:
    if not isinstance(v, str):
        raise InvalidFilterError(field, f"must be a string, not {v!r}")
    if len(v) > MAX_STRING_LENGTH:
        raise InvalidFilterError(
            field, f"is {len(v)} characters; at most {MAX_STRING_LENGTH} are allowed"
        )
    return v


def _resolve(node: Any, segments: Sequence[str]) -> Any:
    """Walk ``segments`` through nested objects: exact name first, then a
    case-insensitive match. Returns ``_MISSING`` when any step is absent."""
    for segment in segments:
        if not isinstance(node, Mapping):
            return _MISSING
        if segment in node:
            node = node[segment]
            continue
        folded = segment.lower()
        for name, child in node.items():
            if isinstance(name, str) and name.lower() == folded:
                node = child
                break
        else:
            return _MISSING
    return node


@dataclass(frozen=True)
class AdvancedFilter:
    """One advanced filter: ``operator_type`` (an Event Grid operator name), ``key`` (an
    attribute name or a ``data.a.b`` path) and ``value`` (single-value operators) or
    ``values`` (list operators; ``[low, high]`` pairs for the range operators)."""

    operator_type: str
    key: str
    value: Any = None
    values: Sequence[Any] | None = None

    def __post_init__(self) -> None:
        op = self.operator_type
        if op not in OPERATOR_TYPES:
            raise InvalidFilterError(
                "operatorType", f"{op!r} is not an operator; allowed: {', '.join(OPERATOR_TYPES)}"
            )
        if not isinstance(self.key, str) or not self.key:
            raise InvalidFilterError("key", f"must be a non-empty string, not {self.key!r}")
        _check_string(self.key, "key")
        segments = self.key.split(".")
        if any(not s for s in segments):
            raise InvalidFilterError("key", f"{self.key!r} has an empty segment")
        if len(segments) > MAX_KEY_DEPTH:
            raise InvalidFilterError(
                "key", f"{self.key!r} has {len(segments)} segments; at most {MAX_KEY_DEPTH}"
            )
        single = op in _SINGLE_NUMBER or op == "BoolEquals"
        listed = op in _NUMBER_LIST | _RANGE_LIST | _STRING_LIST
        if not single and self.value is not None:
            raise InvalidFilterError(
                "value", f"{op} takes {'values' if listed else 'no value'}, not value"
            )
        if not listed and self.values is not None:
            raise InvalidFilterError(
                "values", f"{op} takes {'value' if single else 'no value'}, not values"
            )
        if op in _SINGLE_NUMBER:
            _check_number(self.value, "value")
        elif op == "BoolEquals" and not isinstance(self.value, bool):
            raise InvalidFilterError("value", f"BoolEquals needs true or false, not {self.value!r}")
        if listed:
            object.__setattr__(self, "values", self._checked_values())

    def _checked_values(self) -> tuple[Any, ...]:
        raw = self.values
        if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or not raw:
            raise InvalidFilterError(
                "values", f"{self.operator_type} needs a non-empty array of values, not {raw!r}"
            )
        if len(raw) > MAX_FILTER_VALUES:
            raise InvalidFilterError(
                "values", f"has {len(raw)} values; at most {MAX_FILTER_VALUES} are allowed"
            )
        out: list[Any] = []
        for i, v in enumerate(raw):
            where = f"values[{i}]"
            if self.operator_type in _NUMBER_LIST:
                out.append(_check_number(v, where))
            elif self.operator_type in _STRING_LIST:
                out.append(_check_string(v, where))
            else:
                if isinstance(v, str | bytes) or not isinstance(v, Sequence) or len(v) != 2:
                    raise InvalidFilterError(where, f"must be a [low, high] pair, not {v!r}")
                low = _check_number(v[0], f"{where}[0]")
                high = _check_number(v[1], f"{where}[1]")
                if low > high:
                    raise InvalidFilterError(where, f"low {low} is above high {high}")
                out.append((low, high))
        return tuple(out)

    @property
    def value_count(self) -> int:
        """How many values this filter spends of the subscription's budget of 25."""
        if self.values is not None:
            return len(self.values)
        return 0 if self.operator_type in _NULL_CHECKS else 1

    # -- evaluation --------------------------------------------------------------

    def evaluate(self, event: Mapping[str, Any], *, arrays: bool = False) -> bool:
        """Whether ``event`` passes this filter; ``arrays`` is the subscription's
        ``enableAdvancedFilteringOnArrays``."""
        op = self.operator_type
        raw = _resolve(event, self.key.split("."))
        if raw is _MISSING or raw is None:
            if op in _NULL_CHECKS:
                return op == "IsNullOrUndefined"
            return op in _MISSING_MATCHES
        if op in _NULL_CHECKS:
            return op == "IsNotNull"
        negated = op in _NEGATED
        if isinstance(raw, list):
            if not arrays:
                return False
            items = [c for c in (self._comparable(v) for v in raw) if c is not _SKIP]
            if negated:
                return not any(self._hits(c) for c in items)
            return any(self._hits(c) for c in items)
        comparable = self._comparable(raw)
        if comparable is _SKIP:
            return False
        return self._hits(comparable) != negated

    def _comparable(self, v: Any) -> Any:
        op = self.operator_type
        if op == "BoolEquals":
            return v if isinstance(v, bool) else _SKIP
        if op in _STRING_LIST:
            if isinstance(v, str):
                return v.lower()
            # Context attributes (keys outside ``data``) are strings on the wire in
            # CloudEvents; an integer or boolean one compares by its canonical text.
            if not self.key.lower().startswith("data."):
                if isinstance(v, bool):
                    return "true" if v else "false"
                if isinstance(v, int):
                    return str(v)
            return _SKIP
        return v if _is_number(v) else _SKIP

    def _hits(self, v: Any) -> bool:
        """The positive test; negated operators invert it."""
        op = self.operator_type
        if op == "BoolEquals":
            return bool(v == self.value)
        if op in _SINGLE_NUMBER:
            return bool(_COMPARE[op](v, self.value))
        values = self.values or ()
        if op in _NUMBER_LIST:
            return any(v == x for x in values)
        if op in _RANGE_LIST:
            return any(low <= v <= high for low, high in values)
        needles = [x.lower() for x in values]
        if op in ("StringIn", "StringNotIn"):
            return v in needles
        if op in ("StringContains", "StringNotContains"):
            return any(n in v for n in needles)
        if op in ("StringBeginsWith", "StringNotBeginsWith"):
            return any(v.startswith(n) for n in needles)
        return any(v.endswith(n) for n in needles)

    # -- JSON --------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"operatorType": self.operator_type, "key": self.key}
        if self.values is not None:
            out["values"] = [list(v) if isinstance(v, tuple) else v for v in self.values]
        elif self.operator_type not in _NULL_CHECKS:
            out["value"] = self.value
        return out

    @classmethod
    def from_json(cls, obj: object) -> AdvancedFilter:
        if not isinstance(obj, Mapping):
            raise InvalidFilterError("(filter)", f"must be a JSON object, not {obj!r}")
        for name in obj:
            if name not in ("operatorType", "key", "value", "values"):
                raise InvalidFilterError(
                    str(name), "is not a property; allowed: operatorType, key, value, values"
                )
        for name in ("operatorType", "key"):
            if name not in obj:
                raise InvalidFilterError(name, "is required")
        return cls(obj["operatorType"], obj["key"], obj.get("value"), obj.get("values"))

    # -- friendly constructors ---------------------------------------------------

    @classmethod
    def number_in(cls, key: str, *values: float) -> AdvancedFilter:
        return cls("NumberIn", key, values=values)

    @classmethod
    def number_less_than(cls, key: str, value: float) -> AdvancedFilter:
        return cls("NumberLessThan", key, value)

    @classmethod
    def number_greater_than(cls, key: str, value: float) -> AdvancedFilter:
        return cls("NumberGreaterThan", key, value)

    @classmethod
    def number_in_range(cls, key: str, *ranges: tuple[float, float]) -> AdvancedFilter:
        return cls("NumberInRange", key, values=ranges)

    @classmethod
    def bool_equals(cls, key: str, value: bool) -> AdvancedFilter:
        return cls("BoolEquals", key, value)

    @classmethod
    def string(cls, test: str, key: str, *values: str) -> AdvancedFilter:
        """Any string operator by its suffix: ``string("Contains", "subject", "x")``."""
        return cls(f"String{test}", key, values=values)

    @classmethod
    def is_null_or_undefined(cls, key: str) -> AdvancedFilter:
        return cls("IsNullOrUndefined", key)

    @classmethod
    def is_not_null(cls, key: str) -> AdvancedFilter:
        return cls("IsNotNull", key)


def _flag(obj: Mapping[str, Any], name: str) -> Any:
    v = obj.get(name)
    return False if v is None else v


_FILTER_PROPERTIES: Final = (
    "includedEventTypes",
    "subjectBeginsWith",
    "subjectEndsWith",
    "isSubjectCaseSensitive",
    "enableAdvancedFilteringOnArrays",
    "advancedFilters",
)


@dataclass(frozen=True)
class EventFilter:
    """An Event Grid subscription filter: event types, subject prefix/suffix, and
    advanced filters (AND across filters, OR within one filter's values)."""

    included_event_types: Sequence[str] | None = None
    subject_begins_with: str | None = None
    subject_ends_with: str | None = None
    is_subject_case_sensitive: bool = False
    advanced_filters: Sequence[AdvancedFilter] = ()
    enable_advanced_filtering_on_arrays: bool = False

    def __post_init__(self) -> None:
        types = self.included_event_types
        if types is not None:
            if isinstance(types, str) or not isinstance(types, Sequence) or not types:
                raise InvalidFilterError(
                    "includedEventTypes", "must be a non-empty array of strings, or omitted"
                )
            for i, t in enumerate(types):
                if not isinstance(t, str) or not t:
                    raise InvalidFilterError(
                        f"includedEventTypes[{i}]", f"must be a non-empty string, not {t!r}"
                    )
            object.__setattr__(self, "included_event_types", tuple(types))
        for name, v in (
            ("subjectBeginsWith", self.subject_begins_with),
            ("subjectEndsWith", self.subject_ends_with),
        ):
            if v is not None and not isinstance(v, str):
                raise InvalidFilterError(name, f"must be a string, not {v!r}")
        for name, flag in (
            ("isSubjectCaseSensitive", self.is_subject_case_sensitive),
            ("enableAdvancedFilteringOnArrays", self.enable_advanced_filtering_on_arrays),
        ):
            if not isinstance(flag, bool):
                raise InvalidFilterError(name, f"must be true or false, not {flag!r}")
        filters = self.advanced_filters
        if isinstance(filters, str) or not isinstance(filters, Sequence):
            raise InvalidFilterError("advancedFilters", "must be an array of advanced filters")
        if len(filters) > MAX_ADVANCED_FILTERS:
            raise InvalidFilterError(
                "advancedFilters",
                f"has {len(filters)} filters; at most {MAX_ADVANCED_FILTERS} are allowed",
            )
        total = 0
        for i, f in enumerate(filters):
            if not isinstance(f, AdvancedFilter):
                raise InvalidFilterError(f"advancedFilters[{i}]", "must be an AdvancedFilter")
            total += f.value_count
            if total > MAX_FILTER_VALUES:
                raise InvalidFilterError(
                    f"advancedFilters[{i}].values",
                    f"brings the subscription to {total} filter values; at most "
                    f"{MAX_FILTER_VALUES} are allowed across all advanced filters",
                )
        object.__setattr__(self, "advanced_filters", tuple(filters))

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the structured CloudEvent ``event`` passes every part of the filter."""
        types = self.included_event_types
        if types is not None and not any(t.lower() == "all" for t in types):
            kind = event.get("type")
            if not isinstance(kind, str) or kind.lower() not in {t.lower() for t in types}:
                return False
        if self.subject_begins_with or self.subject_ends_with:
            subject = event.get("subject")
            if not isinstance(subject, str):
                return False
            begins, ends = self.subject_begins_with or "", self.subject_ends_with or ""
            if not self.is_subject_case_sensitive:
                subject, begins, ends = subject.lower(), begins.lower(), ends.lower()
            if not (subject.startswith(begins) and subject.endswith(ends)):
                return False
        arrays = self.enable_advanced_filtering_on_arrays
        return all(f.evaluate(event, arrays=arrays) for f in self.advanced_filters)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.included_event_types is not None:
            out["includedEventTypes"] = list(self.included_event_types)
        if self.subject_begins_with is not None:
            out["subjectBeginsWith"] = self.subject_begins_with
        if self.subject_ends_with is not None:
            out["subjectEndsWith"] = self.subject_ends_with
        out["isSubjectCaseSensitive"] = self.is_subject_case_sensitive
        out["enableAdvancedFilteringOnArrays"] = self.enable_advanced_filtering_on_arrays
        out["advancedFilters"] = [f.to_json() for f in self.advanced_filters]
        return out

    @classmethod
    def from_json(cls, obj: object) -> EventFilter:
        """Parse an Event Grid subscription ``filter`` object."""
        if not isinstance(obj, Mapping):
            raise InvalidFilterError("filter", f"must be a JSON object, not {obj!r}")
        for name in obj:
            if name not in _FILTER_PROPERTIES:
                raise InvalidFilterError(
                    str(name), f"is not a filter property; allowed: {', '.join(_FILTER_PROPERTIES)}"
                )
        raw_filters = obj.get("advancedFilters")
        if raw_filters is None:
            raw_filters = []
        if isinstance(raw_filters, str) or not isinstance(raw_filters, Sequence):
            raise InvalidFilterError("advancedFilters", "must be an array of objects")
        parsed: list[AdvancedFilter] = []
        for i, item in enumerate(raw_filters):
            try:
                parsed.append(AdvancedFilter.from_json(item))
            except InvalidFilterError as e:
                field = f"advancedFilters[{i}]" + ("" if e.field == "(filter)" else f".{e.field}")
                raise InvalidFilterError(field, e.problem) from None
        return cls(
            included_event_types=obj.get("includedEventTypes"),
            subject_begins_with=obj.get("subjectBeginsWith"),
            subject_ends_with=obj.get("subjectEndsWith"),
            is_subject_case_sensitive=_flag(obj, "isSubjectCaseSensitive"),
            advanced_filters=parsed,
            enable_advanced_filtering_on_arrays=_flag(obj, "enableAdvancedFilteringOnArrays"),
        )
