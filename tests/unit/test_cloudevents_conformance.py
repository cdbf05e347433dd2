"""The CloudEvents conformance suite's JSON format cases (tests/data/cloudevents/, from
github.com/cloudevents/conformance, Apache License 2.0): every valid event and batch read
and written back unchanged, every invalid one refused naming the attribute and the rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskloom.cloudevents.formats import from_json, parse_batch, parse_structured, to_batch, to_json
from taskloom.errors import InvalidCloudEventError

DATA = Path(__file__).resolve().parents[1] / "data" / "cloudevents"


def _cases(name: str) -> list[Any]:
    tests = json.loads((DATA / name).read_text(encoding="utf-8"))["tests"]
    return [pytest.param(case, id=case["id"]) for case in tests]


# What each invalid case exercises: (the attribute the error must name, a word of its rule).
INVALID_EVENTS = {
    "invalidNoSpecVersion": ("specversion", "required"),
    "invalidNoId": ("id", "required"),
    "invalidNoType": ("type", "required"),
    "invalidNoSource": ("source", "required"),
    "invalidTimeGarbage": ("time", "RFC 3339"),
    "invalidTimeToMinute": ("time", "RFC 3339"),
    "invalidTimeOffsetX": ("time", "RFC 3339"),
    "invalidTimeOffsetOutOfRange": ("time", "out of range"),
    "invalidTimeOffsetNonInteger": ("time", "RFC 3339"),
    "invalidTimeOffsetHourOnly": ("time", "RFC 3339"),
    "invalidEmptyId": ("id", "non-empty"),
    "invalidEmptyType": ("type", "non-empty"),
    "invalidEmptySource": ("source", "non-empty"),
    "invalidEmptySpecVersion": ("specversion", "non-empty"),
    "invalidUnknownSpecVersion": ("specversion", "'1.0'"),
    "invalidNonRfc2046DataContentType": ("datacontenttype", "RFC 2046"),
    "invalidEmptyDataContentType": ("datacontenttype", "non-empty"),
    "invalidEmptyDataSchema": ("dataschema", "non-empty"),
    "invalidEmptySubject": ("subject", "non-empty"),
    "invalidNumericId": ("id", "must be a string"),
    "invalidObjectId": ("id", "must be a string"),
    "invalidCapitalizedExtension": ("MyExtension", "lowercase"),
    "invalidPunctuatedExtension": ("my.extension", "lowercase"),
    "invalidNonIntegerExtensionValue": ("my.extension", "lowercase"),
    "invalidBothDataAndDataBase64": ("data_base64", "together with data"),
}

INVALID_BATCHES = {
    "invalidBatchMixedSpecVersions": ("batch[1].specversion", "'1.0'"),
    "invalidBatchContainingInvalidCloudEvent": ("batch[0].id", "required"),
    "invalidBatchContainingNonObject": ("batch[0]", "JSON object"),
}


def _body(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8")


def _assert_names(exc: InvalidCloudEventError, attribute: str, word: str) -> None:
    assert exc.attribute == attribute
    assert word in exc.rule
    message = str(exc)
    assert repr(attribute) in message
    assert exc.rule in message
    assert "correct" in message


def test_the_suite_is_complete() -> None:
    counts = {
        name: len(json.loads((DATA / name).read_text(encoding="utf-8"))["tests"])
        for name in ("valid-events.json", "invalid-events.json")
    }
    counts |= {
        name: len(json.loads((DATA / name).read_text(encoding="utf-8"))["tests"])
        for name in ("valid-batches.json", "invalid-batches.json")
    }
    assert counts == {
        "valid-events.json": 10,
        "invalid-events.json": 25,
        "valid-batches.json": 5,
        "invalid-batches.json": 3,
    }
    ids = {c.values[0]["id"] for c in _cases("invalid-events.json")}
    assert ids == set(INVALID_EVENTS)
    ids = {c.values[0]["id"] for c in _cases("invalid-batches.json")}
    assert ids == set(INVALID_BATCHES)


@pytest.mark.parametrize("case", _cases("valid-events.json"))
def test_valid_event_round_trips_unchanged(case: dict[str, Any]) -> None:
    obj = case["event"]
    event = from_json(obj)
    assert to_json(event) == obj
    assert event.id == obj["id"]
    assert event.source == obj["source"]
    assert event.type == obj["type"]
    assert parse_structured(_body(obj)) == event
    again = from_json(to_json(event))
    assert again == event
    assert to_json(again) == obj


@pytest.mark.parametrize("case", _cases("valid-events.json"))
def test_valid_event_attributes(case: dict[str, Any]) -> None:
    obj = case["event"]
    event = from_json(obj)
    if obj.get("time"):
        assert event.time is not None
        assert event.time.tzinfo is not None
        assert event.time_text == obj["time"]
    for name in ("subject", "datacontenttype", "dataschema", "data"):
        assert getattr(event, name) == obj.get(name)
    if case.get("sampleExtensionAttributes"):
        assert event.extensions["extinteger"] == 10
        assert event.extensions["extboolean"] is True
        assert event.extensions["exttimestamp"] == "2023-03-31T15:12:00Z"


@pytest.mark.parametrize("case", _cases("valid-batches.json"))
def test_valid_batch_round_trips_unchanged(case: dict[str, Any]) -> None:
    batch = case["batch"]
    events = parse_batch(_body(batch))
    assert len(events) == len(batch)
    assert [to_json(e) for e in events] == batch
    assert json.loads(to_batch(events)) == batch
    assert parse_batch(to_batch(events)) == events


@pytest.mark.parametrize("case", _cases("invalid-events.json"))
def test_invalid_event_refused_naming_attribute_and_rule(case: dict[str, Any]) -> None:
    attribute, word = INVALID_EVENTS[case["id"]]
    with pytest.raises(InvalidCloudEventError) as caught:
        from_json(case["event"])
    _assert_names(caught.value, attribute, word)
    with pytest.raises(InvalidCloudEventError) as caught:
        parse_structured(_body(case["event"]))
    _assert_names(caught.value, attribute, word)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("case", _cases("invalid-batches.json"))
def test_invalid_batch_refused_whole(case: dict[str, Any]) -> None:
    attribute, word = INVALID_BATCHES[case["id"]]
    with pytest.raises(InvalidCloudEventError) as caught:
        parse_batch(_body(case["batch"]))
    _assert_names(caught.value, attribute, word)


@pytest.mark.parametrize("case", _cases("invalid-events.json"))
def test_invalid_event_inside_a_batch_is_named_by_index(case: dict[str, Any]) -> None:
    attribute, word = INVALID_EVENTS[case["id"]]
    good = {"specversion": "1.0", "id": "ok", "type": "t", "source": "/s"}
    with pytest.raises(InvalidCloudEventError) as caught:
        parse_batch(_body([good, good, case["event"]]))
    _assert_names(caught.value, f"batch[2].{attribute}", word)
