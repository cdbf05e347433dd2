"""Webhook deliveries over HTTP, the subscription-time validation handshake and signed
requests.

:class:`HttpSender` posts a batch of events to a webhook subscription's endpoint and says
how it went (an :class:`~taskloom.topics.policy.Outcome`; the topic runner retries or
dead-letters by it):

- ``deliverySchema: cloudevents`` with ``maxEventsPerBatch`` 1: one event per request in
  the structured mode (``Content-Type: application/cloudevents+json``); with
  ``maxEventsPerBatch`` > 1 every request is a batch
  (``application/cloudevents-batch+json``, a JSON array, even when it holds one event);
- ``deliverySchema: eventgrid``: always a JSON array of Event Grid events
  (``application/json``).

Every request carries Event Grid's ``aeg-event-type: Notification``,
``aeg-subscription-name``, ``aeg-delivery-count`` (the attempts made before this one: 0
on the first), ``aeg-metadata-version: 1``, a ``User-Agent`` and, for the CloudEvents
schema, the ``Origin`` the CloudEvents webhook specification asks for. With a
``secret`` every request is signed (see :func:`sign` and :func:`verify_signature`)::

    X-Taskloom-Timestamp: 1717171717
    X-Taskloom-Signature: sha256=<hex HMAC-SHA256 of b"1717171717." + body, keyed by the secret>

A response of 200-204 is a success; 400 and 413 dead-letter at once; anything else
(timeouts and unreachable endpoints included) is retried on Event Grid's schedule, no
sooner than a ``Retry-After`` the receiver sent with a 429 or 503. Redirects are not
followed (the CloudEvents webhook specification forbids it): a 3xx is a failure.

:func:`subscribe_webhook` checks that the endpoint agrees to receive events before it
stores the subscription: the CloudEvents abuse-protection handshake (``OPTIONS`` with
``WebHook-Request-Origin``) or Event Grid's ``SubscriptionValidationEvent``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import httpx

from taskloom._version import __version__
from taskloom.cloudevents.event import CloudEvent
from taskloom.cloudevents.formats import to_batch, to_eventgrid, to_structured
from taskloom.cloudevents.jsontext import dump
from taskloom.errors import InvalidEventError
from taskloom.topics.policy import Outcome, OutcomeKind, classify_status
from taskloom.topics.specs import WebhookSpec

if TYPE_CHECKING:
    from taskloom.client import AsyncClient

__all__ = [
    "DEFAULT_ORIGIN",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "USER_AGENT",
    "HttpSender",
    "sign",
    "subscribe_webhook",
    "verify_signature",
]

log = logging.getLogger("taskloom.topics.webhook")

#: The ``WebHook-Request-Origin`` (and ``Origin``) taskloom sends: one name for the
#: whole sending system, not a host, as the CloudEvents webhook specification asks.
DEFAULT_ORIGIN = "taskloom"
USER_AGENT = f"taskloom/{__version__} (webhook)"
TIMESTAMP_HEADER = "X-Taskloom-Timestamp"
SIGNATURE_HEADER = "X-Taskloom-Signature"
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"

CLOUDEVENTS_JSON = "application/cloudevents+json; charset=utf-8"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json; charset=utf-8"
EVENTGRID_JSON = "application/json; charset=utf-8"


# -- signing ------------------------------------------------------------------------------


def _mac(secret: str, timestamp: str, body: bytes) -> str:
    signed = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The signature headers for a request ``body``: ``X-Taskloom-Timestamp`` (Unix
    seconds) and ``X-Taskloom-Signature: sha256=<hex>``, the HMAC-SHA256 of
    ``b"<timestamp>." + body`` keyed by ``secret`` (UTF-8)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"sha256={_mac(secret, ts, body)}"}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """For receivers: True if ``body`` (the raw request body, as received) was signed
    with ``secret`` no more than ``tolerance`` seconds from ``now`` (Unix time; the
    system clock if not given). ``headers`` is any mapping of the request's headers
    (names in any case; for :mod:`http.server` pass ``dict(self.headers)``). The
    signature header may list several ``sha256=`` values separated by commas (a sender
    rotating its secret); one that matches is enough. Comparisons take constant time."""
    ts = _header(headers, TIMESTAMP_HEADER)
    given = _header(headers, SIGNATURE_HEADER)
    if ts is None or given is None or not ts.strip().isdigit():
        return False
    ts = ts.strip()
    current = time.time() if now is None else now
    if abs(current - int(ts)) > tolerance:
        return False
    expected = _mac(secret, ts, body)
    ok = False
    for part in given.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == "sha256" and hmac.compare_digest(value.strip(), expected):
            ok = True
    return ok


# -- delivery -----------------------------------------------------------------------------


def _body(spec: WebhookSpec, events: Sequence[CloudEvent]) -> tuple[bytes, str]:
    if spec.delivery_schema == "eventgrid":
        return dump([to_eventgrid(e) for e in events]), EVENTGRID_JSON
    if spec.max_events_per_batch > 1:
        return to_batch(events), CLOUDEVENTS_BATCH
    if len(events) != 1:
        raise ValueError(f"a structured-mode delivery takes one event, not {len(events)}")
    return to_structured(events[0]), CLOUDEVENTS_JSON


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(timedelta(0), when - datetime.now(UTC))
    return None


def _outcome(response: httpx.Response) -> Outcome:
    outcome = classify_status(response.status_code)
    if outcome.kind is OutcomeKind.RETRY and response.status_code in (429, 503):
        wait = _retry_after(response)
        if wait is not None and wait > outcome.min_delay:
            outcome = dataclasses.replace(outcome, min_delay=min(wait, timedelta(hours=12)))
    return outcome


class HttpSender:
    """Posts events to webhooks over one :class:`httpx.AsyncClient` (made on first use,
    closed by :meth:`aclose`). ``origin`` is sent as ``Origin`` with CloudEvents-schema
    deliveries (the name the handshake asked permission for)."""

    def __init__(
        self, *, client: httpx.AsyncClient | None = None, origin: str = DEFAULT_ORIGIN
    ) -> None:
        self._client = client
        self.origin = origin

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False, headers={"User-Agent": USER_AGENT}
            )
        return self._client

    def headers(
        self, spec: WebhookSpec, subscription: str, body: bytes, content_type: str, attempt: int
    ) -> dict[str, str]:
        headers = {
            "Content-Type": content_type,
            "User-Agent": USER_AGENT,
            "aeg-event-type": "Notification",
            "aeg-subscription-name": subscription,
            "aeg-delivery-count": str(max(0, attempt - 1)),
            "aeg-metadata-version": "1",
        }
        if spec.delivery_schema == "cloudevents":
            headers["Origin"] = self.origin
        if spec.secret is not None:
            headers.update(sign(spec.secret, body))
        return headers

    async def send(
        self,
        spec: WebhookSpec,
        subscription: str,
        topic: str,
        events: Sequence[CloudEvent],
        *,
        attempt: int = 1,
    ) -> Outcome:
        """POST ``events`` (at most ``spec.max_events_per_batch``) to ``spec.endpoint``;
        ``attempt`` is this delivery's attempt number (1 for the first). An event the
        Event Grid schema cannot carry (no ``subject``, binary data, ...) dead-letters
        the request's events at once, with the reason in the outcome."""
        try:
            body, content_type = _body(spec, events)
        except ValueError as exc:
            label = f"NotDeliverable: {exc}"[:1000]
            log.error("webhook %s of topic %r: %s", subscription, topic, label)
            return Outcome(OutcomeKind.DEAD_LETTER, label)
        headers = self.headers(spec, subscription, body, content_type, attempt)
        try:
            async with asyncio.timeout(spec.timeout):
                response = await self._http().post(
                    spec.endpoint, content=body, headers=headers, timeout=spec.timeout
                )
        except (TimeoutError, httpx.TimeoutException):
            return Outcome.timeout()
        except httpx.TransportError as exc:
            log.info("webhook %s: %s unreachable: %s", subscription, spec.endpoint, exc)
            return Outcome.connection_error()
        return _outcome(response)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


