"""CloudEvents topics over HTTP, under ``/api/topics/{topic}``.

``POST events`` publishes (permission ``publish``: roles ``publisher``, ``contributor``,
``admin``) in the CloudEvents HTTP binding's structured, batched and binary modes and in
Azure Event Grid's own schema; a body is read with a cap of 1 MiB (Event Grid's limit for
a post, and so for one event) and refused with 413 beyond it, 415 for a content type that
is none of these. A refused event or batch is a 400 naming the attribute and the rule,
and nothing of it is stored (a batch goes to ``client.publish`` as one list). Success is
Event Grid's 200, with a small JSON body (``published``, ``positions``).

Reading (``read``): ``GET events``, ``GET subscriptions``, ``GET deadletters``.
Managing webhooks, redrive and replay change what other services receive: ``admin``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from taskloom.client import AsyncClient
from taskloom.cloudevents.event import CloudEvent
from taskloom.cloudevents.formats import (
    from_binary,
    parse_batch,
    parse_eventgrid,
    parse_structured,
    to_json,
)
from taskloom.errors import ConfigurationError, InvalidCloudEventError, StoreError
from taskloom.http import auth
from taskloom.http.bodies import JSON, json_body
from taskloom.http.schemas import Error, errors
from taskloom.topics import webhook as webhook_module
from taskloom.topics.client_api import TopicSubscription
from taskloom.topics.specs import WebhookSpec

__all__ = ["MAX_BODY_BYTES", "router"]

#: The largest body ``POST events`` reads: Event Grid's 1 MB for a post (an array of
#: events in total) and so for any one event.
MAX_BODY_BYTES = 1024 * 1024

router = APIRouter(prefix="/api/topics", tags=["topics"])

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_TOPIC = Annotated[
    str, Path(min_length=1, max_length=100, pattern=_NAME_PATTERN, description="topic name")
]
_SUBSCRIPTION = Annotated[
    str,
    Path(min_length=1, max_length=100, pattern=_NAME_PATTERN, description="subscription name"),
]
_LIMIT = Annotated[int, Query(ge=1, le=1000)]

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"

publish_right = Depends(auth.authorize("publish"))


# -- shapes (for the OpenAPI document) -----------------------------------------------------


class CloudEventError(BaseModel):
    detail: str = Field(description="What was refused and what to do about it.")
    attribute: str | None = Field(
        default=None,
        description="The attribute (or body member) that breaks a rule; absent on other 400s "
        "(a bad topic name).",
    )
    rule: str | None = Field(default=None, description="The rule it breaks.")


class Published(BaseModel):
    published: int = Field(description="How many events the request carried.")
    positions: list[int] = Field(
        description="The log position of each (a repeat of source + id keeps its first)."
    )


class TopicEvent(BaseModel):
    position: int
    publishedAt: str
    event: dict[str, Any] = Field(description="The event in the CloudEvents JSON format.")


class SubscriptionInfo(BaseModel):
    name: str
    topic: str
    kind: str = Field(description="webhook, or trigger (an @app.event_trigger)")
    spec: dict[str, Any] = Field(description="Filter, retry policy, endpoint; never the secret.")
    position: int
    lag: int = Field(description="Events of the topic not fanned out yet (at most 1000).")
    pending: int = Field(description="Deliveries waiting, retries included.")
    deadLetters: int
    nextDue: str | None = None


class SubscriptionPut(BaseModel):
    name: str
    topic: str
    created: bool
    validated: bool = Field(description="Whether the endpoint passed the validation handshake.")
    spec: dict[str, Any]


class DeadLetterInfo(BaseModel):
    event: dict[str, Any] | None
    subscription: str
    topic: str
    position: int
    deadLetterReason: str
    deliveryAttempts: int
    lastDeliveryOutcome: str
    publishTime: str
    lastDeliveryAttemptTime: str
    deadLetteredTime: str


class RedriveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subscription: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=_NAME_PATTERN
    )
    ids: list[str] | None = Field(
        default=None, description="CloudEvent ids to redrive (default: all)"
    )


class Redriven(BaseModel):
    redriven: int


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subscription: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=_NAME_PATTERN
    )
    after: int | None = Field(default=None, ge=0, description="A log position (default 0).")
    since: str | None = Field(
        default=None, description="RFC 3339 time: from the first event published then or later."
    )


class Replayed(BaseModel):
    subscriptions: int = Field(description="How many subscriptions were moved back.")


class Deleted(BaseModel):
    deleted: bool


def _client(request: Request) -> AsyncClient:
    found: AsyncClient = request.app.state.taskloom_client
    return found


def _refused(exc: InvalidCloudEventError) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc), "attribute": exc.attribute, "rule": exc.rule}, status_code=400
    )


def _time(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise HTTPException(
            400,
            f"{what} {text!r} is not an RFC 3339 time with an offset, e.g. 2024-05-01T12:00:00Z",
        )
    return moment


# -- publishing ----------------------------------------------------------------------------


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit``: by its
    Content-Length before reading, or while reading a chunked one."""
    too_big = (
        f"the body exceeds {limit} bytes (1 MiB), the limit for one post and one event "
        "(as Event Grid's); send fewer events per request"
    )
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise HTTPException(400, f"Content-Length {length!r} is not a number of bytes")
        if int(length) > limit:
            raise HTTPException(413, too_big)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_big)
        chunks.append(chunk)
    return b"".join(chunks)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _parse(request: Request, topic: str, body: bytes) -> list[CloudEvent]:
    media = _media_type(request)
    has_ce = any(name.lower().startswith("ce-") for name in request.headers)
    if media == STRUCTURED:
        return [parse_structured(body)]
    if media == BATCH:
        return parse_batch(body)
    if media.startswith("application/cloudevents"):
        raise HTTPException(
            415,
            f"Content-Type {media!r} is not supported: use {STRUCTURED} (one event), "
            f"{BATCH} (a JSON array) or binary mode (ce-* headers)",
        )
    if has_ce:
        return [from_binary(request.headers, body)]
    aeg = request.headers.get("aeg-event-type")
    if aeg is not None and aeg.strip().lower() != "notification":
        raise HTTPException(
            400, f"aeg-event-type {aeg!r}: only Notification events are published here"
        )
    if aeg is not None or media == "application/json":
        return parse_eventgrid(body, topic=topic)
    shown = repr(media) if media else "none"
    raise HTTPException(
        415,
        f"Content-Type {shown} with no ce-* headers is not a CloudEvents request: send "
        f"{STRUCTURED}, {BATCH}, binary mode (ce-specversion, ce-id, ce-source, ce-type "
        "headers), or application/json with an array of Event Grid events",
    )


