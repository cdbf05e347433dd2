"""Topics on the client: publishing CloudEvents into the hub's log, reading a topic
again, dead letters and redrive.

A topic's events are the stream ``$topic-<name>`` of the log. Each CloudEvent is stored
as one log event whose ``id`` is a UUID derived from the CloudEvent's ``source`` and
``id``, so publishing the same event again is an idempotent re-append: accepted, not
stored twice, not delivered again. The log event's ``type`` is the CloudEvent's type
and its ``data`` the event in the CloudEvents JSON format, exactly as it arrived.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from taskloom.cloudevents.event import CloudEvent
from taskloom.cloudevents.formats import from_json, to_json
from taskloom.errors import InvalidEventError, SerializationError
from taskloom.events.records import ANY, NewEvent
from taskloom.events.store import AsyncEventStore
from taskloom.storage.events_base import StoredEvent
from taskloom.storage.topics_base import DeadLetterRecord, TopicStore, topic_stream

__all__ = [
    "DeadLetter",
    "PublishedEvent",
    "check_name",
    "check_topic",
    "decode_event",
    "publish",
    "read_topic",
    "stored_id",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# The namespace of the log ids of published CloudEvents (a fixed, random UUID).
_NAMESPACE = uuid.UUID("0f5cf1a4-1c2e-4d53-9a57-6a1d3c8e2b71")


def check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidEventError(
            f"{what} name {name!r} is not valid: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_topic(topic: object) -> str:
    return check_name("topic", topic)


def stored_id(event: CloudEvent) -> str:
    """The log id of a published event: the same for the same ``source`` and ``id``."""
    return str(uuid.uuid5(_NAMESPACE, f"{event.source}\n{event.id}"))


def _plain(value: Any) -> Any:
    """Data values of code-made events that are not JSON, as JSON (``encode=``)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    raise SerializationError(
        f"CloudEvent data holds a {type(value).__name__}, which has no JSON form: use JSON "
        "values, dataclasses, pydantic models, datetimes, UUIDs, Decimals, enums or bytes"
    )


def _to_new_event(event: CloudEvent) -> NewEvent:
    if not isinstance(event, CloudEvent):
        raise InvalidEventError(
            f"publish takes tl.CloudEvent objects, not {type(event).__name__}: "
            "wrap the payload, e.g. tl.CloudEvent('order.placed', '/shop', data)"
        )
    body = to_json(event, encode=_plain)
    trace = event.extensions.get("traceparent")
    metadata = {"traceparent": trace} if isinstance(trace, str) else None
    return NewEvent(event.type, body, id=stored_id(event), metadata=metadata)


async def publish(
    events: AsyncEventStore, topic: str, batch: CloudEvent | Sequence[CloudEvent]
) -> list[int]:
    """Publish ``batch`` to ``topic`` in one transaction; the log position of each event
    (a repeat gets its first publication's). Buffered stores (handlers with effects)
    return ``[]``: the events are written with the handler's acknowledgement."""
    name = check_topic(topic)
    items = [batch] if isinstance(batch, CloudEvent) else list(batch)
    if not items:
        raise InvalidEventError("publish was given no events: pass a tl.CloudEvent or a list")
    stream = topic_stream(name)
    writes = [(stream, [_to_new_event(e)], ANY) for e in items]
    return [r.position for r in await events.append_many(writes)]


def decode_event(stored: StoredEvent) -> CloudEvent:
    """The CloudEvent a topic's log event holds."""
    return from_json(json.loads(stored.data))


@dataclass(frozen=True)
class PublishedEvent:
    """An event of a topic as the log holds it: its position and when it was stored."""

    position: int
    published_at: datetime
    event: CloudEvent


@dataclass(frozen=True)
class DeadLetter:
    """An event a subscription gave up on, with Event Grid's dead-letter fields."""

    event: CloudEvent | None
    subscription: str
    topic: str
    position: int
    reason: str
    delivery_attempts: int
    last_delivery_outcome: str
    published_at: datetime
    last_attempt_at: datetime
    dead_lettered_at: datetime

    @classmethod
    def of(cls, record: DeadLetterRecord) -> DeadLetter:
        return cls(
            None if record.event is None else decode_event(record.event),
            record.subscription,
            record.topic,
            record.position,
            record.reason,
            record.delivery_attempts,
            record.last_delivery_outcome,
            record.published_at,
            record.last_attempt_at,
            record.dead_lettered_at,
        )

    def to_json(self) -> dict[str, Any]:
        """Event Grid's dead-letter shape: the event with the delivery's fields."""
        return {
            "event": None if self.event is None else to_json(self.event),
            "subscription": self.subscription,
            "topic": self.topic,
            "position": self.position,
            "deadLetterReason": self.reason,
            "deliveryAttempts": self.delivery_attempts,
            "lastDeliveryOutcome": self.last_delivery_outcome,
            "publishTime": self.published_at.isoformat(),
            "lastDeliveryAttemptTime": self.last_attempt_at.isoformat(),
            "deadLetteredTime": self.dead_lettered_at.isoformat(),
        }


async def read_topic(
    events: AsyncEventStore,
    topics: TopicStore,
    topic: str,
    *,
    after: int = 0,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[PublishedEvent]:
    """Up to ``limit`` events of ``topic`` after position ``after`` (or published at or
    after ``since``), oldest first."""
    stream = topic_stream(check_topic(topic))
    if not isinstance(limit, int) or limit < 1:
        raise InvalidEventError(f"limit {limit!r} must be an int >= 1")
    if since is not None:
        if since.tzinfo is None:
            raise InvalidEventError("since must be an aware datetime (e.g. in UTC)")
        after = max(after, await topics.position_at(stream, since))
    log = await events._ready()
    rows = await log.read_log(after, limit, stream=stream)
    return [PublishedEvent(r.position, r.recorded_at, decode_event(r)) for r in rows]
