"""Builders shared by the event log contract tests: events, appends and the log fixture."""

from __future__ import annotations

import json
from typing import Any

from taskloom.events.records import ExpectedVersion, StreamState
from taskloom.storage import Store
from taskloom.storage.events_base import EventData, EventLogStore, StoredEvent, StreamAppend


def event_log(store: Store) -> EventLogStore:
    """The store's event log (every backend implements it beside the core protocol)."""
    assert isinstance(store, EventLogStore), f"{type(store).__name__} has no event log"
    return store


def ev(event_id: str, type: str = "happened", data: Any = None, metadata: Any = None) -> EventData:
    """An event whose ``data`` (default ``{"id": event_id}``) is encoded here."""
    body = {"id": event_id} if data is None else data
    meta = None if metadata is None else json.dumps(metadata)
    return EventData(event_id, type, json.dumps(body), meta)


def app(
    stream_id: str, *event_ids: str, expected: ExpectedVersion = StreamState.ANY, type: str = "t"
) -> StreamAppend:
    """An append of events with the given ids (all of ``type``) to ``stream_id``."""
    return StreamAppend(stream_id, expected, tuple(ev(i, type) for i in event_ids))


def ids(events: list[StoredEvent]) -> list[str]:
    return [e.id for e in events]


def versions(events: list[StoredEvent]) -> list[int]:
    return [e.version for e in events]


def positions(events: list[StoredEvent]) -> list[int]:
    return [e.position for e in events]


def doc(text: str | None) -> Any:
    """A stored JSON document decoded (backends may re-encode the text)."""
    assert text is not None
    return json.loads(text)
