"""CloudEvents beyond the conformance suite: events made in code, data and data_base64,
the binary HTTP mode, Event Grid's schema, malformed bodies."""

from __future__ import annotations

import json
import pickle
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from taskloom.cloudevents.event import CloudEvent
from taskloom.cloudevents.formats import (
    from_binary,
    from_eventgrid,
    from_json,
    parse_batch,
    parse_eventgrid,
    parse_structured,
    to_binary,
    to_eventgrid,
    to_json,
    to_structured,
)
from taskloom.errors import InvalidCloudEventError, TaskloomError

T = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def _refused(attribute: str, call: Any, *args: Any, **kwargs: Any) -> InvalidCloudEventError:
    with pytest.raises(InvalidCloudEventError) as caught:
        call(*args, **kwargs)
    assert caught.value.attribute == attribute, str(caught.value)
    assert repr(attribute) in str(caught.value)
    return caught.value


# -- events made in code ---------------------------------------------------------------


def test_code_made_event_gets_a_uuid4_id() -> None:
    a, b = CloudEvent("com.example.made", "/orders"), CloudEvent("com.example.made", "/orders")
    assert uuid.UUID(a.id).version == 4
    assert a.id != b.id
    assert a.specversion == "1.0"
    assert a.time is None and a.subject is None and a.data is None and a.extensions == {}


def test_time_reads_as_aware_datetime_and_writes_rfc3339() -> None:
    event = CloudEvent("t", "/s", time=T)
    assert event.time == T
    assert to_json(event)["time"] == "2024-05-06T07:08:09.123456Z"
    plus2 = timezone(timedelta(hours=2))
    other = CloudEvent("t", "/s", time=datetime(2024, 1, 1, 12, tzinfo=plus2))
    assert other.time_text == "2024-01-01T12:00:00+02:00"
    text = CloudEvent("t", "/s", time="2018-04-05T17:31:00.123456789Z")
    assert text.time == datetime(2018, 4, 5, 17, 31, 0, 123456, tzinfo=UTC)
    assert to_json(text)["time"] == "2018-04-05T17:31:00.123456789Z"
    leap = CloudEvent("t", "/s", time="2016-12-31T23:59:60Z")
    assert leap.time == datetime(2017, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "attribute"),
    [
        ({"type": ""}, "type"),
        ({"source": "has space"}, "source"),
        ({"source": "9ab:c"}, "source"),
        ({"source": "/bad%zz"}, "source"),
        ({"id": ""}, "id"),
        ({"time": datetime(2020, 1, 1)}, "time"),
        ({"time": "2020-02-30T00:00:00Z"}, "time"),
        ({"subject": "line\nbreak"}, "subject"),
        ({"datacontenttype": "json"}, "datacontenttype"),
        ({"dataschema": "relative/path"}, "dataschema"),
        ({"extensions": {"Upper": 1}}, "Upper"),
        ({"extensions": {"time": "x"}}, "time"),
        ({"extensions": {"data": "x"}}, "data"),
        ({"extensions": {"big": 2**31}}, "big"),
        ({"extensions": {"ratio": 0.5}}, "ratio"),
        ({"extensions": {"list": [1]}}, "list"),
        ({"specversion": "0.3"}, "specversion"),
    ],
)
def test_code_made_event_is_validated(kwargs: dict[str, Any], attribute: str) -> None:
    args = {"type": "t", "source": "/s"} | kwargs
    _refused(attribute, CloudEvent, args.pop("type"), args.pop("source"), **args)


def test_extension_values_of_cloudevents_types() -> None:
    event = CloudEvent(
        "t",
        "/s",
        extensions={
            "n": -(2**31),
            "flag": False,
            "when": T,
            "blob": b"Ma",
            "averyveryverylongextensionname": "ok",
        },
    )
    assert event.extensions["when"] == "2024-05-06T07:08:09.123456Z"
    assert event.extensions["blob"] == "TWE="
    assert from_json(to_json(event)) == event


def test_equality_repr_hash_and_pickled_error() -> None:
    a = CloudEvent("t", "/s", {"x": 1}, id="1", time=T, extensions={"e": 1})
    b = CloudEvent("t", "/s", {"x": 1}, id="1", time=T, extensions={"e": 1})
    assert a == b and hash(a) == hash(b)
    assert a != CloudEvent("t", "/s", {"x": 1}, id="1", time=T, extensions={"e": True})
    assert a != CloudEvent("t", "/s", {"x": 2}, id="1", time=T, extensions={"e": 1})
    assert "type='t'" in repr(a) and "id='1'" in repr(a)
    error = _refused("id", CloudEvent, "t", "/s", id="")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.attribute, copy.rule) == (error.attribute, error.rule)
    assert isinstance(error, TaskloomError) and isinstance(error, ValueError)


