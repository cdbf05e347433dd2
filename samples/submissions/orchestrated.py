"""Submissions (seed 002), the orchestration variant.

Seed 002 chains Event Grid handlers around an event store; here one durable
orchestration per work item runs the same flow, with its history as the record:

* ``DiscoverWorkItems`` (every 5 minutes) claims ``Unprocessed`` rows of the intake table
  (``intake.py``) and starts ``SubmissionOrchestrator`` for each, as instance
  ``submission-<row key>``: a start that comes twice finds the instance and does nothing.
  It also starts the instance of a row left ``Processing`` without one (a host that died
  between the claim and the start).
* ``SubmissionOrchestrator`` prepares the submission (``PrepareSubmission``), submits it
  to the job service (``SubmitJob``, idempotent under ``<row key>:<attempt>``), then polls
  it (``PollJob``) on a durable timer (``SUBMISSIONS_POLL_INTERVAL``, 300 s): ``Created``
  and ``Inprogress`` wait again; ``Pass`` and ``Fail`` are terminal; ``FailCanRetry``
  resubmits as attempt N+1 up to ``SUBMISSIONS_MAX_ATTEMPTS`` (3), then ends ``Fail``.
  ``CompleteRequest`` writes the terminal status back to the row.

A job service that refuses the call (a 4xx such as 401 for a wrong token) fails the
instance at once and leaves the row ``Processing``: fix the setting, then
``taskloom rewind submission-<row key>``. Unreachable services and 5xx answers are
retried on durable timers.

    python -m samples.submissions.job_service --port 8090 --token secret
    SUBMISSIONS_JOB_SERVICE_TOKEN=secret taskloom serve samples/submissions/orchestrated.py:app

Settings (environment variables, read when the first activity or tick needs them):

==================================  ==========================
``SUBMISSIONS_INTAKE_DB``           ``submissions-intake.db``
``SUBMISSIONS_JOB_SERVICE_URL``     ``http://127.0.0.1:8090``
``SUBMISSIONS_JOB_SERVICE_TOKEN``   none (no Authorization header)
``SUBMISSIONS_POLL_INTERVAL``       ``300`` (seconds)
``SUBMISSIONS_MAX_ATTEMPTS``        ``3``
``SUBMISSIONS_MAX_POLLS``           ``288`` (per attempt; then ``Fail``)
``SUBMISSIONS_BATCH_SIZE``          ``25`` (rows claimed per tick)
==================================  ==========================
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from intake import FAIL, PASS, PROCESSING, IntakeTable
from job_service import (
    CREATED,
    FAIL_CAN_RETRY,
    INPROGRESS,
    STATUSES,
    JobServiceClient,
    JobServiceError,
)
from settings import Settings, add_services

import taskloom as tl

app = tl.App("submissions")
log = logging.getLogger("submissions")

ORCHESTRATOR = "SubmissionOrchestrator"
INSTANCE_PREFIX = "submission-"
DISCOVERY_EVERY = timedelta(minutes=5)


def instance_id_for(row_key: str) -> str:
    """The orchestration instance of an intake row."""
    return f"{INSTANCE_PREFIX}{row_key}"


# -- settings and services (tests replace them with app.add_service) --------------------


add_services(app)


class SubmissionRejectedError(Exception):
    """The job service refused the call (4xx) or the work item cannot be submitted;
    asking again will not help, so it is not retried."""


def _retry_unless_rejected(details: tl.FailureDetails) -> bool:
    return not details.is_caused_by("SubmissionRejectedError")


SERVICE_RETRY = tl.RetryPolicy(
    first_retry_interval=timedelta(seconds=5),
    max_number_of_attempts=6,
    backoff_coefficient=2,
    max_retry_interval=timedelta(minutes=2),
    handle=_retry_unless_rejected,
)


# -- discovery (the seed's Discover timer) ----------------------------------------------


@app.schedule(every=DISCOVERY_EVERY, name="DiscoverWorkItems")
def discover_work_items(client: tl.Client, scheduled_time: datetime) -> None:
    intake: IntakeTable = app.service("intake")
    settings: Settings = app.service("settings")
    claimed = intake.claim(settings.batch_size, now=scheduled_time)
    claimed_keys = {item.row_key for item in claimed}
    # Rows an earlier tick claimed but whose start never happened (the host died
    # between the two): start them now. Rows whose instance exists (running, or failed
    # and waiting for an operator's rewind) are left alone.
    stranded = [
        item
        for item in intake.list_rows(PROCESSING)
        if item.row_key not in claimed_keys
        and client.get_status(instance_id_for(item.row_key)) is None
    ]
    started = 0
    for item in [*claimed, *stranded]:
        started += start_submission(client, item.row_key, item.payload, settings)
    if claimed or stranded:
        log.info(
            "discovery %s: claimed %d rows, restarted %d stranded, started %d",
            scheduled_time.isoformat(),
            len(claimed),
            len(stranded),
            started,
        )


def start_submission(client: tl.Client, row_key: str, payload: Any, settings: Settings) -> bool:
    """Start the row's orchestration unless its instance exists; True when started."""
    iid = instance_id_for(row_key)
    if client.get_status(iid) is not None:
        log.info("%s exists already; not starting it again", iid)
        return False
    work = {
        "row_key": row_key,
        "payload": payload,
        "poll_interval_seconds": settings.poll_interval.total_seconds(),
        "max_attempts": settings.max_attempts,
        "max_polls": settings.max_polls,
    }
    try:
        client.start_new(ORCHESTRATOR, work, instance_id=iid)
    except tl.InstanceExistsError:
        log.info("%s was started meanwhile; not starting it again", iid)
        return False
    return True


