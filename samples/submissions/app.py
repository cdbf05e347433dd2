"""Submissions (seed 002), the event-driven variant: the seed's own design.

Every work item is an event-sourced aggregate, the stream ``request-<row key>``; the
steps talk to each other only through CloudEvents on the topic ``submissions``, the way
the seed's Functions talk through an Event Grid custom topic:

* ``DiscoverWorkItems`` (every 5 minutes) claims ``Unprocessed`` rows of the intake
  table (``intake.py``) and publishes ``workflow.request.discovered.v1`` with the id
  ``<row key>/discovered``: a discovery that publishes a row again is a no-op (the topic
  keeps one event per ``source`` + ``id``). It republishes rows left ``Processing``
  without a stream (a host that died between the claim and the publish).
* ``PrepareSubmission`` (on discovered) appends ``RequestDiscovered`` and
  ``SubmissionPrepared`` (attempt 1) to the new stream (expected version ``NO_STREAM``)
  and publishes ``workflow.submission.prepared.v1``.
* ``SubmitJob`` (on prepared) submits attempt N to the job service (idempotency key
  ``<row key>:<attempt>``), appends ``JobSubmitted`` with the first poll's time and
  publishes ``workflow.job.submitted.v1``.
* ``SchedulePolls`` (every ``SUBMISSIONS_POLL_SCHEDULER_SECONDS``, 60) asks the
  ``requests`` projection which jobs are due (``status="Submitted"``,
  ``next_poll_at <= now``) and publishes ``workflow.job.pollrequested.v1`` for each, with
  the id ``<row key>/poll/<stream version>``, so two ticks that find the same due job
  publish one event.
* ``PollExternalJob`` (on pollrequested) asks the job service: ``Created`` and
  ``Inprogress`` append ``JobPolled`` with the next poll's time; ``Pass`` and ``Fail``
  append ``JobTerminal`` and publish ``workflow.job.terminal.v1``; ``FailCanRetry``
  appends ``JobFailedRetryable`` and ``SubmissionPrepared`` (attempt N+1) and publishes
  ``workflow.submission.prepared.v1``, up to ``SUBMISSIONS_MAX_ATTEMPTS`` (3); then it is
  a terminal ``Fail``.
* ``CompleteRequest`` (on terminal) writes the terminal status back to the intake row,
  appends ``RequestCompleted`` and publishes ``workflow.request.completed.v1``.

Delivery is at least once, so every handler is idempotent twice over. It folds the
stream and does nothing when the stream is past the step the event asks for (a repeat,
a replay of the topic, or a stale poll request). And what it writes carries ids derived
from the incoming event's ``source`` + ``id`` (stream events) or from the stream
(published events), with the expected version it read: a second delivery racing the
first writes nothing new. Every handler declares ``events``, so its appends and
publishes commit with the delivery's acknowledgement, or not at all. Calls to the
outside (the job service, the intake table) are idempotent on their own.

A job service that keeps refusing (a 401 for a wrong token) is retried on Event Grid's
schedule, then the event is dead-lettered: fix the setting, then
``client.redrive("submissions")`` (or the HTTP API).

    python -m samples.submissions.job_service --port 8090 --token secret
    SUBMISSIONS_JOB_SERVICE_TOKEN=secret taskloom serve samples/submissions/app.py:app

Settings (environment variables, read when a handler first needs them; the poll
scheduler's interval when the module is imported):

=======================================  ==========================
``SUBMISSIONS_INTAKE_DB``                ``submissions-intake.db``
``SUBMISSIONS_JOB_SERVICE_URL``          ``http://127.0.0.1:8090``
``SUBMISSIONS_JOB_SERVICE_TOKEN``        none (no Authorization header)
``SUBMISSIONS_POLL_INTERVAL``            ``300`` (seconds between polls of a job)
``SUBMISSIONS_POLL_SCHEDULER_SECONDS``   ``60`` (how often due jobs are looked up)
``SUBMISSIONS_MAX_ATTEMPTS``             ``3``
``SUBMISSIONS_MAX_POLLS``                ``288`` (per attempt; then ``Fail``)
``SUBMISSIONS_BATCH_SIZE``               ``25`` (rows claimed per tick)
=======================================  ==========================
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from intake import FAIL, PASS, PROCESSING, IntakeTable
from job_service import (
    CREATED,
    FAIL_CAN_RETRY,
    INPROGRESS,
    STATUSES,
    JobServiceClient,
)
from settings import Settings, add_services, env

import taskloom as tl

app = tl.App("submissions-events")
log = logging.getLogger("submissions.events")

TOPIC = "submissions"
SOURCE = "/samples/submissions"
STREAM_PREFIX = "request-"
DISCOVERY_EVERY = timedelta(minutes=5)

DISCOVERED = "workflow.request.discovered.v1"
PREPARED = "workflow.submission.prepared.v1"
SUBMITTED = "workflow.job.submitted.v1"
POLL_REQUESTED = "workflow.job.pollrequested.v1"
TERMINAL = "workflow.job.terminal.v1"
COMPLETED = "workflow.request.completed.v1"
EVENT_TYPES = (DISCOVERED, PREPARED, SUBMITTED, POLL_REQUESTED, TERMINAL, COMPLETED)

# Read-model statuses (the ``requests`` projection's ``status`` field).
S_PREPARED, S_SUBMITTED, S_TERMINAL, S_COMPLETED = "Prepared", "Submitted", "Terminal", "Completed"


def stream_for(row_key: str) -> str:
    """The event stream of an intake row."""
    return f"{STREAM_PREFIX}{row_key}"


# -- settings and services (settings.py; tests replace them with app.add_service) --------

add_services(app)

POLL_SCHEDULER_EVERY = timedelta(seconds=float(env("POLL_SCHEDULER_SECONDS", "60")))


# -- the aggregate: one reducer for the projection and for the handlers' decisions -------


def _stamp(moment: datetime) -> str:
    """ISO 8601 UTC with microseconds: such strings sort as the times they name."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def evolve(doc: dict[str, Any] | None, event_type: str, data: Any, version: int) -> dict[str, Any]:
    """The state of a request after one of its stream's events (a pure function)."""
    state: dict[str, Any] = dict(doc or {})
    state["version"] = version
    if event_type == "RequestDiscovered":
        state.update(
            row_key=data["rowKey"],
            payload=data["payload"],
            status="Discovered",
            attempt=0,
            job_id=None,
            job_status=None,
            polls=0,
            next_poll_at=None,
            terminal_status=None,
            detail=None,
            discovered_at=data["discoveredAt"],
            completed_at=None,
        )
    elif event_type == "SubmissionPrepared":
        state.update(status=S_PREPARED, attempt=data["attempt"], job_id=None, job_status=None)
        state.update(polls=0, next_poll_at=None)
    elif event_type == "JobSubmitted":
        state.update(status=S_SUBMITTED, job_id=data["jobId"], job_status=data["status"])
        state.update(polls=0, next_poll_at=data["nextPollAt"])
    elif event_type == "JobPolled":
        state.update(job_status=data["status"], polls=data["polls"])
        state.update(next_poll_at=data["nextPollAt"])
    elif event_type == "JobFailedRetryable":
        state.update(job_status=FAIL_CAN_RETRY, polls=data["polls"], next_poll_at=None)
    elif event_type == "JobTerminal":
        state.update(status=S_TERMINAL, terminal_status=data["status"], detail=data["detail"])
        state.update(job_status=data.get("jobStatus"), next_poll_at=None)
        if "polls" in data:
            state["polls"] = data["polls"]
    elif event_type == "RequestCompleted":
        state.update(status=S_COMPLETED, completed_at=data["completedAt"])
    return state


