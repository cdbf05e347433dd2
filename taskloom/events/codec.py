"""Checking and encoding events on their way into the log, decoding them on the way out.

Every refusal is an :class:`~taskloom.errors.InvalidEventError` (a ``ValueError``) that
names the stream, the event and the rule, raised before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from taskloom.converter import DataConverter
from taskloom.errors import InvalidEventError, SerializationError
from taskloom.events.records import ExpectedVersion, NewEvent, RecordedEvent, StreamState
from taskloom.storage.events_base import EventData, StoredEvent, StreamAppend

__all__ = ["MAX_ID", "MAX_TYPE", "check_stream_id", "decode", "encode_append"]

#: Longest stream id, event id and event type accepted (characters).
MAX_ID = 200
MAX_TYPE = 200


def check_stream_id(stream_id: object) -> str:
    if not isinstance(stream_id, str) or not stream_id:
        raise InvalidEventError(
            f"stream id {stream_id!r} is not a non-empty string: name the stream, e.g. 'request-42'"
        )
    if len(stream_id) > MAX_ID:
        raise InvalidEventError(
            f"stream id {stream_id[:40]!r}... is {len(stream_id)} characters long; "
            f"the limit is {MAX_ID}"
        )
    return stream_id


def _check_expected(stream_id: str, expected: object) -> ExpectedVersion:
    if isinstance(expected, StreamState):
        return expected
    if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
        return expected
    raise InvalidEventError(
        f"expected_version {expected!r} for stream {stream_id!r} is not a version: pass "
        "the version of the stream's last event (an int >= 0), tl.NO_STREAM, "
        "tl.STREAM_EXISTS or tl.ANY"
    )


def _metadata(stream_id: str, event: NewEvent) -> str | None:
    if event.metadata is None:
        return None
    if not isinstance(event.metadata, dict):
        raise InvalidEventError(
            f"metadata of event {event.type!r} for stream {stream_id!r} is a "
            f"{type(event.metadata).__name__}; it must be a JSON object (a dict)"
        )
    try:
        return json.dumps(event.metadata, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidEventError(
            f"metadata of event {event.type!r} for stream {stream_id!r} is not JSON: {exc}"
        ) from exc


def _event(stream_id: str, event: object, converter: DataConverter) -> EventData:
    if not isinstance(event, NewEvent):
        raise InvalidEventError(
            f"stream {stream_id!r} was given a {type(event).__name__}; append "
            "tl.NewEvent(type, data) objects"
        )
    if not isinstance(event.type, str) or not event.type.strip():
        raise InvalidEventError(
            f"an event for stream {stream_id!r} has type {event.type!r}: give every "
            "event a non-empty type, e.g. 'RequestDiscovered'"
        )
    if len(event.type) > MAX_TYPE:
        raise InvalidEventError(
            f"event type {event.type[:40]!r}... is {len(event.type)} characters; "
            f"the limit is {MAX_TYPE}"
        )
    if not isinstance(event.id, str) or not event.id or len(event.id) > MAX_ID:
        raise InvalidEventError(
            f"event {event.type!r} for stream {stream_id!r} has id {event.id!r}: an id "
            f"is a non-empty string of at most {MAX_ID} characters (leave it out for a UUID)"
        )
    try:
        data = converter.dumps(event.data, what=f"data of event {event.type!r}")
    except SerializationError as exc:
        raise InvalidEventError(f"stream {stream_id!r}: {exc}") from exc
    return EventData(event.id, event.type, data, _metadata(stream_id, event))


def encode_append(
    stream_id: object,
    events: Sequence[NewEvent],
    expected: object,
    converter: DataConverter,
) -> StreamAppend:
    """A checked :class:`StreamAppend` for the storage layer."""
    sid = check_stream_id(stream_id)
    if isinstance(events, NewEvent) or not isinstance(events, Sequence) or not events:
        raise InvalidEventError(
            f"append to stream {sid!r} was given {events!r}: pass a non-empty list of tl.NewEvent"
        )
    encoded = tuple(_event(sid, e, converter) for e in events)
    ids = [e.id for e in encoded]
    if len(set(ids)) != len(ids):
        raise InvalidEventError(
            f"append to stream {sid!r} repeats an event id within one call: "
            f"{sorted(i for i in set(ids) if ids.count(i) > 1)}"
        )
    return StreamAppend(sid, _check_expected(sid, expected), encoded)


def decode(stored: StoredEvent, converter: DataConverter) -> RecordedEvent:
    data: Any
    try:
        data = converter.loads(stored.data, what=f"data of event {stored.type!r}")
    except SerializationError:
        # A class this process cannot import: show the stored JSON rather than fail.
        data = json.loads(stored.data)
    return RecordedEvent(
        stream_id=stored.stream_id,
        version=stored.version,
        position=stored.position,
        id=stored.id,
        type=stored.type,
        data=data,
        metadata=json.loads(stored.metadata) if stored.metadata else {},
        recorded_at=stored.recorded_at,
    )
