"""What a topic subscription is: an event trigger of an app (``@app.event_trigger``) or
a webhook stored in the hub (``taskloom topics subscribe``), each with Event Grid's
filter and retry policy, and their JSON form in ``topic_subscriptions.spec``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from taskloom.errors import InvalidEventError
from taskloom.topics.filters import EventFilter
from taskloom.topics.policy import RetryPolicy

__all__ = [
    "DELIVERY_SCHEMAS",
    "MAX_EVENTS_PER_BATCH",
    "EventTriggerSpec",
    "WebhookSpec",
    "trigger_record_spec",
]

#: How a webhook receives events: CloudEvents (structured, or batches when
#: ``max_events_per_batch`` > 1) or Event Grid's own schema (always a JSON array).
DELIVERY_SCHEMAS = ("cloudevents", "eventgrid")
MAX_EVENTS_PER_BATCH = 5000


@dataclass(frozen=True)
class EventTriggerSpec:
    """An at-least-once handler ``(event, client)`` of one topic's events that pass
    ``filter``; failures are retried on Event Grid's schedule, independently per event,
    and dead-lettered after ``retry.max_delivery_attempts`` or ``retry.event_ttl``."""

    name: str
    topic: str
    handler: Callable[..., Any]
    is_async: bool
    filter: EventFilter = field(default_factory=EventFilter)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    wants_events: bool = False
    start: str = "beginning"  # or "end": only events published after registration
    concurrency: int = 16

    def spec_json(self) -> str:
        return trigger_record_spec(self.filter, self.retry, self.start)


def trigger_record_spec(flt: EventFilter, retry: RetryPolicy, start: str) -> str:
    return json.dumps(
        {"filter": flt.to_json(), "retryPolicy": retry.to_json(), "start": start},
        sort_keys=True,
    )


def _check_endpoint(endpoint: object) -> str:
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidEventError(
            f"endpoint {endpoint!r} is not an http(s) URL: give the receiver's full URL, "
            "e.g. https://receiver.example/api/events"
        )
    return str(endpoint)


@dataclass(frozen=True)
class WebhookSpec:
    """A webhook subscription: where and how events are posted. ``secret`` signs every
    delivery (HMAC-SHA256 of the timestamp and body, see docs/cloudevents.md) so the
    receiver can check the sender."""

    endpoint: str
    filter: EventFilter = field(default_factory=EventFilter)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    delivery_schema: str = "cloudevents"
    max_events_per_batch: int = 1
    secret: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        _check_endpoint(self.endpoint)
        if self.delivery_schema not in DELIVERY_SCHEMAS:
            raise InvalidEventError(
                f"deliverySchema {self.delivery_schema!r} is not known: use one of "
                f"{', '.join(DELIVERY_SCHEMAS)}"
            )
        n = self.max_events_per_batch
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_EVENTS_PER_BATCH:
            raise InvalidEventError(
                f"maxEventsPerBatch must be an integer 1..{MAX_EVENTS_PER_BATCH}, not {n!r}"
            )
        if self.secret is not None and (not isinstance(self.secret, str) or not self.secret):
            raise InvalidEventError("secret must be a non-empty string, or omitted")
        if not isinstance(self.timeout, int | float) or not 0 < self.timeout <= 300:
            raise InvalidEventError(f"timeout must be 0 < seconds <= 300, not {self.timeout!r}")

    def to_json(self, *, with_secret: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "endpoint": self.endpoint,
            "filter": self.filter.to_json(),
            "retryPolicy": self.retry.to_json(),
            "deliverySchema": self.delivery_schema,
            "maxEventsPerBatch": self.max_events_per_batch,
            "timeoutInSeconds": self.timeout,
        }
        if with_secret and self.secret is not None:
            out["secret"] = self.secret
        elif self.secret is not None:
            out["signed"] = True
        return out

    @classmethod
    def from_json(cls, obj: object) -> WebhookSpec:
        """Parse a webhook subscription body (as the HTTP API takes it)."""
        if not isinstance(obj, dict):
            raise InvalidEventError("a webhook subscription must be a JSON object")
        known = {
            "endpoint",
            "filter",
            "retryPolicy",
            "deliverySchema",
            "maxEventsPerBatch",
            "secret",
            "timeoutInSeconds",
        }
        unknown = sorted(set(obj) - known - {"signed"})
        if unknown:
            raise InvalidEventError(
                f"unknown webhook subscription field(s) {', '.join(unknown)}: use "
                f"{', '.join(sorted(known))}"
            )
        if "endpoint" not in obj:
            raise InvalidEventError("a webhook subscription needs an 'endpoint' URL")
        flt = obj.get("filter")
        retry = obj.get("retryPolicy")
        return cls(
            endpoint=obj["endpoint"],
            filter=EventFilter.from_json({} if flt is None else flt),
            retry=RetryPolicy.from_json({} if retry is None else retry),
            delivery_schema=obj.get("deliverySchema", "cloudevents"),
            max_events_per_batch=obj.get("maxEventsPerBatch", 1),
            secret=obj.get("secret"),
            timeout=obj.get("timeoutInSeconds", 30.0),
        )
