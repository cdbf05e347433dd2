"""Event triggers under ``TestEnv``, on SQLite and PostgreSQL: filters, idempotent
publishing, retries on Event Grid's schedule in virtual time, dead letters and redrive,
exactly-once effects committed with the acknowledgement, replay from a position."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

import pytest

import taskloom as tl
from taskloom.errors import ConfigurationError, InvalidEventError
from taskloom.testing import TestEnv


def _app() -> tl.App:
    return tl.App("tp" + uuid.uuid4().hex[:10])


def ce(type: str = "order.placed", data: Any = None, **kw: Any) -> tl.CloudEvent:
    return tl.CloudEvent(type, "/shop", data, **kw)


def test_a_trigger_gets_the_events_its_filter_passes(store_url: str) -> None:
    app = _app()
    got: list[tl.CloudEvent] = []

    @app.event_trigger(
        "orders",
        types=["order.placed"],
        subject_begins_with="eu/",
        advanced_filters=[{"operatorType": "NumberGreaterThan", "key": "data.total", "value": 10}],
    )
    def big_eu_orders(event: tl.CloudEvent, client: tl.Client) -> None:
        got.append(event)

    with TestEnv(app, store=store_url) as env:
        env.client.publish(
            "orders",
            [
                ce(data={"total": 50}, subject="eu/fr", id="a"),
                ce(data={"total": 5}, subject="eu/fr", id="b"),  # too small
                ce(data={"total": 50}, subject="us/ny", id="c"),  # wrong subject
                ce("order.cancelled", {"total": 50}, subject="eu/fr", id="d"),  # wrong type
                ce(data={"total": 11}, subject="EU/de", id="e"),  # case-insensitive
            ],
        )
        env.client.publish("other", ce(data={"total": 50}, subject="eu/fr", id="f"))
        env.wait_for_consumers()
        assert sorted(e.id for e in got) == ["a", "e"]
        assert got[0].data == {"total": 50} or got[1].data == {"total": 50}


def test_publishing_the_same_source_and_id_again_delivers_once(store_url: str) -> None:
    app = _app()
    got: list[str] = []

    @app.event_trigger("orders")
    async def audit(event: tl.CloudEvent, client: tl.AsyncClient) -> None:
        got.append(event.id)

    with TestEnv(app, store=store_url) as env:
        first = env.client.publish("orders", ce(id="x-1", data={"n": 1}))
        again = env.client.publish("orders", [ce(id="x-1", data={"n": 1}), ce(id="x-2")])
        assert again[0] == first[0]
        other_source = tl.CloudEvent("order.placed", "/elsewhere", id="x-1")
        env.client.publish("orders", other_source)
        env.wait_for_consumers()
        assert sorted(got) == ["x-1", "x-1", "x-2"]  # the other source's x-1 is another event
        assert [p.event.id for p in env.client.read_topic("orders")] == ["x-1", "x-2", "x-1"]


def test_failures_retry_on_event_grids_schedule_then_dead_letter(store_url: str) -> None:
    app = _app()
    attempts: list[Any] = []

    @app.event_trigger("orders", max_delivery_attempts=4)
    def flaky(event: tl.CloudEvent, client: tl.Client) -> None:
        attempts.append((event.id, env.now()))
        if event.data["fail"]:
            raise RuntimeError(f"cannot handle {event.id}")

    with TestEnv(app, store=store_url) as env:
        start = env.now()
        env.client.publish("orders", [ce(id="bad", data={"fail": True})])
        env.client.publish("orders", [ce(id="good", data={"fail": False})])
        env.wait_for_consumers()
        bad = [t for i, t in attempts if i == "bad"]
        assert [i for i, _ in attempts].count("good") == 1  # not held up by "bad"
        assert len(bad) == 4
        gaps = [round((b - a).total_seconds()) for a, b in itertools.pairwise(bad)]
        assert gaps == [10, 30, 60]
        assert bad[0] - start < timedelta(seconds=5)
        (letter,) = env.client.dead_letters("orders")
        assert letter.event is not None and letter.event.id == "bad"
        assert letter.subscription == "flaky"
        assert letter.reason == "MaxDeliveryAttemptsExceeded"
        assert letter.delivery_attempts == 4
        assert "cannot handle bad" in letter.last_delivery_outcome
        assert letter.last_attempt_at == bad[-1]
        assert env.client.dead_letters("orders", subscription="nobody") == []

        # Redrive: delivered again from a first attempt (it still fails, four times).
        attempts.clear()
        assert env.client.redrive("orders", ids=["nope"]) == 0
        assert env.client.redrive("orders", ids=["bad"]) == 1
        env.wait_for_consumers()
        assert [i for i, _ in attempts] == ["bad"] * 4
        assert len(env.client.dead_letters("orders")) == 1


def test_an_event_past_its_time_to_live_is_dead_lettered(store_url: str) -> None:
    app = _app()

    @app.event_trigger("orders", event_ttl=timedelta(minutes=1))
    def never(event: tl.CloudEvent, client: tl.Client) -> None:
        raise RuntimeError("down")

    with TestEnv(app, store=store_url) as env:
        env.client.publish("orders", ce(id="late"))
        env.wait_for_consumers()
        (letter,) = env.client.dead_letters("orders")
        assert letter.reason == "TimeToLiveExceeded"
        # 10 s, 30 s: the next wait (1 min) would pass the TTL of 1 min.
        assert letter.delivery_attempts == 3


def test_handler_effects_commit_with_the_acknowledgement(store_url: str) -> None:
    app = _app()
    calls: list[str] = []

    @app.orchestrator
    def fulfil(ctx: tl.OrchestrationContext) -> Any:
        return ctx.get_input()

    @app.event_trigger("orders")
    def place(event: tl.CloudEvent, client: tl.Client, *, events: tl.EventStore) -> None:
        calls.append(event.id)
        events.append(f"order-{event.id}", [tl.NewEvent("OrderPlaced", event.data)])
        client.publish("fulfilment", tl.CloudEvent("fulfil.requested", "/shop", id=event.id))
        client.start_new("fulfil", event.data, instance_id=f"fulfil-{event.id}")
        if len(calls) == 1:
            raise RuntimeError("crash after the effects were made, before the ack")

    seen: list[str] = []

    @app.event_trigger("fulfilment")
    def downstream(event: tl.CloudEvent, client: tl.Client) -> None:
        seen.append(event.id)

    with TestEnv(app, store=store_url) as env:
        env.client.publish("orders", ce(id="o1", data={"n": 1}))
        env.wait_for_consumers()
        assert calls == ["o1", "o1"]  # retried once
        stream = env.client.events.read_stream("order-o1")
        assert [e.type for e in stream] == ["OrderPlaced"]  # the failed attempt left nothing
        assert seen == ["o1"]
        assert env.client.wait_for_completion("fulfil-o1", timeout=10).output == {"n": 1}


def test_replay_from_a_position_or_a_time_delivers_again(store_url: str) -> None:
    app = _app()
    got: list[str] = []

    @app.event_trigger("orders")
    def audit(event: tl.CloudEvent, client: tl.Client) -> None:
        got.append(event.id)

    with TestEnv(app, store=store_url) as env:
        positions = [env.client.publish("orders", ce(id=f"e{i}"))[0] for i in range(3)]
        env.wait_for_consumers()
        assert got == ["e0", "e1", "e2"]
        assert env.client.replay_topic("orders", after=positions[0]) == 1
        env.wait_for_consumers()
        assert got[3:] == ["e1", "e2"]
        env.advance(timedelta(seconds=1))
        assert env.client.replay_topic("orders", subscription="audit", since=env.now()) == 1
        env.wait_for_consumers()
        assert len(got) == 5  # nothing published since
        page = env.client.read_topic("orders", after=positions[1])
        assert [p.event.id for p in page] == ["e2"]
        with pytest.raises(InvalidEventError, match="no subscription 'nobody'"):
            env.client.replay_topic("orders", subscription="nobody")


def test_bad_input_is_refused_clearly() -> None:
    app = _app()
    with pytest.raises(ConfigurationError, match="max_delivery_attempts"):
        app.event_trigger("orders", max_delivery_attempts=0)
    with pytest.raises(ConfigurationError, match="topic name"):
        app.event_trigger("no spaces")
    with pytest.raises(ConfigurationError, match="operatorType"):
        app.event_trigger("orders", advanced_filters=[{"operatorType": "Nope", "key": "k"}])
    with TestEnv(app) as env:
        with pytest.raises(InvalidEventError, match=r"tl\.CloudEvent"):
            env.client.publish("orders", {"type": "x"})  # type: ignore[arg-type]
        with pytest.raises(InvalidEventError, match="no events"):
            env.client.publish("orders", [])
        with pytest.raises(InvalidEventError, match="topic name"):
            env.client.publish("", ce())
        assert env.client.read_topic("orders") == []
