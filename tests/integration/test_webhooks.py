"""Webhook subscriptions under ``TestEnv(webhooks=True)``, on SQLite and PostgreSQL,
against real HTTP receivers on loopback: retries on Event Grid's schedule in virtual
time (500, a timeout, the status codes' minimum delays, ``Retry-After``), a 400 that
dead-letters at once, redrive, batches, the Event Grid schema, signed deliveries and
the validation handshake of both schemas."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import taskloom as tl
from taskloom.clock import Clock
from taskloom.errors import InvalidEventError
from taskloom.testing import TestEnv
from taskloom.topics.policy import RetryPolicy
from taskloom.topics.specs import WebhookSpec
from taskloom.topics.webhook import (
    DEFAULT_ORIGIN,
    HttpSender,
    sign,
    subscribe_webhook,
    verify_signature,
)

SECRET = "correct horse battery staple"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: datetime | None

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


#: What the receiver does with one request: (status, headers, body, seconds to sleep first).
Reply = tuple[int, dict[str, str], bytes, float]
Script = Callable[[Request], Reply]


def ok(status: int = 200, delay: float = 0.0, **headers: str) -> Reply:
    return status, headers, b"", delay


@dataclass
class Receiver:
    """A threaded HTTP server on 127.0.0.1:0 that records every request and answers POSTs
    from ``posts`` (one reply per POST, the last repeating) and OPTIONS with ``options``."""

    posts: list[Reply] = field(default_factory=lambda: [ok()])
    options: Script | None = None
    clock: Clock | None = None
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/in"

    def deliveries(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "POST"]

    def reply(self, request: Request) -> Reply:
        with self.lock:
            self.requests.append(request)
            if request.method == "OPTIONS":
                if self.options is None:
                    return 405, {"Allow": "POST"}, b"", 0.0
                return self.options(request)
            n = sum(1 for r in self.requests if r.method == "POST")
            return self.posts[min(n, len(self.posts)) - 1]

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                at = receiver.clock.now() if receiver.clock is not None else None
                request = Request(self.command, self.path, dict(self.headers), body, at)
                status, headers, out, delay = receiver.reply(request)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass  # the sender gave up (a timeout)

            do_POST = do_OPTIONS = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    try:
        yield r
    finally:
        r.stop()


def _app() -> tl.App:
    return tl.App("wh" + uuid.uuid4().hex[:10])


def ce(id: str, data: Any = None, **kw: Any) -> tl.CloudEvent:
    return tl.CloudEvent("order.placed", "/shop", {"n": id} if data is None else data, id=id, **kw)


def gaps(requests: list[Request]) -> list[int]:
    times = [r.at for r in requests]
    assert all(t is not None for t in times)
    return [round((b - a).total_seconds()) for a, b in itertools.pairwise(times)]  # type: ignore[operator]


def subscribe(env: TestEnv, name: str, spec: WebhookSpec, topic: str = "orders") -> None:
    env.run(subscribe_webhook(env.async_client, topic, name, spec, validate=False))


def test_fails_times_out_answers_400_then_redrive_succeeds(
    store_url: str, receiver: Receiver
) -> None:
    receiver.posts = [ok(500), ok(200, delay=2.0), ok(400), ok(200)]
    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        receiver.clock = env.clock
        spec = WebhookSpec(receiver.url, timeout=0.5)
        subscribe(env, "audit", spec)
        start = env.now()
        env.client.publish("orders", ce("e1"))
        env.wait_for_consumers()

        posts = receiver.deliveries()
        assert len(posts) == 3
        assert posts[0].at is not None and posts[0].at - start < timedelta(seconds=5)
        assert gaps(posts) == [10, 30]  # Event Grid's schedule: 10 s, then 30 s
        assert [p.header("aeg-delivery-count") for p in posts] == ["0", "1", "2"]
        for p in posts:
            assert p.header(
                "content-type",
            ).startswith("application/cloudevents+json")  # type: ignore[union-attr]
            assert p.header("aeg-event-type") == "Notification"
            assert p.header("aeg-subscription-name") == "audit"
            assert p.header(
                "user-agent",
            ).startswith("taskloom/")  # type: ignore[union-attr]
            assert p.header("origin") == DEFAULT_ORIGIN
            assert p.header("x-taskloom-signature") is None  # no secret, no signature
            assert p.json()["id"] == "e1" and p.json()["data"] == {"n": "e1"}

        (letter,) = env.client.dead_letters("orders")
        assert letter.subscription == "audit"
        assert letter.event is not None and letter.event.id == "e1"
        assert letter.reason == "UndeliverableDueToHttpBadRequest"
        assert letter.delivery_attempts == 3
        assert letter.last_delivery_outcome == "BadRequest"
        assert letter.last_attempt_at == posts[2].at
        assert letter.published_at <= posts[0].at  # type: ignore[operator]

        # Redrive: a first attempt again, which succeeds.
        assert env.client.redrive("orders", subscription="audit") == 1
        env.wait_for_consumers()
        posts = receiver.deliveries()
        assert len(posts) == 4
        assert posts[3].header("aeg-delivery-count") == "0"
        assert posts[3].json()["id"] == "e1"
        assert env.client.dead_letters("orders") == []
        (sub,) = env.client.subscriptions("orders")
        assert sub.kind == "webhook" and sub.pending == 0 and sub.dead_letters == 0


def test_status_codes_minimum_delays_and_retry_after(store_url: str, receiver: Receiver) -> None:
    receiver.posts = [ok(404), ok(408), ok(429, **{"Retry-After": "90"}), ok(503), ok(204)]
    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        receiver.clock = env.clock
        subscribe(env, "slow", WebhookSpec(receiver.url))
        env.client.publish("orders", ce("e1"))
        env.wait_for_consumers()
        posts = receiver.deliveries()
        assert len(posts) == 5
        # 404: 5 min (over the schedule's 10 s); 408: 2 min (over 30 s); 429 with
        # Retry-After: 90 s (over 1 min); 503: the schedule's 5 min (over its 30 s).
        assert gaps(posts) == [300, 120, 90, 300]
        assert env.client.dead_letters("orders") == []


def test_attempts_run_out_and_an_unreachable_endpoint(store_url: str, receiver: Receiver) -> None:
    receiver.posts = [ok(500)]
    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        retry = RetryPolicy(max_delivery_attempts=3)
        subscribe(env, "down", WebhookSpec(receiver.url, retry=retry))
        # Port 9 on loopback: nothing listens (connection refused).
        subscribe(env, "gone", WebhookSpec("http://127.0.0.1:9/x", retry=retry))
        env.client.publish("orders", ce("e1"))
        env.wait_for_consumers()
        letters = {d.subscription: d for d in env.client.dead_letters("orders")}
        assert letters["down"].reason == "MaxDeliveryAttemptsExceeded"
        assert letters["down"].delivery_attempts == 3
        assert letters["down"].last_delivery_outcome == "InternalServerError"
        assert letters["gone"].reason == "MaxDeliveryAttemptsExceeded"
        assert letters["gone"].last_delivery_outcome == "Unreachable"
        assert len(receiver.deliveries()) == 3


def test_batches_of_three(store_url: str, receiver: Receiver) -> None:
    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        subscribe(env, "batched", WebhookSpec(receiver.url, max_events_per_batch=3))
        ids = [f"e{i}" for i in range(7)]
        env.client.publish("orders", [ce(i) for i in ids])
        env.wait_for_consumers()
        posts = receiver.deliveries()
        assert sorted(len(p.json()) for p in posts) == [1, 3, 3]
        for p in posts:
            assert p.header("content-type").startswith(  # type: ignore[union-attr]
                "application/cloudevents-batch+json"
            )
            assert all(e["specversion"] == "1.0" and e["source"] == "/shop" for e in p.json())
        got = sorted(e["id"] for p in posts for e in p.json())
        assert got == sorted(ids)


def test_event_grid_schema(store_url: str, receiver: Receiver) -> None:
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        spec = WebhookSpec(receiver.url, delivery_schema="eventgrid", max_events_per_batch=10)
        subscribe(env, "grid", spec)
        env.client.publish(
            "orders",
            [
                ce("g1", {"total": 5}, subject="eu/fr", time=when),
                ce("g2", {"total": 7}, subject="eu/de", time=when),
            ],
        )
        env.wait_for_consumers()
        (post,) = receiver.deliveries()
        assert post.header("content-type").startswith("application/json")  # type: ignore[union-attr]
        assert post.header("aeg-event-type") == "Notification"
        assert post.header("origin") is None
        body = post.json()
        assert [e["id"] for e in body] == ["g1", "g2"]
        first = body[0]
        assert first["eventType"] == "order.placed"
        assert first["subject"] == "eu/fr"
        assert first["topic"] == "/shop"
        assert first["data"] == {"total": 5}
        assert first["metadataVersion"] == "1"
        assert first["eventTime"].startswith("2024-05-01T12:00:00")

        # An event the Event Grid schema cannot carry (no subject) is dead-lettered, not retried.
        env.client.publish("orders", ce("nosubject", time=when))
        env.wait_for_consumers()
        (letter,) = env.client.dead_letters("orders")
        assert letter.event is not None and letter.event.id == "nosubject"
        assert letter.delivery_attempts == 1
        assert "subject" in letter.last_delivery_outcome
        assert len(receiver.deliveries()) == 1


def test_signed_deliveries_verify(store_url: str, receiver: Receiver) -> None:
    verdicts: list[bool] = []

    def check(request: Request) -> Reply:
        verdicts.append(verify_signature(SECRET, request.headers, request.body))
        return ok(200 if verdicts[-1] else 401)

    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        receiver.clock = env.clock
        subscribe(env, "signed", WebhookSpec(receiver.url, secret=SECRET))
        original = receiver.reply

        def reply(request: Request) -> Reply:
            original(request)
            return check(request)

        receiver.reply = reply  # type: ignore[method-assign]
        env.client.publish("orders", [ce("s1"), ce("s2")])
        env.wait_for_consumers()
        posts = receiver.deliveries()
        assert len(posts) == 2 and verdicts == [True, True]
        p = posts[0]
        assert p.header("x-taskloom-signature").startswith("sha256=")  # type: ignore[union-attr]
        assert p.header("x-taskloom-timestamp").isdigit()  # type: ignore[union-attr]
        # The secret is not listed back.
        (sub,) = env.client.subscriptions("orders")
        assert "secret" not in sub.spec

    # What a receiver must refuse: another secret, a changed body, an old timestamp.
    assert not verify_signature("other secret", p.headers, p.body)
    assert not verify_signature(SECRET, p.headers, p.body + b" ")
    ts = int(p.header("x-taskloom-timestamp"))  # type: ignore[arg-type]
    assert not verify_signature(SECRET, p.headers, p.body, now=ts + 301)
    assert verify_signature(SECRET, p.headers, p.body, now=ts + 299)
    assert not verify_signature(SECRET, {}, p.body)


def test_sign_and_verify_by_hand() -> None:
    import hashlib
    import hmac

    headers = sign("k", b'{"a":1}', timestamp=1_700_000_000)
    mac = hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert headers == {
        "X-Taskloom-Timestamp": "1700000000",
        "X-Taskloom-Signature": f"sha256={mac}",
    }
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_signature("k", lower, b'{"a":1}', now=1_700_000_010)
    rotated = dict(headers, **{"X-Taskloom-Signature": f"sha256={'0' * 64}, sha256={mac}"})
    assert verify_signature("k", rotated, b'{"a":1}', now=1_700_000_010)
    assert not verify_signature("k", dict(headers, **{"X-Taskloom-Timestamp": "x"}), b"")


# -- the validation handshake ------------------------------------------------------------


def allow(origin: str | None = DEFAULT_ORIGIN, status: int = 200, **extra: str) -> Script:
    def answer(request: Request) -> Reply:
        headers = {"Allow": "POST", **extra}
        if origin is not None:
            headers["WebHook-Allowed-Origin"] = origin
        return status, headers, b"", 0.0

    return answer


def test_cloudevents_handshake_accepted(store_url: str, receiver: Receiver) -> None:
    receiver.options = allow(DEFAULT_ORIGIN, **{"WebHook-Allowed-Rate": "120"})
    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        spec = WebhookSpec(receiver.url, secret=SECRET)
        created = env.run(subscribe_webhook(env.async_client, "orders", "ok", spec))
        assert created is True
        (options,) = [r for r in receiver.requests if r.method == "OPTIONS"]
        assert options.header("webhook-request-origin") == DEFAULT_ORIGIN
        assert options.path == "/hooks/in"
        assert verify_signature(SECRET, options.headers, b"")
        # Changing it runs the handshake again; a '*' origin is consent too.
        receiver.options = allow("*")
        again = env.run(subscribe_webhook(env.async_client, "orders", "ok", spec))
        assert again is False
        env.client.publish("orders", ce("h1"))
        env.wait_for_consumers()
        (post,) = receiver.deliveries()
        assert post.json()["id"] == "h1"


@pytest.mark.parametrize(
    ("options", "answered"),
    [
        (None, "405"),
        (allow(None), "without a WebHook-Allowed-Origin header"),
        (allow("someone-else.example"), "'WebHook-Allowed-Origin: someone-else.example'"),
        (allow(DEFAULT_ORIGIN, status=403), "403"),
        (allow("*", **{"WebHook-Allowed-Rate": "fast"}), "'WebHook-Allowed-Rate: fast'"),
    ],
)
def test_cloudevents_handshake_refused(
    store_url: str, receiver: Receiver, options: Script | None, answered: str
) -> None:
    receiver.options = options
    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        spec = WebhookSpec(receiver.url)
        with pytest.raises(InvalidEventError) as info:
            env.run(subscribe_webhook(env.async_client, "orders", "no", spec))
        message = str(info.value)
        assert receiver.url in message and answered in message
        assert "must answer" in message
        assert env.client.subscriptions() == []


def test_event_grid_handshake(store_url: str, receiver: Receiver) -> None:
    def echo(request: Request) -> Reply:
        (event,) = request.json()
        assert event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
        code = event["data"]["validationCode"]
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"validationResponse": code}).encode(),
            0.0,
        )

    def wrong(request: Request) -> Reply:
        return 200, {}, b'{"validationResponse": "nope"}', 0.0

    original = receiver.reply

    def reply(request: Request) -> Reply:
        original(request)
        if request.header("aeg-event-type") == "SubscriptionValidation":
            return handler(request)
        return ok()

    receiver.reply = reply  # type: ignore[method-assign]
    handler: Script = echo
    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        spec = WebhookSpec(receiver.url, delivery_schema="eventgrid")
        assert env.run(subscribe_webhook(env.async_client, "orders", "grid", spec)) is True
        (validation,) = receiver.deliveries()
        assert validation.header("aeg-subscription-name") == "grid"
        assert validation.header("content-type").startswith("application/json")  # type: ignore[union-attr]
        assert validation.json()[0]["data"]["validationCode"]

        handler = wrong
        with pytest.raises(InvalidEventError) as info:
            env.run(subscribe_webhook(env.async_client, "orders", "grid2", spec))
        assert "validationResponse" in str(info.value) and "nope" in str(info.value)

        handler = lambda r: ok(404)  # noqa: E731
        with pytest.raises(InvalidEventError, match="404"):
            env.run(subscribe_webhook(env.async_client, "orders", "grid3", spec))
        assert [s.name for s in env.client.subscriptions()] == ["grid"]


def test_handshake_unreachable_and_validate_off(store_url: str) -> None:
    with TestEnv(_app(), store=store_url, webhooks=True) as env:
        spec = WebhookSpec("http://127.0.0.1:9/hooks", timeout=2)
        with pytest.raises(InvalidEventError, match="could not be reached"):
            env.run(subscribe_webhook(env.async_client, "orders", "x", spec))
        assert env.client.subscriptions() == []
        assert env.run(subscribe_webhook(env.async_client, "orders", "x", spec, validate=False))
        assert [s.name for s in env.client.subscriptions()] == ["x"]


async def test_sender_outcomes_directly(receiver: Receiver) -> None:
    receiver.posts = [ok(200), ok(413), ok(301, Location="http://elsewhere/")]
    sender = HttpSender()
    try:
        spec = WebhookSpec(receiver.url)
        event = ce("d1")
        first = await sender.send(spec, "direct", "orders", [event], attempt=3)
        assert first.succeeded and first.status == 200
        too_large = await sender.send(spec, "direct", "orders", [event])
        assert too_large.dead_letter_reason == "UndeliverableDueToHttpRequestEntityTooLarge"
        moved = await sender.send(spec, "direct", "orders", [event])
        assert not moved.succeeded and moved.status == 301  # redirects are not followed
        assert receiver.deliveries()[0].header("aeg-delivery-count") == "2"
        assert len(receiver.deliveries()) == 3
    finally:
        await sender.aclose()