def fold(events: list[tl.RecordedEvent]) -> dict[str, Any] | None:
    """The current state of a request from its stream (None: no stream)."""
    state: dict[str, Any] | None = None
    for event in events:
        state = evolve(state, event.type, event.data, event.version)
    return state


@app.projection("requests", inline=True, indexes=["status", "next_poll_at"])
def requests_view(event: tl.RecordedEvent, view: tl.View) -> None:
    """The read model: one document per request, keyed by row key (rebuildable)."""
    if not event.stream_id.startswith(STREAM_PREFIX):
        return  # the topic's own log streams, and anything else in the hub
    key = event.stream_id.removeprefix(STREAM_PREFIX)
    doc = evolve(view.get(key), event.type, event.data, event.version)
    doc.pop("payload", None)  # the read model holds what operations query, not the work
    view.put(key, doc)


# -- helpers --------------------------------------------------------------------------


def _now(client: tl.Client) -> datetime:
    """The host's clock (the virtual one under TestEnv)."""
    return client.async_client.clock.now()


def _event_id(cause: tl.CloudEvent, n: int) -> str:
    """The id of the n-th stream event a handler writes for ``cause``: the same for
    every delivery of that CloudEvent (by ``source`` + ``id``), so a repeat is
    recognised by the event store."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cause.source}\n{cause.id}\n{n}"))


def _new_events(cause: tl.CloudEvent, *items: tuple[str, dict[str, Any]]) -> list[tl.NewEvent]:
    meta = {"causationId": cause.id, "causationSource": cause.source, "causationType": cause.type}
    return [
        tl.NewEvent(kind, data, id=_event_id(cause, n), metadata=meta)
        for n, (kind, data) in enumerate(items)
    ]


def _cloud_event(kind: str, row_key: str, suffix: str, data: dict[str, Any]) -> tl.CloudEvent:
    return tl.CloudEvent(
        kind,
        SOURCE,
        {"requestId": row_key, **data},
        id=f"{row_key}/{suffix}",
        subject=f"requests/{row_key}",
    )


def _load(events: tl.EventStore, row_key: str) -> dict[str, Any] | None:
    return fold(events.read_stream(stream_for(row_key)))


def _skip(handler: str, event: tl.CloudEvent, why: str) -> None:
    log.info("%s: %s %s is a no-op (%s)", handler, event.type, event.id, why)


def _state_at(
    handler: str, event: tl.CloudEvent, events: tl.EventStore, why: str, **fields: Any
) -> dict[str, Any] | None:
    """The state of the event's request when its ``fields`` have these values; else None,
    logged as a no-op (``why``), also when the request has no stream."""
    state = _load(events, event.data["requestId"])
    if state is None or any(state[name] != value for name, value in fields.items()):
        _skip(handler, event, why)
        return None
    return state


def _job_service_and_settings() -> tuple[JobServiceClient, Settings]:
    return app.service("job_service"), app.service("settings")


# -- discovery (the seed's Discover timer) ----------------------------------------------


@app.schedule(every=DISCOVERY_EVERY, name="DiscoverWorkItems")
def discover_work_items(client: tl.Client, scheduled_time: datetime) -> int:
    """Claim ``Unprocessed`` rows and publish one discovered event per row; returns how
    many events were offered (repeats included)."""
    intake: IntakeTable = app.service("intake")
    settings: Settings = app.service("settings")
    claimed = intake.claim(settings.batch_size, now=scheduled_time)
    claimed_keys = {item.row_key for item in claimed}
    # Rows an earlier tick claimed but whose discovery never made a stream (the host
    # died between the claim and the publish, or the event is still on its way): offer
    # them again. The topic keeps one event per id, so this is safe either way.
    stranded = [
        item
        for item in intake.list_rows(PROCESSING)
        if item.row_key not in claimed_keys
        and client.events.stream_version(stream_for(item.row_key)) == 0
    ]
    items = [*claimed, *stranded]
    if items:
        client.publish(
            TOPIC,
            [
                _cloud_event(
                    DISCOVERED,
                    item.row_key,
                    "discovered",
                    {"payload": item.payload, "claimedAt": item.claimed_at},
                )
                for item in items
            ],
        )
        log.info(
            "discovery %s: claimed %d rows, offered %d stranded",
            scheduled_time.isoformat(),
            len(claimed),
            len(stranded),
        )
    return len(items)


# -- handlers (the seed's Event Grid-triggered Functions) ---------------------------------


@app.event_trigger(TOPIC, name="PrepareSubmission", types=[DISCOVERED])
def prepare_submission(event: tl.CloudEvent, client: tl.Client, *, events: tl.EventStore) -> None:
    row_key = event.data["requestId"]
    stream = stream_for(row_key)
    if events.stream_version(stream) > 0:
        _skip("PrepareSubmission", event, f"{stream} exists")
        return
    payload = event.data.get("payload")
    discovered = {
        "rowKey": row_key,
        "payload": payload,
        "discoveredAt": _stamp(_now(client)),
        "claimedAt": event.data.get("claimedAt"),
    }
    if not isinstance(payload, dict):
        detail = f"not submitted: the payload must be a JSON object, not {payload!r}"
        terminal = {"status": FAIL, "attempts": 0, "jobId": None, "detail": detail}
        events.append(
            stream,
            _new_events(event, ("RequestDiscovered", discovered), ("JobTerminal", terminal)),
            expected_version=tl.NO_STREAM,
        )
        client.publish(TOPIC, _cloud_event(TERMINAL, row_key, "terminal", terminal))
        return
    events.append(
        stream,
        _new_events(
            event, ("RequestDiscovered", discovered), ("SubmissionPrepared", {"attempt": 1})
        ),
        expected_version=tl.NO_STREAM,
    )
    client.publish(TOPIC, _cloud_event(PREPARED, row_key, "prepared/1", {"attempt": 1}))


@app.event_trigger(TOPIC, name="SubmitJob", types=[PREPARED])
def submit_job(event: tl.CloudEvent, client: tl.Client, *, events: tl.EventStore) -> None:
    row_key, attempt = event.data["requestId"], int(event.data["attempt"])
    why = f"the request is past attempt {attempt}'s submission"
    state = _state_at("SubmitJob", event, events, why, status=S_PREPARED, attempt=attempt)
    if state is None:
        return
    job_service, settings = _job_service_and_settings()
    key = f"{row_key}:{attempt}"
    job = job_service.submit(row_key, attempt, state["payload"], idempotency_key=key)
    log.info(
        "%s: job %s%s", key, job["jobId"], " (already submitted)" if job.get("duplicate") else ""
    )
    submitted = {
        "attempt": attempt,
        "jobId": job["jobId"],
        "status": job.get("status", CREATED),
        "idempotencyKey": key,
        "nextPollAt": _stamp(_now(client) + settings.poll_interval),
    }
    events.append(
        stream_for(row_key),
        _new_events(event, ("JobSubmitted", submitted)),
        expected_version=state["version"],
    )
    client.publish(
        TOPIC,
        _cloud_event(
            SUBMITTED, row_key, f"submitted/{attempt}", {"attempt": attempt, "jobId": job["jobId"]}
        ),
    )


@app.schedule(every=POLL_SCHEDULER_EVERY, name="SchedulePolls")
def schedule_polls(client: tl.Client, scheduled_time: datetime) -> int:
    """Publish a poll request for every job the projection says is due; returns how many
    were offered. The id names the stream version, so a job that is still due at the
    next tick (its poll not handled yet) gets no second request."""
    now = max(scheduled_time, _now(client))
    view = client.events.view("requests")
    due, after = [], None
    while True:
        page = view.query(status=S_SUBMITTED, next_poll_at__lte=_stamp(now), after_key=after)
        due.extend(page)
        if len(page) < 1000:
            break
        after = page[-1].key
    if due:
        client.publish(
            TOPIC,
            [
                _cloud_event(
                    POLL_REQUESTED,
                    row.key,
                    f"poll/{row.doc['version']}",
                    {
                        "version": row.doc["version"],
                        "attempt": row.doc["attempt"],
                        "jobId": row.doc["job_id"],
                    },
                )
                for row in due
            ],
        )
    return len(due)


@app.event_trigger(TOPIC, name="PollExternalJob", types=[POLL_REQUESTED])
def poll_external_job(event: tl.CloudEvent, client: tl.Client, *, events: tl.EventStore) -> None:
    row_key, version = event.data["requestId"], int(event.data["version"])
    why = f"the stream is no longer at version {version}"
    state = _state_at("PollExternalJob", event, events, why, version=version, status=S_SUBMITTED)
    if state is None:
        return
    job_service, settings = _job_service_and_settings()
    job_id, attempt = state["job_id"], state["attempt"]
    answer = job_service.status(job_id)
    status = answer.get("status")
    if status not in STATUSES:
        raise ValueError(f"job {job_id}: the job service answered an unknown status {status!r}")
    polls = state["polls"] + 1
    stream = stream_for(row_key)
    if status in (CREATED, INPROGRESS) and polls < settings.max_polls:
        polled = {
            "attempt": attempt,
            "jobId": job_id,
            "status": status,
            "polls": polls,
            "nextPollAt": _stamp(_now(client) + settings.poll_interval),
        }
        events.append(stream, _new_events(event, ("JobPolled", polled)), expected_version=version)
        return
    if status == FAIL_CAN_RETRY and attempt < settings.max_attempts:
        failed = {"attempt": attempt, "jobId": job_id, "polls": polls}
        events.append(
            stream,
            _new_events(
                event,
                ("JobFailedRetryable", failed),
                ("SubmissionPrepared", {"attempt": attempt + 1}),
            ),
            expected_version=version,
        )
        client.publish(
            TOPIC,
            _cloud_event(PREPARED, row_key, f"prepared/{attempt + 1}", {"attempt": attempt + 1}),
        )
        return
    if status in (CREATED, INPROGRESS):
        detail = f"job {job_id} still {status} after {polls} polls"
    elif status == FAIL_CAN_RETRY:
        detail = f"FailCanRetry on all {settings.max_attempts} attempts"
    else:
        detail = f"job {job_id}: {status}"
    terminal = {
        "status": PASS if status == PASS else FAIL,
        "jobStatus": status,
        "attempts": attempt,
        "jobId": job_id,
        "polls": polls,
        "detail": detail,
    }
    events.append(stream, _new_events(event, ("JobTerminal", terminal)), expected_version=version)
    client.publish(TOPIC, _cloud_event(TERMINAL, row_key, "terminal", terminal))


@app.event_trigger(TOPIC, name="CompleteRequest", types=[TERMINAL])
def complete_request(event: tl.CloudEvent, client: tl.Client, *, events: tl.EventStore) -> None:
    row_key = event.data["requestId"]
    why = "the request is not waiting for its completion"
    state = _state_at("CompleteRequest", event, events, why, status=S_TERMINAL)
    if state is None:
        return
    intake: IntakeTable = app.service("intake")
    now = _now(client)
    row = intake.complete(  # idempotent: a second write of the same status changes nothing
        row_key,
        state["terminal_status"],
        attempts=int(event.data["attempts"]),
        job_id=event.data.get("jobId"),
        detail=state["detail"],
        now=now,
    )
    completed = {"status": row.status, "completedAt": row.completed_at or _stamp(now)}
    events.append(
        stream_for(row_key),
        _new_events(event, ("RequestCompleted", completed)),
        expected_version=state["version"],
    )
    client.publish(
        TOPIC,
        _cloud_event(
            COMPLETED,
            row_key,
            "completed",
            {"status": row.status, "attempts": row.attempts, "jobId": row.job_id},
        ),
    )