# -- data and data_base64 --------------------------------------------------------------


def test_bytes_data_travels_as_data_base64() -> None:
    event = CloudEvent("t", "/s", b"\x00\xffbinary", id="1")
    obj = to_json(event)
    assert "data" not in obj and obj["data_base64"] == "AP9iaW5hcnk="
    assert from_json(obj).data == b"\x00\xffbinary"
    assert parse_structured(to_structured(event)) == event


def test_data_and_data_base64_rules() -> None:
    base = {"specversion": "1.0", "id": "1", "type": "t", "source": "/s"}
    _refused("data_base64", from_json, base | {"data_base64": "not base64!"})
    _refused("data_base64", from_json, base | {"data_base64": "TWF="})  # non-canonical bits
    _refused("data_base64", from_json, base | {"data_base64": 5})
    _refused("data_base64", from_json, base | {"data": None, "data_base64": "TWE="})
    explicit_null = base | {"data": None}
    assert to_json(from_json(explicit_null)) == explicit_null
    assert from_json(base | {"data_base64": ""}).data == b""


def test_json_data_values_and_encode() -> None:
    @dataclass
    class Point:
        x: int
        y: int

    event = CloudEvent("t", "/s", {"p": Point(1, 2), "t": (1, 2)}, id="1")
    _refused("data", to_json, event)
    obj = to_json(event, encode=lambda v: {"x": v.x, "y": v.y})
    assert obj["data"] == {"p": {"x": 1, "y": 2}, "t": [1, 2]}
    _refused("data", to_json, CloudEvent("t", "/s", float("nan")))


def test_malformed_bodies() -> None:
    assert _refused("body", parse_structured, b"{not json").rule.startswith("must be well-formed")
    _refused("body", parse_structured, b"\xff\xfe")
    _refused("body", parse_structured, b'{"id": "a", "id": "b"}')
    _refused("body", parse_structured, b'{"data": NaN}')
    _refused("event", parse_structured, b"[]")
    _refused("body", parse_batch, b"{}")


# -- binary HTTP mode ------------------------------------------------------------------


def _headers(**extra: str) -> dict[str, str]:
    return {"ce-specversion": "1.0", "ce-id": "42", "ce-source": "/orders", "ce-type": "t"} | extra


def test_binary_round_trip_with_percent_encoding() -> None:
    event = CloudEvent(
        "com.example.ünïcode",
        "https://example.com/a%20b",
        {"k": "v"},
        id="id with space",
        subject='say "hi" 100% ✓',
        time="2018-04-05T17:31:00+01:00",
        datacontenttype="application/json",
        extensions={"traceparent": "00-abc-01"},
    )
    headers, body = to_binary(event)
    assert headers["ce-subject"] == "say%20%22hi%22%20100%25%20%E2%9C%93"
    assert headers["ce-source"] == "https://example.com/a%2520b"
    assert headers["ce-id"] == "id%20with%20space"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"k": "v"}
    assert from_binary(headers, body) == event


def test_binary_headers_case_insensitive_lowercase_hex_and_quotes() -> None:
    headers = {
        "CE-SpecVersion": "1.0",
        "Ce-Id": "42",
        "ce-SOURCE": "/orders",
        "ce-type": "t",
        "ce-subject": "caf%c3%a9",
        "ce-myext": '"quoted \\"value\\""',
        "Content-Type": "text/plain; charset=utf-8",
        "X-Other": "ignored",
    }
    event = from_binary(headers, "héllo".encode())
    assert event.subject == "café"
    assert event.extensions == {"myext": 'quoted "value"'}
    assert event.data == "héllo"
    assert event.datacontenttype == "text/plain; charset=utf-8"


def test_binary_bodies_by_content_type() -> None:
    assert from_binary(_headers(), b"\x01\x02").data == b"\x01\x02"
    raw = from_binary(_headers(**{"content-type": "application/octet-stream"}), b"\x01")
    assert raw.data == b"\x01"
    assert from_binary(_headers(**{"content-type": "application/vnd.x+json"}), b"[1]").data == [1]
    assert from_binary(_headers(**{"content-type": "application/json"}), b"").data is None
    latin = from_binary(_headers(**{"content-type": "text/plain; charset=latin-1"}), b"\xe9")
    assert latin.data == "é"
    bytes_event = CloudEvent("t", "/s", b"\x00\x01", id="1")
    headers, body = to_binary(bytes_event)
    assert "content-type" not in headers and body == b"\x00\x01"
    assert from_binary(headers, body) == bytes_event
    text_event = CloudEvent("t", "/s", "plain", id="1", datacontenttype="text/plain")
    assert from_binary(*to_binary(text_event)) == text_event


