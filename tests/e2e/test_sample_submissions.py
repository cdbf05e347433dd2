"""samples/submissions/app.py, the event-driven variant of seed 002: intake rows, the
5-minute discovery and the poll scheduler on virtual time, a real job service on
loopback, every step a handler of the ``submissions`` topic. Checked: the intake table,
the streams (exact event types), the ``requests`` projection (also after a rebuild), the
topic's published events and the job service's counts; with every event delivered twice
on two paths (republished under the same ``source`` + ``id``, and the whole topic
replayed to every trigger while the flow runs); a wrong token dead-letters and a redrive
finishes it; and once under a real ``taskloom serve`` beside the job service's command."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sample_loader import load_sample
from submissions_support import (
    ROWS,
    SERVED_ROWS,
    START,
    check_one_job_per_attempt,
    fix_token,
    intake_rows,
    running_job_service,
    serving,
    wait_until,
    wire,
)

import taskloom as tl

SCHEDULE_QUEUE = "taskloom-schedules"

ONE_JOB = ["SubmissionPrepared", "JobSubmitted", "JobPolled", "JobPolled"]
RETRIED = [*ONE_JOB, "JobFailedRetryable"]
STREAMS = {
    "row-pass": ["RequestDiscovered", *ONE_JOB, "JobTerminal", "RequestCompleted"],
    "row-fail": ["RequestDiscovered", *ONE_JOB, "JobTerminal", "RequestCompleted"],
    "row-retry": ["RequestDiscovered", *RETRIED, *ONE_JOB, "JobTerminal", "RequestCompleted"],
    "row-exhausted": [
        "RequestDiscovered",
        *RETRIED,
        *RETRIED,
        *ONE_JOB,
        "JobTerminal",
        "RequestCompleted",
    ],
    "row-bad": ["RequestDiscovered", "JobTerminal", "RequestCompleted"],
}
TERMINAL = {  # row -> (status, attempts)
    "row-pass": ("Pass", 1),
    "row-fail": ("Fail", 1),
    "row-retry": ("Pass", 2),
    "row-exhausted": ("Fail", 3),
    "row-bad": ("Fail", 0),
}
PUBLISHED = {  # type -> count: 7 jobs, 3 polls each
    "workflow.request.discovered.v1": 5,
    "workflow.submission.prepared.v1": 7,
    "workflow.job.submitted.v1": 7,
    "workflow.job.pollrequested.v1": 21,
    "workflow.job.terminal.v1": 5,
    "workflow.request.completed.v1": 5,
}

# Every delivery any trigger of the topic gets, as the audit trigger below sees them.
DELIVERIES: list[tuple[str, str, str]] = []


@pytest.fixture
def sample() -> ModuleType:
    module = load_sample("submissions", "app")
    if "AuditDeliveries" not in module.app.event_triggers:

        @module.app.event_trigger(module.TOPIC, name="AuditDeliveries")
        def audit(event: tl.CloudEvent, client: tl.Client) -> None:
            DELIVERIES.append((event.source, event.id, event.type))

    DELIVERIES.clear()
    return module


@pytest.fixture
def service(sample: ModuleType) -> Iterator[Any]:
    with running_job_service() as s:
        yield s


def step(
    env: tl.testing.TestEnv, delta: timedelta, between: Callable[[], Any] = lambda: None
) -> None:
    """Let ``delta`` of virtual time pass: the schedules' due ticks run, then every
    trigger catches up. ``between`` runs after the ticks were claimed (duplicates)."""
    env.advance(delta)
    now = env.now()
    wait_until(
        lambda: (
            all(r.next_tick > now for r in env.client.list_schedules())
            and not env.client.peek_queue(SCHEDULE_QUEUE)
        ),
        "the due schedule ticks to run",
    )
    between()
    env.wait_for_consumers()


def run_to_the_end(
    env: tl.testing.TestEnv, table: Any, between: Callable[[], Any] = lambda: None
) -> int:
    """Discovery after 5 minutes, then minute by minute until every row is terminal;
    returns the virtual minutes it took."""
    step(env, timedelta(minutes=5), between)
    minutes = 5
    while any(r.status not in ("Pass", "Fail") for r in table.list_rows()):
        assert minutes < 120, {r.row_key: r.status for r in table.list_rows()}
        step(env, timedelta(minutes=1), between)
        minutes += 1
    return minutes


def check_outcome(sample: ModuleType, env: tl.testing.TestEnv, table: Any, service: Any) -> None:
    """The intake rows, the streams, the projection, the topic and the job service."""
    rows = {r.row_key: r for r in table.list_rows()}
    assert {k: (r.status, r.attempts) for k, r in rows.items()} == TERMINAL
    assert all(r.claims == 1 for r in rows.values())
    assert rows["row-exhausted"].detail == "FailCanRetry on all 3 attempts"
    assert "payload must be a JSON object" in rows["row-bad"].detail
    assert rows["row-bad"].job_id is None

    es = env.client.events
    streams = {k: es.read_stream(sample.stream_for(k)) for k in ROWS}
    assert {k: [e.type for e in s] for k, s in streams.items()} == STREAMS
    submitted = [e.data for e in streams["row-exhausted"] if e.type == "JobSubmitted"]
    assert [d["attempt"] for d in submitted] == [1, 2, 3]
    assert [d["idempotencyKey"] for d in submitted] == [f"row-exhausted:{n}" for n in (1, 2, 3)]
    polled = [e.data["status"] for e in streams["row-pass"] if e.type == "JobPolled"]
    assert polled == ["Created", "Inprogress"]
    # Each poll waited for the 5-minute interval (the poll scheduler runs every minute).
    times = [e.recorded_at for e in streams["row-pass"] if e.type.startswith("Job")]
    assert all(b - a >= timedelta(minutes=5) for a, b in itertools.pairwise(times))
    for k, stream in streams.items():
        assert rows[k].job_id == next(
            (e.data["jobId"] for e in reversed(stream) if e.type == "JobTerminal"), None
        )

    view = es.view("requests")
    docs = {k: view.get(k) for k in ROWS}
    assert {k: (d["status"], d["terminal_status"], d["attempt"]) for k, d in docs.items()} == {
        k: ("Completed", status, max(attempts, 0)) for k, (status, attempts) in TERMINAL.items()
    }
    assert {k: d["version"] for k, d in docs.items()} == {k: len(s) for k, s in STREAMS.items()}
    assert {k: d["job_id"] for k, d in docs.items()} == {k: r.job_id for k, r in rows.items()}
    assert all(d["next_poll_at"] is None for d in docs.values())
    assert view.query(status="Submitted") == []
    assert view.count() == len(ROWS)

    published = env.client.read_topic(sample.TOPIC)
    assert Counter(p.event.type for p in published) == PUBLISHED
    ids = [(p.event.source, p.event.id) for p in published]
    assert len(ids) == len(set(ids))
    completed = {
        p.event.data["requestId"]: p.event.data
        for p in published
        if p.event.type == "workflow.request.completed.v1"
    }
    assert {k: (d["status"], d["attempts"]) for k, d in completed.items()} == TERMINAL

    check_one_job_per_attempt(service)
    assert env.client.dead_letters(sample.TOPIC) == []


def test_every_row_reaches_its_terminal_status_through_the_topic(
    sample: ModuleType, service: Any, tmp_path: Path
) -> None:
    table = wire(sample, tmp_path, service, rows=ROWS)
    with tl.testing.TestEnv(sample.app, start=START) as env:
        step(env, timedelta(minutes=4))
        assert env.client.read_topic(sample.TOPIC) == []  # nothing before the first tick
        minutes = run_to_the_end(env, table) - 4
        # Attempt 3 of row-exhausted: 3 x (submit, 3 polls 5 minutes apart) at most.
        assert minutes <= 5 + 3 * 3 * 6, minutes
        check_outcome(sample, env, table, service)
        assert service.stats()["submit_calls"] == 7

        # The read model is rebuilt from the log to the same documents.
        view = env.client.events.view("requests")
        before = {k: view.get(k) for k in ROWS}
        env.client.events.rebuild("requests")
        assert {k: view.get(k) for k in ROWS} == before

        # Later ticks find nothing to do and publish nothing.
        count = len(env.client.read_topic(sample.TOPIC))
        step(env, timedelta(minutes=30))
        assert sample.discover_work_items(env.client, env.now()) == 0
        assert sample.schedule_polls(env.client, env.now()) == 0
        assert len(env.client.read_topic(sample.TOPIC)) == count


def test_an_event_republished_with_its_source_and_id_is_not_delivered_again(
    sample: ModuleType, service: Any, tmp_path: Path
) -> None:
    """Duplicates path 1: after every step, every event of the topic so far is published
    again with the same ``source`` and ``id`` (what an at-least-once publisher does);
    the topic keeps one copy and the triggers get each event once."""
    table = wire(sample, tmp_path, service, rows=ROWS)
    republished: list[int] = []

    with tl.testing.TestEnv(sample.app, start=START) as env:

        def publish_everything_again() -> None:
            env.wait_for_consumers()
            first = env.client.read_topic(sample.TOPIC)
            if not first:
                return
            again = env.client.publish(sample.TOPIC, [p.event for p in first])
            assert again == [p.position for p in first]  # the first publications' positions
            republished.append(len(first))
            # Discovery's own repeat: the rows it offers again get their first ids.
            sample.discover_work_items(env.client, env.now())

        run_to_the_end(env, table, publish_everything_again)
        env.wait_for_consumers()
        assert sum(republished) > 100
        check_outcome(sample, env, table, service)
        assert service.stats()["submit_calls"] == 7
        delivered = Counter(DELIVERIES)
        assert len(delivered) == sum(PUBLISHED.values())
        assert set(delivered.values()) == {1}  # every event delivered once, none twice


def test_every_event_delivered_again_to_every_trigger_changes_nothing(
    sample: ModuleType, service: Any, tmp_path: Path
) -> None:
    """Duplicates path 2: after every third tick the whole topic is replayed from its start to
    every trigger, racing the first deliveries still in flight; at the end once more.
    Each handler sees every event at least twice, at every stage of its stream; the
    outcome is the one of a run without duplicates."""
    table = wire(sample, tmp_path, service, rows=ROWS)
    replays: list[int] = []
    ticks: list[datetime] = []
    with tl.testing.TestEnv(sample.app, start=START) as env:

        def replay_everything() -> None:
            # Every third tick (all of them would be quadratic): the topic so far, again.
            ticks.append(env.now())
            if len(ticks) % 3 == 1:
                replays.append(env.client.replay_topic(sample.TOPIC))

        run_to_the_end(env, table, replay_everything)
        env.wait_for_consumers()
        streams = {k: env.client.events.read_stream(sample.stream_for(k)) for k in ROWS}
        # The last events (the completions) were not replayed yet: once more, all of it.
        assert env.client.replay_topic(sample.TOPIC) > 0
        env.wait_for_consumers()
        # replay_topic answers how many subscriptions it rewound: every trigger, each time.
        assert len(replays) > 5 and set(replays) == {len(sample.app.event_triggers)}
        check_outcome(sample, env, table, service)
        assert {k: env.client.events.read_stream(sample.stream_for(k)) for k in ROWS} == streams
        # Only resubmits by a racing duplicate may reach the service, under its key.
        assert service.stats()["submissions"] == 7
        delivered = Counter(DELIVERIES)
        assert len(delivered) == sum(PUBLISHED.values())
        assert min(delivered.values()) >= 2  # every event delivered at least twice

        view = env.client.events.view("requests")
        before = {k: view.get(k) for k in ROWS}
        env.client.events.rebuild("requests")
        assert {k: view.get(k) for k in ROWS} == before


def test_a_refused_submission_is_dead_lettered_and_a_redrive_finishes_it(
    sample: ModuleType, service: Any, tmp_path: Path
) -> None:
    table = wire(sample, tmp_path, service, token="wrong")
    table.add("row-1", {"outcome": "Pass"})
    with tl.testing.TestEnv(sample.app, start=START) as env:
        step(env, timedelta(minutes=5))
        (letter,) = env.client.dead_letters(sample.TOPIC)
        assert letter.subscription == "SubmitJob"
        assert letter.event is not None and letter.event.id == "row-1/prepared/1"
        assert "401" in letter.last_delivery_outcome
        assert letter.delivery_attempts > 1
        assert service.stats()["submissions"] == 0
        stream = env.client.events.read_stream(sample.stream_for("row-1"))
        assert [e.type for e in stream] == ["RequestDiscovered", "SubmissionPrepared"]
        assert table.get("row-1").status == "Processing"

        fix_token(sample, service)
        assert env.client.redrive(sample.TOPIC, subscription="SubmitJob") == 1
        env.wait_for_consumers()
        for _ in range(30):
            if table.get("row-1").status == "Pass":
                break
            step(env, timedelta(minutes=1))
        assert table.get("row-1").status == "Pass"
        assert env.client.dead_letters(sample.TOPIC) == []
        assert service.stats()["submissions"] == 1
        stream = env.client.events.read_stream(sample.stream_for("row-1"))
        assert [e.type for e in stream] == STREAMS["row-pass"]


# -- as a user runs it --------------------------------------------------------------------


def test_taskloom_serve_beside_the_job_service_command(tmp_path: Path) -> None:
    """The README's commands: the job service and the intake CLI, ``taskloom serve``, the
    schedules triggered through the management API, the rows watched in the table."""
    with serving(tmp_path, "samples/submissions/app.py:app", poll_interval="0") as (
        http,
        db,
        store,
    ):

        def done() -> bool:
            # The poll scheduler runs every minute; rather than wait, run it now.
            answer = http.post("/schedules/SchedulePolls/trigger")
            assert answer.status_code < 300, answer.text
            rows = intake_rows(db)
            return all(r["status"] in ("Pass", "Fail") for r in rows)

        wait_until(done, "both rows to complete", 90)
    rows = intake_rows(db)
    assert [(r["row_key"], r["status"], r["attempts"]) for r in rows] == SERVED_ROWS
    client = tl.Client(store, hub="submissions-events")
    try:
        types = [e.type for e in client.events.read_stream("request-b")]
        assert types == [
            "RequestDiscovered",
            *RETRIED,
            *ONE_JOB,
            "JobTerminal",
            "RequestCompleted",
        ]
        published = Counter(p.event.type for p in client.read_topic("submissions"))
        assert published["workflow.request.completed.v1"] == 2
        assert published["workflow.job.submitted.v1"] == 3
    finally:
        client.close()
