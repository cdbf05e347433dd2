"""The CloudEvents JSON format: one event (``application/cloudevents+json``) and batches
(``application/cloudevents-batch+json``); the binary HTTP mode and Event Grid's schema live
in :mod:`~taskloom.cloudevents.binary` and :mod:`~taskloom.cloudevents.eventgrid` and are
re-exported here.

Reading is strict: what CloudEvents 1.0 requires is checked, a missing ``id`` is refused,
never invented, and a batch with one bad event is refused whole. Writing gives back what
was read: ``to_json(from_json(obj)) == obj`` for every valid ``obj`` (the ``time`` text,
``null`` members and ``data_base64`` text included).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from taskloom.cloudevents import rules
from taskloom.cloudevents.binary import from_binary, to_binary
from taskloom.cloudevents.event import CloudEvent
from taskloom.cloudevents.eventgrid import from_eventgrid, parse_eventgrid, to_eventgrid
from taskloom.cloudevents.jsontext import Encode, at_index, dump, parse_json_body, to_json_value

__all__ = [
    "from_binary",
    "from_eventgrid",
    "from_json",
    "parse_batch",
    "parse_eventgrid",
    "parse_structured",
    "to_batch",
    "to_binary",
    "to_eventgrid",
    "to_json",
    "to_structured",
]

_OPTIONAL = ("datacontenttype", "dataschema", "subject", "time")


def to_json(event: CloudEvent, *, encode: Encode | None = None) -> dict[str, Any]:
    """The event as a JSON object of the structured format. Binary data goes into
    ``data_base64``; other data must be a JSON value, or ``encode`` turns each value that is
    not one into one (as ``json.dumps``'s ``default`` does)."""
    obj: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
    }
    for name in _OPTIONAL:
        value = event.time_text if name == "time" else getattr(event, name)
        if value is not None:
            obj[name] = value
        elif name in event.explicit_nulls:
            obj[name] = None
    extensions = event.extensions
    obj.update(extensions)
    for name in event.explicit_nulls:
        if name not in rules.RESERVED and name not in extensions:
            obj[name] = None
    data = event.data
    if isinstance(data, bytes):
        obj["data_base64"] = base64.b64encode(data).decode("ascii")
    elif data is not None:
        obj["data"] = to_json_value(data, encode, "data")
    elif "data" in event.explicit_nulls:
        obj["data"] = None
    return obj


def from_json(obj: object) -> CloudEvent:
    """A CloudEvent from a parsed JSON object of the structured format, checked strictly."""
    if not isinstance(obj, Mapping):
        rules.fail("event", f"must be a JSON object, not {rules.json_type(obj)}")
    nulls = [name for name, value in obj.items() if value is None]
    for name in ("specversion", "id", "source", "type"):
        if obj.get(name) is None:
            rules.fail(name, "is required and must be a non-empty string")
        rules.check_string(name, obj[name])
    for name in _OPTIONAL:
        if obj.get(name) is not None:
            rules.check_string(name, obj[name])
    if "data" in obj and "data_base64" in obj:
        rules.fail("data_base64", "must not be present together with data: use one or the other")
    data: Any = obj.get("data")
    if obj.get("data_base64") is not None:
        data = rules.decode_base64("data_base64", obj["data_base64"])
    extensions = {
        name: value
        for name, value in obj.items()
        if name not in rules.RESERVED and value is not None
    }
    for name in nulls:
        if name not in rules.RESERVED:
            rules.check_extension_name(name)
    return CloudEvent(
        obj["type"],
        obj["source"],
        data,
        id=obj["id"],
        specversion=obj["specversion"],
        subject=obj.get("subject"),
        time=obj.get("time"),
        datacontenttype=obj.get("datacontenttype"),
        dataschema=obj.get("dataschema"),
        extensions=extensions,
        _nulls=nulls,
    )


def parse_structured(body: bytes) -> CloudEvent:
    """An ``application/cloudevents+json`` body: one event."""
    return from_json(parse_json_body(body))


def to_structured(event: CloudEvent, *, encode: Encode | None = None) -> bytes:
    """The event as an ``application/cloudevents+json`` body."""
    return dump(to_json(event, encode=encode))


def parse_batch(body: bytes) -> list[CloudEvent]:
    """An ``application/cloudevents-batch+json`` body: a JSON array of events, all valid or
    refused whole (the error names the index, e.g. ``batch[3].id``)."""
    items = parse_json_body(body)
    if not isinstance(items, list):
        rules.fail("body", f"must be a JSON array of events, not {rules.json_type(items)}")
    return [at_index(i, from_json, item) for i, item in enumerate(items)]


def to_batch(events: Iterable[CloudEvent], *, encode: Encode | None = None) -> bytes:
    """The events as an ``application/cloudevents-batch+json`` body."""
    return dump([to_json(event, encode=encode) for event in events])