def test_binary_mode_errors() -> None:
    no_id = {k: v for k, v in _headers().items() if k != "ce-id"}
    _refused("id", from_binary, no_id, b"")
    _refused("subject", from_binary, _headers(**{"ce-subject": "%C0%A0"}), b"")  # overlong
    _refused("subject", from_binary, _headers(**{"ce-subject": "100%"}), b"")
    _refused("bad.name", from_binary, _headers(**{"ce-bad.name": "x"}), b"")
    _refused("specversion", from_binary, _headers(**{"ce-specversion": "0.3"}), b"")
    _refused("time", from_binary, _headers(**{"ce-time": "yesterday"}), b"")
    _refused("body", from_binary, _headers(**{"content-type": "application/json"}), b"{x")
    _refused("datacontenttype", from_binary, _headers(**{"content-type": "nonsense"}), b"")
    structured = {"content-type": "application/cloudevents+json"}
    _refused("datacontenttype", from_binary, structured, b"{}")
    _refused("id", from_binary, _headers(**{"CE-ID": "again"}), b"")
    _refused("data", to_binary, CloudEvent("t", "/s", {"a": 1}, datacontenttype="text/plain"))


# -- Event Grid schema -----------------------------------------------------------------

TOPIC = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.EventGrid/topics/orders"


def _grid(**changes: Any) -> dict[str, Any]:
    event = {
        "id": "e1",
        "topic": TOPIC,
        "subject": "orders/17",
        "eventType": "Contoso.Orders.Created",
        "eventTime": "2017-06-26T18:41:00.9584103Z",
        "data": {"order": 17},
        "dataVersion": "2.0",
        "metadataVersion": "1",
    }
    return {k: v for k, v in (event | changes).items() if v is not ...}


def test_eventgrid_maps_to_cloudevent_and_back() -> None:
    event = from_eventgrid(_grid(), topic=TOPIC)
    assert (event.id, event.source, event.type) == ("e1", TOPIC, "Contoso.Orders.Created")
    assert event.subject == "orders/17"
    assert event.time == datetime(2017, 6, 26, 18, 41, 0, 958410, tzinfo=UTC)
    assert event.data == {"order": 17}
    assert event.extensions == {"dataversion": "2.0"}
    assert to_eventgrid(event) == _grid()
    minimal = from_eventgrid(
        _grid(topic=..., data=..., dataVersion=..., metadataVersion=...), topic="orders"
    )
    assert minimal.source == "orders" and minimal.data is None and minimal.extensions == {}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": ...}, "id"),
        ({"subject": ...}, "subject"),
        ({"eventType": ...}, "eventType"),
        ({"eventTime": ...}, "eventTime"),
        ({"eventType": ""}, "eventType"),
        ({"eventTime": "26/06/2017"}, "eventTime"),
        ({"id": 7}, "id"),
        ({"topic": "/other/topic"}, "topic"),
        ({"metadataVersion": "2"}, "metadataVersion"),
        ({"dataVersion": 2}, "dataVersion"),
        ({"specversion": "1.0"}, "specversion"),
    ],
)
def test_eventgrid_errors_name_the_field(changes: dict[str, Any], field: str) -> None:
    _refused(field, from_eventgrid, _grid(**changes), topic=TOPIC)


def test_parse_eventgrid_array() -> None:
    body = json.dumps([_grid(), _grid(id="e2")]).encode()
    assert [e.id for e in parse_eventgrid(body, topic=TOPIC)] == ["e1", "e2"]
    bad = json.dumps([_grid(), _grid(eventType=...)]).encode()
    _refused("batch[1].eventType", parse_eventgrid, bad, topic=TOPIC)
    _refused("body", parse_eventgrid, json.dumps(_grid()).encode(), topic=TOPIC)
    _refused("batch[0]", parse_eventgrid, b"[1]", topic=TOPIC)


def test_to_eventgrid_refuses_what_it_cannot_carry() -> None:
    ok = {"subject": "s", "time": T}
    _refused("subject", to_eventgrid, CloudEvent("t", "/s", time=T))
    _refused("time", to_eventgrid, CloudEvent("t", "/s", subject="s"))
    _refused("data", to_eventgrid, CloudEvent("t", "/s", b"raw", **ok))
    _refused(
        "traceparent", to_eventgrid, CloudEvent("t", "/s", extensions={"traceparent": "x"}, **ok)
    )
    _refused("dataschema", to_eventgrid, CloudEvent("t", "/s", dataschema="https://x/s", **ok))
    _refused(
        "datacontenttype", to_eventgrid, CloudEvent("t", "/s", datacontenttype="text/csv", **ok)
    )
    event = CloudEvent("t", "/s", [1], **ok)
    assert from_eventgrid(to_eventgrid(event), topic="/s") == event