_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1},
        "type": {"type": "string", "minLength": 1},
        "subject": {"type": ["string", "null"], "minLength": 1},
        "time": {"type": ["string", "null"], "format": "date-time"},
        "datacontenttype": {"type": ["string", "null"]},
        "dataschema": {"type": ["string", "null"], "format": "uri"},
        "data": {},
        "data_base64": {"type": ["string", "null"], "format": "byte"},
    },
}
_EVENTGRID_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["id", "subject", "eventType", "eventTime"],
        "properties": {
            "id": {"type": "string", "minLength": 1},
            "topic": {"type": ["string", "null"]},
            "subject": {"type": "string", "minLength": 1},
            "eventType": {"type": "string", "minLength": 1},
            "eventTime": {"type": "string", "format": "date-time"},
            "data": {},
            "dataVersion": {"type": ["string", "null"]},
            "metadataVersion": {"type": ["string", "null"], "enum": ["1", None]},
        },
    },
}


@router.post(
    "/{topic}/events",
    response_model=Published,
    summary="Publish CloudEvents (structured, batch, binary) or Event Grid events",
    responses={
        400: {
            "model": CloudEventError,
            "description": "An event breaks a CloudEvents (or Event Grid schema) rule; "
            "nothing of the request was stored. A bad topic name is a plain 400 too.",
        },
        **errors(401, 403),
        413: {"model": Error, "description": "The body exceeds 1 MiB (Event Grid's limit)."},
        415: {"model": Error, "description": "Not a CloudEvents or Event Grid request."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "One event (structured mode), a JSON array of events (batch "
            "mode), the data of one event with ce-* headers (binary mode), or Event Grid's "
            "schema: a JSON array of Event Grid events as application/json. At most 1 MiB.",
            "content": {
                STRUCTURED: {"schema": _EVENT_SCHEMA},
                BATCH: {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
                "application/json": {"schema": _EVENTGRID_SCHEMA},
            },
        }
    },
)
async def publish_events(request: Request, topic: _TOPIC, _: Any = publish_right) -> Response:
    """Topics need no creating: the first event published makes one. An event whose
    ``source`` and ``id`` the topic already holds is accepted and not delivered again."""
    body = await _read_capped(request, MAX_BODY_BYTES)
    try:
        events = _parse(request, topic, body)
        if not events:
            raise InvalidCloudEventError("body", "must hold at least one event")
    except InvalidCloudEventError as exc:
        return _refused(exc)
    positions = await _client(request).publish(topic, events)
    return JSON({"published": len(events), "positions": positions})


# -- reading -------------------------------------------------------------------------------


@router.get(
    "/{topic}/events",
    response_model=list[TopicEvent],
    summary="Read a topic's events from a position or a time",
    responses=errors(400, 401, 403),
)
async def read_events(
    request: Request,
    topic: _TOPIC,
    after: Annotated[int, Query(ge=0, description="Events after this log position.")] = 0,
    since: Annotated[
        str | None,
        Query(description="Events published at or after this RFC 3339 time."),
    ] = None,
    limit: _LIMIT = 100,
    _: Any = auth.read,
) -> Response:
    """Oldest first; page on with ``after`` = the last ``position`` seen."""
    moment = None if since is None else _time(since, "since")
    found = await _client(request).read_topic(topic, after=after, since=moment, limit=limit)
    return JSON(
        [
            {
                "position": p.position,
                "publishedAt": p.published_at.isoformat(),
                "event": to_json(p.event),
            }
            for p in found
        ]
    )


def _subscription_json(s: TopicSubscription) -> dict[str, Any]:
    spec = dict(s.spec)
    spec.pop("secret", None)
    return {
        "name": s.name,
        "topic": s.topic,
        "kind": s.kind,
        "spec": spec,
        "position": s.position,
        "lag": s.lag,
        "pending": s.pending,
        "deadLetters": s.dead_letters,
        "nextDue": s.next_due.isoformat() if s.next_due else None,
    }


@router.get(
    "/{topic}/subscriptions",
    response_model=list[SubscriptionInfo],
    summary="A topic's subscriptions with lag, pending deliveries and dead letters",
    responses=errors(400, 401, 403),
)
async def list_subscriptions(request: Request, topic: _TOPIC, _: Any = auth.read) -> Response:
    """Webhooks and the app's event triggers; a webhook's secret is never shown."""
    found = await _client(request).subscriptions(topic)
    return JSON([_subscription_json(s) for s in found])


async def _known_subscription(client: AsyncClient, topic: str, name: str) -> TopicSubscription:
    for s in await client.subscriptions(topic):
        if s.name == name:
            return s
    raise HTTPException(
        404,
        f"topic {topic!r} has no subscription {name!r}; GET /api/topics/{topic}/subscriptions "
        "lists them",
    )


# -- managing ------------------------------------------------------------------------------

_WEBHOOK_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["endpoint"],
    "additionalProperties": False,
    "properties": {
        "endpoint": {"type": "string", "format": "uri", "description": "http(s) URL"},
        "filter": {"type": "object", "description": "Event Grid's subscription filter"},
        "retryPolicy": {
            "type": "object",
            "properties": {
                "maxDeliveryAttempts": {"type": "integer", "minimum": 1, "maximum": 30},
                "eventTimeToLiveInMinutes": {"type": "integer", "minimum": 1, "maximum": 1440},
            },
        },
        "deliverySchema": {"type": "string", "enum": ["cloudevents", "eventgrid"]},
        "maxEventsPerBatch": {"type": "integer", "minimum": 1, "maximum": 5000},
        "secret": {"type": "string", "minLength": 1, "description": "signs deliveries"},
        "timeoutInSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
    },
}


