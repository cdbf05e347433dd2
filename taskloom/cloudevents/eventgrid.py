"""Azure Event Grid's own event schema, mapped to and from CloudEvents.

=================  ====================================================================
Event Grid field   CloudEvent
=================  ====================================================================
``id``             ``id`` (required)
``topic``          ``source``; optional, but when given it must equal the ``topic`` the
                   events were posted to (Event Grid refuses a mismatch too)
``subject``        ``subject`` (required)
``eventType``      ``type`` (required)
``eventTime``      ``time`` (required, RFC 3339, its text kept)
``data``           ``data`` (JSON)
``dataVersion``    the extension ``dataversion`` (when given)
``metadataVersion``  checked: ``"1"`` when given; written as ``"1"``
=================  ====================================================================

Errors name the Event Grid field (``eventType``, ``batch[2].eventTime``). A field outside
the schema is refused, as a CloudEvents attribute with no Event Grid field is when writing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskloom.cloudevents import rules
from taskloom.cloudevents.event import CloudEvent
from taskloom.cloudevents.jsontext import Encode, at_index, parse_json_body, to_json_value
from taskloom.errors import InvalidCloudEventError

_FIELDS = ("id", "topic", "subject", "eventType", "eventTime", "data", "dataVersion")
_KNOWN = frozenset((*_FIELDS, "metadataVersion"))
# CloudEvent attribute -> the Event Grid field an error names.
_FIELD_OF = {"type": "eventType", "time": "eventTime", "source": "topic"}
_FIELD_OF["dataversion"] = "dataVersion"


def from_eventgrid(obj: object, *, topic: str) -> CloudEvent:
    """A CloudEvent from one Event Grid schema event posted to ``topic``."""
    if not isinstance(obj, Mapping):
        rules.fail("event", f"must be a JSON object, not {rules.json_type(obj)}")
    for field in obj:
        if field not in _KNOWN:
            rules.fail(
                str(field),
                "is not a field of the Event Grid event schema (id, topic, subject, "
                "eventType, eventTime, data, dataVersion, metadataVersion)",
            )
    for field in ("id", "subject", "eventType", "eventTime"):
        if obj.get(field) is None:
            rules.fail(field, "is required by the Event Grid event schema (a non-empty string)")
        rules.check_string(field, obj[field])
    if obj.get("topic") is not None and obj["topic"] != topic:
        rules.fail(
            "topic",
            f"is {obj['topic']!r} but the events were posted to {topic!r}: "
            "leave topic out or give the topic's own name",
        )
    metadata = obj.get("metadataVersion")
    if metadata is not None and metadata != "1":
        rules.fail(
            "metadataVersion", f"must be '1' (the only Event Grid version), not {metadata!r}"
        )
    extensions: dict[str, Any] = {}
    if obj.get("dataVersion") is not None:
        extensions["dataversion"] = rules.check_string(
            "dataVersion", obj["dataVersion"], non_empty=False
        )
    try:
        return CloudEvent(
            obj["eventType"],
            topic,
            obj.get("data"),
            id=obj["id"],
            subject=obj["subject"],
            time=obj["eventTime"],
            extensions=extensions,
        )
    except InvalidCloudEventError as exc:
        raise InvalidCloudEventError(
            _FIELD_OF.get(exc.attribute, exc.attribute), exc.rule
        ) from None


def parse_eventgrid(body: bytes, *, topic: str) -> list[CloudEvent]:
    """An Event Grid post: a JSON array of Event Grid schema events, all valid or refused
    whole (the error names the index, e.g. ``batch[1].eventType``)."""
    items = parse_json_body(body)
    if not isinstance(items, list):
        rules.fail(
            "body", f"must be a JSON array of Event Grid events, not {rules.json_type(items)}"
        )
    return [
        at_index(i, lambda item: from_eventgrid(item, topic=topic), x) for i, x in enumerate(items)
    ]


def to_eventgrid(event: CloudEvent, *, encode: Encode | None = None) -> dict[str, Any]:
    """The event in the Event Grid schema. It needs ``subject`` and ``time``; JSON data
    only; the only extension it can carry is ``dataversion``. Anything else raises rather
    than being dropped."""
    if event.subject is None:
        rules.fail("subject", "is required by the Event Grid event schema: set subject")
    if event.time_text is None:
        rules.fail("time", "is required by the Event Grid event schema (eventTime): set time")
    if event.dataschema is not None:
        rules.fail("dataschema", "has no field in the Event Grid event schema: leave it unset")
    if not rules.is_json_media_type(event.datacontenttype):
        rules.fail(
            "datacontenttype",
            f"is {event.datacontenttype!r}, but Event Grid schema data is JSON",
        )
    if isinstance(event.data, bytes):
        rules.fail("data", "is bytes, but Event Grid schema data is JSON: send a JSON value")
    extensions = event.extensions
    for name in extensions:
        if name != "dataversion":
            rules.fail(name, "is an extension the Event Grid event schema cannot carry")
    obj: dict[str, Any] = {
        "id": event.id,
        "topic": event.source,
        "subject": event.subject,
        "eventType": event.type,
        "eventTime": event.time_text,
        "data": to_json_value(event.data, encode, "data"),
        "metadataVersion": "1",
    }
    if "dataversion" in extensions:
        obj["dataVersion"] = str(extensions["dataversion"])
    return obj