# -- activities -------------------------------------------------------------------------


@app.activity(name="PrepareSubmission")
def prepare_submission(work: dict[str, Any]) -> dict[str, Any]:
    """The submission for attempt N of a row: what the job service gets, and the
    idempotency key that makes a retried submit find the job it made."""
    payload = work["payload"]
    if not isinstance(payload, dict):
        raise SubmissionRejectedError(
            f"row {work['row_key']!r}: the payload must be a JSON object, not {payload!r}"
        )
    attempt = int(work["attempt"])
    return {
        "requestId": work["row_key"],
        "attempt": attempt,
        "payload": payload,
        "idempotencyKey": f"{work['row_key']}:{attempt}",
    }


def _service_call(what: str, call: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = call()
        return result
    except JobServiceError as exc:
        if not exc.retryable:
            raise SubmissionRejectedError(f"{what}: {exc}") from None
        raise


@app.activity(name="SubmitJob")
def submit_job(submission: dict[str, Any], *, job_service: JobServiceClient) -> dict[str, Any]:
    job = _service_call(
        f"submitting {submission['idempotencyKey']}",
        lambda: job_service.submit(
            submission["requestId"],
            submission["attempt"],
            submission["payload"],
            idempotency_key=submission["idempotencyKey"],
        ),
    )
    log.info(
        "%s: job %s%s",
        submission["idempotencyKey"],
        job["jobId"],
        " (already submitted)" if job.get("duplicate") else "",
    )
    return {"jobId": job["jobId"], "status": job.get("status", CREATED)}


@app.activity(name="PollJob")
def poll_job(job_id: str, *, job_service: JobServiceClient) -> dict[str, Any]:
    answer = _service_call(f"polling {job_id}", lambda: job_service.status(job_id))
    status = answer.get("status")
    if status not in STATUSES:
        raise SubmissionRejectedError(f"job {job_id}: unknown status {status!r}")
    return {"jobId": job_id, "status": status}


@app.activity(name="CompleteRequest")
def complete_request(result: dict[str, Any], *, intake: IntakeTable) -> dict[str, Any]:
    """Write the terminal status back (idempotent: a retry writes nothing new)."""
    row = intake.complete(
        result["row_key"],
        result["status"],
        attempts=result["attempts"],
        job_id=result.get("jobId"),
        detail=result.get("detail"),
    )
    return {"row_key": row.row_key, "status": row.status, "completed_at": row.completed_at}


# -- the orchestration ------------------------------------------------------------------


@app.orchestrator(name=ORCHESTRATOR)
def submission_orchestrator(ctx: tl.OrchestrationContext, work: dict[str, Any]) -> Any:
    row_key: str = work["row_key"]
    interval = timedelta(seconds=float(work.get("poll_interval_seconds", 300)))
    max_attempts = int(work.get("max_attempts", 3))
    max_polls = int(work.get("max_polls", 288))
    attempts: list[dict[str, Any]] = []
    attempt = 1
    status = ""
    job_id: str | None = None
    detail: str | None = None
    while True:
        ctx.set_custom_status({"stage": "Preparing", "attempt": attempt})
        try:
            submission = yield ctx.call_activity(
                prepare_submission,
                {"row_key": row_key, "payload": work["payload"], "attempt": attempt},
            )
        except tl.TaskFailedError as exc:
            status, detail = FAIL, f"not submitted: {exc.details.message}"
            break
        job = yield ctx.call_activity(submit_job, submission, retry_policy=SERVICE_RETRY)
        job_id = job["jobId"]
        status = job["status"]
        polls = 0
        while True:
            ctx.set_custom_status(
                {
                    "stage": "Polling",
                    "attempt": attempt,
                    "jobId": job_id,
                    "lastStatus": status,
                    "polls": polls,
                }
            )
            yield ctx.create_timer(ctx.current_utc_datetime + interval)
            polled = yield ctx.call_activity(poll_job, job_id, retry_policy=SERVICE_RETRY)
            status, polls = polled["status"], polls + 1
            if status not in (CREATED, INPROGRESS):
                break
            if polls >= max_polls:
                detail = f"job {job_id} still {status} after {polls} polls"
                status = FAIL
                break
        attempts.append({"attempt": attempt, "jobId": job_id, "status": status, "polls": polls})
        if status == FAIL_CAN_RETRY and attempt < max_attempts:
            attempt += 1
            continue
        if status == FAIL_CAN_RETRY:
            detail = f"FailCanRetry on all {max_attempts} attempts"
        break
    terminal = PASS if status == PASS else FAIL
    result = {
        "row_key": row_key,
        "status": terminal,
        "attempts": len(attempts),
        "jobId": job_id,
        "detail": detail or f"job {job_id}: {status}",
    }
    ctx.set_custom_status({"stage": "Completing", "status": terminal})
    yield ctx.call_activity(complete_request, result)
    ctx.set_custom_status({"stage": "Done", "status": terminal})
    if not ctx.is_replaying:
        log.info("%s: %s after %d attempts", ctx.instance_id, terminal, len(attempts))
    return {**result, "history": attempts}