async def _subscribe(
    client: AsyncClient,
    topic: str,
    name: str,
    spec: WebhookSpec,
    after: int | None,
    validate: bool,
) -> bool:
    """Through ``taskloom.topics.webhook.subscribe_webhook`` (the validation handshake
    first) when there is one, else straight through the client."""
    subscribe = getattr(webhook_module, "subscribe_webhook", None)
    if subscribe is None:
        return await client.subscribe(topic, name, spec, after=after)
    try:
        created = await subscribe(client, topic, name, spec, after=after, validate=validate)
    except (ValueError, StoreError, ConfigurationError, HTTPException):
        raise  # a refused handshake is an InvalidEventError naming why: a 400
    except Exception as exc:
        raise HTTPException(
            400,
            f"the endpoint {spec.endpoint!r} did not pass the validation handshake: {exc}; "
            "make it answer the CloudEvents webhook handshake (OPTIONS with "
            "WebHook-Allowed-Origin) or Event Grid's validation event",
        ) from None
    return bool(created)


@router.put(
    "/{topic}/subscriptions/{name}",
    response_model=SubscriptionPut,
    status_code=201,
    summary="Create or change a webhook subscription (after the validation handshake)",
    responses={
        200: {"model": SubscriptionPut, "description": "The subscription was changed."},
        **errors(400, 401, 403, 409),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _WEBHOOK_BODY}},
        }
    },
)
async def put_subscription(
    request: Request,
    topic: _TOPIC,
    name: _SUBSCRIPTION,
    after: Annotated[
        int | None,
        Query(ge=0, description="Deliver from after this log position (default: from now)."),
    ] = None,
    validate: Annotated[
        bool, Query(description="Run the endpoint validation handshake first.")
    ] = True,
    _: Any = auth.admin,
) -> Response:
    """A webhook receives the topic's events that pass its filter, retried on Event
    Grid's schedule and dead-lettered at the end; ``secret`` signs each delivery."""
    raw = await json_body(request)
    if raw is None:
        raise HTTPException(400, 'send the subscription as JSON: {"endpoint": "https://..."}')
    try:
        spec = WebhookSpec.from_json(raw)
    except (TypeError, AttributeError, KeyError) as exc:
        raise HTTPException(400, f"the webhook subscription is malformed: {exc}") from None
    client = _client(request)
    for existing in await client.subscriptions():
        if existing.name == name and (existing.topic != topic or existing.kind != "webhook"):
            raise HTTPException(
                409,
                f"subscription {name!r} already exists as a {existing.kind} of topic "
                f"{existing.topic!r}; choose another name",
            )
    created = await _subscribe(client, topic, name, spec, after, validate)
    validated = validate and hasattr(webhook_module, "subscribe_webhook")
    body = {
        "name": name,
        "topic": topic,
        "created": created,
        "validated": validated,
        "spec": spec.to_json(with_secret=False),
    }
    return JSON(body, status_code=201 if created else 200)


