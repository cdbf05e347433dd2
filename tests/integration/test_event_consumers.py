"""Projections and subscriptions under ``TestEnv``, on SQLite and PostgreSQL: inline and
asynchronous read models, queries, rebuilds, exactly-once effects of subscription
handlers, retries on virtual time, parking and replay."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

import taskloom as tl
from taskloom.testing import TestEnv


def _app(**kw: Any) -> tl.App:
    app = tl.App("ev" + uuid.uuid4().hex[:10])

    @app.orchestrator
    def notify(ctx: tl.OrchestrationContext) -> Any:
        return ctx.get_input()

    @app.projection("requests", inline=True, indexes=["status", "row"])
    def requests(event: tl.RecordedEvent, view: tl.View) -> None:
        doc = view.get(event.stream_id) or {"status": "new", "events": 0}
        doc["events"] += 1
        if event.type == "RequestDiscovered":
            doc["row"] = event.data["row"]
        if event.type == "SubmissionPrepared":
            doc["status"] = "prepared"
        view.put(event.stream_id, doc)

    @app.projection("counts")
    def counts(event: tl.RecordedEvent, view: tl.View) -> None:
        doc = view.get(event.type) or {"n": 0}
        view.put(event.type, {"n": doc["n"] + 1})

    return app


def test_inline_projection_is_current_after_append_and_queries(store_url: str) -> None:
    app = _app()
    with TestEnv(app, store=store_url) as env:
        events = env.client.events
        for row in range(5):
            events.append(f"req-{row}", [tl.NewEvent("RequestDiscovered", {"row": row})])
        events.append("req-3", [tl.NewEvent("SubmissionPrepared", {"attempt": 1})])
        view = events.view("requests")
        assert view.get("req-3") == {"status": "prepared", "events": 2, "row": 3}
        assert [r.key for r in view.query(status="new", row__gte=2)] == ["req-2", "req-4"]
        assert [r.key for r in view.query([("row", "<", 2)])] == ["req-0", "req-1"]
        assert view.count() == 5
        with pytest.raises(ValueError, match="unknown filter"):
            view.query(row__between=3)


def test_async_projection_catches_up_and_rebuild_swaps_a_checked_copy(store_url: str) -> None:
    app = _app()
    with TestEnv(app, store=store_url) as env:
        events = env.client.events
        for i in range(30):
            events.append(f"s-{i % 3}", [tl.NewEvent("A" if i % 2 else "B")])
        env.wait_for_consumers()
        view = events.view("counts")
        assert view.get("A") == {"n": 15} and view.get("B") == {"n": 15}
        report = events.rebuild("counts")
        assert report.generation == 2 and report.documents_after == 2
        assert report.position == events.head()
        assert view.get("A") == {"n": 15}
        events.append("s-9", [tl.NewEvent("A")])
        env.wait_for_consumers()
        assert view.get("A") == {"n": 16}
        status = {s.consumer: s for s in events.consumers()}
        assert status["projection:counts"].lag == 0


def test_subscription_effects_commit_once_with_the_checkpoint(store_url: str) -> None:
    app = _app()
    calls: list[str] = []

    @app.subscription("starter", types=["RequestDiscovered"], partitions=4)
    def starter(event: tl.RecordedEvent, client: tl.Client, *, events: tl.EventStore) -> None:
        calls.append(event.stream_id)
        client.start_new("notify", event.data, instance_id=f"n-{event.stream_id}")
        events.append(f"audit-{event.stream_id}", [tl.NewEvent("Seen", id=f"seen-{event.id}")])

    with TestEnv(app, store=store_url) as env:
        for i in range(8):
            env.client.events.append(f"r{i}", [tl.NewEvent("RequestDiscovered", {"row": i})])
        env.wait_for_consumers()
        assert sorted(calls) == sorted(f"r{i}" for i in range(8))
        for i in range(8):
            state = env.client.wait_for_completion(f"n-r{i}", timeout=10)
            assert state.output == {"row": i}
            assert len(env.client.events.read_stream(f"audit-r{i}")) == 1


def test_failing_handler_is_retried_on_virtual_time_then_parked_and_replayed(
    store_url: str,
) -> None:
    app = _app()
    seen: list[int] = []
    broken = {"on": True}

    @app.subscription("flaky", max_attempts=3, partitions=1)
    async def flaky(event: tl.RecordedEvent, client: tl.AsyncClient) -> None:
        seen.append(event.position)
        if broken["on"] and event.type == "Bad":
            raise RuntimeError("downstream says no")

    with TestEnv(app, store=store_url) as env:
        events = env.client.events
        events.append("x", [tl.NewEvent("Good"), tl.NewEvent("Bad"), tl.NewEvent("Good")])
        env.wait_for_consumers()
        bad = events.read_stream("x")[1].position
        assert seen.count(bad) == 3  # three attempts, then parked; the stream went on
        (status,) = [s for s in events.consumers() if s.name == "flaky"]
        assert [p.position for p in status.parked] == [bad]
        assert "downstream says no" in status.parked[0].error
        assert status.lag == 0
        broken["on"] = False
        assert events.replay_parked("subscription:flaky") == 1
        env.wait_for_consumers()
        assert seen.count(bad) == 4
        (status,) = [s for s in events.consumers() if s.name == "flaky"]
        assert status.parked == ()


def test_inline_projection_parks_a_failing_event_and_the_append_commits(store_url: str) -> None:
    app = tl.App("ev" + uuid.uuid4().hex[:10])

    @app.projection("strict", inline=True)
    def strict(event: tl.RecordedEvent, view: tl.View) -> None:
        view.put(event.stream_id, {"t": event.type})
        if event.type == "Poison":
            raise ValueError("cannot project poison")

    with TestEnv(app, store=store_url) as env:
        events = env.client.events
        events.append("a", [tl.NewEvent("Fine")])
        events.append("b", [tl.NewEvent("Poison")])
        assert events.stream_version("b") == 1
        view = events.view("strict")
        assert view.get("a") == {"t": "Fine"} and view.get("b") is None
        (status,) = [s for s in events.consumers() if s.name == "strict"]
        assert len(status.parked) == 1 and "cannot project poison" in status.parked[0].error


def test_async_projection_batch_keeps_the_writes_of_events_before_a_failure(
    store_url: str,
) -> None:
    """One batch: each event's writes seen by the next, a raising event's writes
    undone, and a document PostgreSQL refuses (NUL) failing its own event only."""
    app = tl.App("ev" + uuid.uuid4().hex[:10])

    @app.projection("tally", max_attempts=1)
    def tally(event: tl.RecordedEvent, view: tl.View) -> None:
        doc = view.get("all") or {"n": 0, "seen": []}
        doc["n"] += 1
        doc["seen"].append(event.type)
        view.put("all", doc)
        view.put(event.stream_id, {"t": event.type, "text": (event.data or {}).get("text", "")})
        if event.type == "Poison":
            raise ValueError("cannot project poison")
        if event.type == "Gone":
            view.delete("a")

    with TestEnv(app, store=store_url) as env:
        events = env.client.events
        events.append("a", [tl.NewEvent("One")])
        events.append("b", [tl.NewEvent("Poison")])
        events.append("c", [tl.NewEvent("Two"), tl.NewEvent("Gone")])
        events.append("d", [tl.NewEvent("Nul", {"text": "x\x00y"})])
        events.append("e", [tl.NewEvent("Three")])
        env.wait_for_consumers()
        view = events.view("tally")
        nul_refused = store_url.startswith("postgresql")
        kept = ["One", "Two", "Gone", *([] if nul_refused else ["Nul"]), "Three"]
        assert view.get("all") == {"n": len(kept), "seen": kept}
        assert view.get("a") is None and view.get("b") is None
        assert view.get("c") == {"t": "Gone", "text": ""}
        assert view.get("e") == {"t": "Three", "text": ""}
        assert (view.get("d") is None) is nul_refused
        (status,) = [s for s in events.consumers() if s.name == "tally"]
        parked = {p.type for p in status.parked}
        assert parked == ({"Poison", "Nul"} if nul_refused else {"Poison"})


def test_activity_appends_commit_with_its_result_and_a_refusal_fails_it(store_url: str) -> None:
    app = tl.App("ev" + uuid.uuid4().hex[:10])
    attempts: list[int] = []

    @app.activity
    def record(stream: str, *, events: tl.EventStore) -> int:
        attempts.append(1)
        events.append(stream, [tl.NewEvent("Recorded", {"n": len(attempts)})])
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails after appending")
        return events.stream_version(stream)

    @app.activity
    def stale(stream: str, *, events: tl.EventStore) -> None:
        events.append(stream, [tl.NewEvent("Late")], expected_version=tl.NO_STREAM)

    @app.orchestrator
    def flow(ctx: tl.OrchestrationContext) -> Any:
        retry = tl.RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=2)
        before = yield ctx.call_activity(record, "audit", retry_policy=retry)
        try:
            yield ctx.call_activity(stale, "audit")
        except tl.TaskFailedError as exc:
            return [before, str(exc.details.message)]
        return [before, None]

    with TestEnv(app, store=store_url) as env:
        iid = env.client.start_new("flow")
        state = env.client.wait_for_completion(iid, timeout=20)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        before, error = state.output
        # The failed first attempt's append was never written; the second's was.
        assert before == 0
        assert [e.data for e in env.client.events.read_stream("audit")] == [{"n": 2}]
        assert "expected tl.NO_STREAM" in error
        assert env.client.events.stream_version("audit") == 1