# -- the validation handshake -------------------------------------------------------------


def _refused(endpoint: str, answered: str, must: str) -> InvalidEventError:
    return InvalidEventError(
        f"webhook endpoint {endpoint} refused the validation handshake: it answered "
        f"{answered}; it must answer {must} (or subscribe with validation off)"
    )


def _status_text(response: httpx.Response) -> str:
    return f"{response.status_code} {response.reason_phrase}".strip()


async def _request(
    http: httpx.AsyncClient,
    method: str,
    spec: WebhookSpec,
    headers: dict[str, str],
    body: bytes,
    must: str,
) -> httpx.Response:
    if spec.secret is not None:
        headers.update(sign(spec.secret, body))
    try:
        async with asyncio.timeout(spec.timeout):
            return await http.request(
                method, spec.endpoint, content=body or None, headers=headers, timeout=spec.timeout
            )
    except (TimeoutError, httpx.TimeoutException):
        answered = f"nothing within {spec.timeout:g} s (to the {method} request)"
        raise _refused(spec.endpoint, answered, must) from None
    except httpx.TransportError as exc:
        answered = f"nothing: it could not be reached ({type(exc).__name__}: {exc})"
        raise _refused(spec.endpoint, answered, must) from None


async def _cloudevents_handshake(http: httpx.AsyncClient, spec: WebhookSpec, origin: str) -> None:
    must = (
        f"the OPTIONS request with a 2xx and 'WebHook-Allowed-Origin: {origin}' "
        "(or '*'), as the CloudEvents webhook specification's abuse protection says"
    )
    headers = {"WebHook-Request-Origin": origin, "User-Agent": USER_AGENT}
    response = await _request(http, "OPTIONS", spec, headers, b"", must)
    allowed = response.headers.get("webhook-allowed-origin")
    if not 200 <= response.status_code < 300:
        raise _refused(spec.endpoint, f"{_status_text(response)} to OPTIONS", must)
    if allowed is None:
        answered = f"{_status_text(response)} without a WebHook-Allowed-Origin header"
        raise _refused(spec.endpoint, answered, must)
    if allowed.strip() not in (origin, "*"):
        answered = f"'WebHook-Allowed-Origin: {allowed}' (another origin)"
        raise _refused(spec.endpoint, answered, must)
    rate = response.headers.get("webhook-allowed-rate")
    if rate is not None and rate.strip() != "*" and not rate.strip().isdigit():
        answered = f"'WebHook-Allowed-Rate: {rate}'"
        raise _refused(spec.endpoint, answered, "'WebHook-Allowed-Rate' as '*' or a number")
    if rate is not None:
        log.info("webhook %s allows %s request(s) per minute", spec.endpoint, rate.strip())