@router.delete(
    "/{topic}/subscriptions/{name}",
    response_model=Deleted,
    summary="Delete a webhook subscription with its pending deliveries and dead letters",
    responses=errors(400, 401, 403, 404, 409),
)
async def delete_subscription(
    request: Request, topic: _TOPIC, name: _SUBSCRIPTION, _: Any = auth.admin
) -> Response:
    client = _client(request)
    found = await _known_subscription(client, topic, name)
    if found.kind != "webhook":
        raise HTTPException(
            409, f"{name!r} is an event trigger of the app; remove it from the code instead"
        )
    return JSON({"deleted": await client.unsubscribe(name)})


@router.get(
    "/{topic}/deadletters",
    response_model=list[DeadLetterInfo],
    summary="The events a topic's subscriptions gave up on, with Event Grid's fields",
    responses=errors(400, 401, 403),
)
async def list_dead_letters(
    request: Request,
    topic: _TOPIC,
    subscription: Annotated[
        str | None, Query(min_length=1, max_length=100, pattern=_NAME_PATTERN)
    ] = None,
    limit: _LIMIT = 1000,
    _: Any = auth.read,
) -> Response:
    found = await _client(request).dead_letters(topic, subscription=subscription, limit=limit)
    return JSON([d.to_json() for d in found])


@router.post(
    "/{topic}/deadletters/redrive",
    response_model=Redriven,
    summary="Deliver dead letters again, from a first attempt",
    responses=errors(400, 401, 403, 404),
)
async def redrive(
    request: Request, topic: _TOPIC, body: RedriveRequest | None = None, _: Any = auth.admin
) -> Response:
    """All of the topic's dead letters, or one subscription's, or those whose CloudEvent
    ``id`` is in ``ids``."""
    body = body or RedriveRequest()
    client = _client(request)
    if body.subscription is not None:
        await _known_subscription(client, topic, body.subscription)
    count = await client.redrive(topic, subscription=body.subscription, ids=body.ids)
    return JSON({"redriven": count})


@router.post(
    "/{topic}/replay",
    response_model=Replayed,
    summary="Deliver a topic's events again from a position or a time",
    responses=errors(400, 401, 403, 404),
)
async def replay(
    request: Request, topic: _TOPIC, body: ReplayRequest | None = None, _: Any = auth.admin
) -> Response:
    """To one subscription or to all of the topic's; events already waiting for
    delivery are not doubled."""
    body = body or ReplayRequest()
    if body.after is not None and body.since is not None:
        raise HTTPException(400, "give after (a position) or since (a time), not both")
    moment = None if body.since is None else _time(body.since, "since")
    client = _client(request)
    if body.subscription is not None:
        await _known_subscription(client, topic, body.subscription)
    count = await client.replay_topic(
        topic, subscription=body.subscription, after=body.after or 0, since=moment
    )
    return JSON({"subscriptions": count})