async def _eventgrid_handshake(
    http: httpx.AsyncClient, spec: WebhookSpec, topic: str, subscription: str
) -> None:
    code = str(uuid.uuid4()).upper()
    must = f'200 with the JSON body {{"validationResponse": "{code}"}} to the validation event'
    event = {
        "id": str(uuid.uuid4()),
        "topic": f"taskloom/topics/{topic}",
        "subject": "",
        "data": {"validationCode": code},
        "eventType": VALIDATION_EVENT_TYPE,
        "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "metadataVersion": "1",
        "dataVersion": "1",
    }
    body = json.dumps([event]).encode("utf-8")
    headers = {
        "Content-Type": EVENTGRID_JSON,
        "User-Agent": USER_AGENT,
        "aeg-event-type": "SubscriptionValidation",
        "aeg-subscription-name": subscription,
        "aeg-delivery-count": "0",
        "aeg-metadata-version": "1",
    }
    response = await _request(http, "POST", spec, headers, body, must)
    if not 200 <= response.status_code < 300:
        raise _refused(spec.endpoint, _status_text(response), must)
    try:
        answer = response.json()
    except ValueError:
        text = response.text[:200]
        raise _refused(spec.endpoint, f"a body that is not JSON: {text!r}", must) from None
    got = answer.get("validationResponse") if isinstance(answer, dict) else None
    if got != code:
        shown = json.dumps(answer)[:200]
        raise _refused(spec.endpoint, f"{_status_text(response)} with {shown}", must)


async def validate_endpoint(
    spec: WebhookSpec,
    topic: str,
    name: str,
    *,
    origin: str = DEFAULT_ORIGIN,
    http: httpx.AsyncClient | None = None,
) -> None:
    """Run the validation handshake of ``spec``'s delivery schema against its endpoint;
    raise :class:`~taskloom.errors.InvalidEventError` naming what the endpoint answered
    and what it must answer."""
    own = http is None
    client = http or httpx.AsyncClient(follow_redirects=False)
    try:
        if spec.delivery_schema == "eventgrid":
            await _eventgrid_handshake(client, spec, topic, name)
        else:
            await _cloudevents_handshake(client, spec, origin)
    finally:
        if own:
            await client.aclose()


async def subscribe_webhook(
    client: AsyncClient,
    topic: str,
    name: str,
    spec: WebhookSpec,
    *,
    after: int | None = None,
    validate: bool = True,
    origin: str = DEFAULT_ORIGIN,
) -> bool:
    """Create (or change) webhook subscription ``name`` of ``topic`` after checking,
    when ``validate``, that the endpoint agrees to receive events:

    - ``cloudevents`` schema: an ``OPTIONS`` request with ``WebHook-Request-Origin:
      <origin>``; the endpoint must answer 2xx with ``WebHook-Allowed-Origin`` equal to
      ``origin`` or ``*`` (a ``WebHook-Allowed-Rate`` must be ``*`` or a number; it is
      logged, not enforced: a 429 with ``Retry-After`` is what slows deliveries down);
    - ``eventgrid`` schema: a POST of one ``Microsoft.EventGrid.SubscriptionValidationEvent``
      with a fresh ``validationCode`` (and ``aeg-event-type: SubscriptionValidation``);
      the endpoint must answer 2xx with ``{"validationResponse": <the code>}``. No
      ``validationUrl`` is offered: the handshake is synchronous only.

    A refusal raises :class:`~taskloom.errors.InvalidEventError` and nothing is stored.
    True if the subscription was created, False if it was changed."""
    if not isinstance(spec, WebhookSpec):
        raise InvalidEventError("spec must be a WebhookSpec")
    if validate:
        await validate_endpoint(spec, topic, name, origin=origin)
    return await client.subscribe(topic, name, spec, after=after)
