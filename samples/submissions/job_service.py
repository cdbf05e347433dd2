"""The external job service of seed 002 (its ``ExternalService.Mock``), as a real HTTP
server with a deterministic status progression, and a small client for it.

Run it by hand::

    python -m samples.submissions.job_service --port 8090 [--token SECRET]

or in-process (tests)::

    service = JobService(port=0, token="secret").start()
    service.url            # http://127.0.0.1:<port>
    service.stats()        # counts of submissions and polls
    service.stop()

Endpoints (JSON in and out; with a token every route but ``/health`` needs
``Authorization: Bearer <token>``, else 401):

``POST /jobs``
    Submit a job: ``{"requestId": "row-1", "attempt": 1, "payload": {...}}``. The
    ``Idempotency-Key`` header (or an ``idempotencyKey`` field; default
    ``"<requestId>:<attempt>"``) makes a repeated submit answer the job it created the
    first time (200, ``"duplicate": true``) instead of creating another (201).
    Answers ``{"jobId": "job-000001", "status": "Created", ...}``.
``GET /jobs/{jobId}``
    The job's status. Every poll reports the current status, then advances the job one
    step (``polls_per_step`` polls per step): ``Created`` -> ``Inprogress`` -> the
    terminal outcome, which then stays. With the defaults a job answers ``Created``,
    ``Inprogress``, then its outcome from the third poll on.
``GET /stats``
    The counts :meth:`JobService.stats` returns.
``GET /health``
    ``{"ok": true}``, never behind the token.

The outcome of a job (``Pass``, ``Fail`` or ``FailCanRetry``) is chosen by what was
submitted, so a run is repeatable: the service's ``script`` (request id -> outcomes) wins,
else the payload's ``outcome`` field; either is one status or a list of them, one per
attempt (attempt N takes item N, the last one repeats). With neither, a job passes.

Unknown job: 404. Malformed JSON, a body that is not an object, a missing ``requestId``,
a bad ``attempt`` or an unknown outcome: 400. Each error body is ``{"error": "..."}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CREATED, INPROGRESS = "Created", "Inprogress"
PASS, FAIL, FAIL_CAN_RETRY = "Pass", "Fail", "FailCanRetry"
OUTCOMES = (PASS, FAIL, FAIL_CAN_RETRY)
STATUSES = (CREATED, INPROGRESS, *OUTCOMES)

__all__ = [
    "CREATED",
    "FAIL",
    "FAIL_CAN_RETRY",
    "INPROGRESS",
    "OUTCOMES",
    "PASS",
    "STATUSES",
    "Job",
    "JobService",
    "JobServiceClient",
    "JobServiceError",
    "choose_outcome",
    "main",
]


@dataclass
class Job:
    """One job the service created."""

    job_id: str
    request_id: str
    attempt: int
    idempotency_key: str
    outcome: str
    payload: Any
    status: str = CREATED
    polls: int = 0
    submit_calls: int = 1  # the create and every repeat with its idempotency key

    def view(self) -> dict[str, Any]:
        return {
            "jobId": self.job_id,
            "requestId": self.request_id,
            "attempt": self.attempt,
            "idempotencyKey": self.idempotency_key,
            "status": self.status,
            "polls": self.polls,
            "submitCalls": self.submit_calls,
        }


class BadRequest(ValueError):
    """The request is malformed (400)."""


def choose_outcome(
    request_id: str, attempt: int, payload: Any, script: Mapping[str, Any] | None = None
) -> str:
    """The terminal status of attempt ``attempt`` (1-based) of ``request_id``."""
    chosen: Any = None
    if script and request_id in script:
        chosen = script[request_id]
    elif isinstance(payload, Mapping):
        chosen = payload.get("outcome")
    if chosen is None:
        return PASS
    if isinstance(chosen, str):
        chosen = [chosen]
    if not isinstance(chosen, Sequence) or not chosen:
        raise BadRequest(f"outcome must be one of {', '.join(OUTCOMES)} or a list of them")
    outcome = chosen[min(attempt, len(chosen)) - 1]
    if outcome not in OUTCOMES:
        raise BadRequest(f"unknown outcome {outcome!r}: use one of {', '.join(OUTCOMES)}")
    return str(outcome)


class JobService:
    """The job service, served by a thread (``start``/``stop``, or a ``with`` block).

    ``token``: the bearer token every call must carry (None: no check).
    ``polls_per_step``: how many polls each of ``Created`` and ``Inprogress`` is reported.
    ``script``: request id -> outcome or outcomes per attempt (wins over the payload).
    ``lose_responses``: the first N new jobs are created but their submit answers 503,
    as if the response was lost, so the caller retries (with its idempotency key).
    """

    def __init__(
        self,
        port: int = 0,
        token: str | None = None,
        *,
        host: str = "127.0.0.1",
        polls_per_step: int = 1,
        script: Mapping[str, Any] | None = None,
        lose_responses: int = 0,
    ) -> None:
        if polls_per_step < 1:
            raise ValueError("polls_per_step must be at least 1")
        self.host = host
        self.port = port
        self.token = token
        self.polls_per_step = polls_per_step
        self.script = dict(script or {})
        self.lose_responses = lose_responses
        self.jobs: dict[str, Job] = {}
        self.unauthorized = 0  # calls refused with 401
        self._by_key: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the job service is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> JobService:
        service = self

        class Handler(_Handler):
            owner = service

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="job-service", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> JobService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """``submissions`` (jobs created), ``submit_calls`` (accepted submits, repeats
        included), ``polls``, ``unauthorized`` (401s), and ``jobs`` by id."""
        with self._lock:
            jobs = [job.view() for job in self.jobs.values()]
            return {
                "submissions": len(jobs),
                "submit_calls": sum(j["submitCalls"] for j in jobs),
                "polls": sum(j["polls"] for j in jobs),
                "unauthorized": self.unauthorized,
                "jobs": {j["jobId"]: j for j in jobs},
            }

    def jobs_for(self, request_id: str) -> list[Job]:
        """The jobs of one request, oldest first (one per attempt)."""
        with self._lock:
            return [j for j in self.jobs.values() if j.request_id == request_id]

    # -- the operations ---------------------------------------------------------------

    def submit(self, body: Any, idempotency_key: str | None = None) -> tuple[int, dict[str, Any]]:
        """Create a job (201) or return the one made under the same key (200)."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        request_id = body.get("requestId")
        if not isinstance(request_id, str) or not request_id:
            raise BadRequest("requestId (a non-empty string) is required")
        attempt = body.get("attempt", 1)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise BadRequest("attempt must be a positive integer")
        key = idempotency_key or body.get("idempotencyKey") or f"{request_id}:{attempt}"
        if not isinstance(key, str):
            raise BadRequest("idempotencyKey must be a string")
        payload = body.get("payload")
        with self._lock:
            existing = self._by_key.get(key)
            if existing is not None:
                job = self.jobs[existing]
                job.submit_calls += 1
                return 200, {**job.view(), "duplicate": True}
            outcome = choose_outcome(request_id, attempt, payload, self.script)
            job_id = f"job-{len(self.jobs) + 1:06d}"
            job = Job(job_id, request_id, attempt, key, outcome, payload)
            self.jobs[job_id] = job
            self._by_key[key] = job_id
            if self.lose_responses > 0:
                self.lose_responses -= 1
                return 503, {"error": "the response was lost (injected fault); retry"}
            return 201, {**job.view(), "duplicate": False}

    def poll(self, job_id: str) -> tuple[int, dict[str, Any]]:
        """Report the job's status, then advance it one step."""
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, {"error": f"no job {job_id!r}"}
            job.polls += 1
            view = job.view()
            if job.polls % self.polls_per_step == 0:
                if job.status == CREATED:
                    job.status = INPROGRESS
                elif job.status == INPROGRESS:
                    job.status = job.outcome
            return 200, view

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        ok = header == f"Bearer {self.token}"
        if not ok:
            with self._lock:
                self.unauthorized += 1
        return ok


class _Handler(BaseHTTPRequestHandler):
    owner: JobService
    server_version = "taskloom-job-service/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        pass

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="job-service"')
        self.end_headers()
        self.wfile.write(data)

    def _path(self) -> list[str]:
        return [p for p in self.path.split("?", 1)[0].split("/") if p]

    def _guard(self) -> bool:
        if self.owner.authorized(self.headers.get("Authorization")):
            return True
        self._send(401, {"error": "a valid 'Authorization: Bearer <token>' header is required"})
        return False

    def do_GET(self) -> None:
        parts = self._path()
        if parts == ["health"]:
            self._send(200, {"ok": True})
            return
        if not self._guard():
            return
        if parts == ["stats"]:
            self._send(200, self.owner.stats())
        elif len(parts) == 2 and parts[0] == "jobs":
            self._send(*self.owner.poll(parts[1]))
        elif parts == ["jobs"]:
            self._send(405, {"error": "POST /jobs submits a job; GET /jobs/{jobId} polls one"})
        else:
            self._send(404, {"error": f"no route GET {self.path}"})

    def do_POST(self) -> None:
        parts = self._path()
        if not self._guard():
            return
        if parts != ["jobs"]:
            self._send(404, {"error": f"no route POST {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            self._send(400, {"error": f"malformed JSON body: {exc}"})
            return
        try:
            status, answer = self.owner.submit(body, self.headers.get("Idempotency-Key"))
        except BadRequest as exc:
            self._send(400, {"error": str(exc)})
            return
        self._send(status, answer)


# -- the client the activities use ------------------------------------------------------


class JobServiceError(Exception):
    """The job service answered an error. ``status`` is the HTTP status (0: no answer);
    ``retryable`` is false for 4xx answers, which asking again will not change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"job service answered {status}: {message}" if status else message)
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        return not 400 <= self.status < 500


@dataclass(frozen=True)
class JobServiceClient:
    """Calls the job service at ``url`` with an optional bearer ``token``."""

    url: str
    token: str | None = None
    timeout: float = 30.0

    def submit(
        self, request_id: str, attempt: int, payload: Any, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Submit (idempotent under ``idempotency_key``, default ``requestId:attempt``);
        returns the job (``jobId``, ``status``, ``duplicate``, ...)."""
        key = idempotency_key or f"{request_id}:{attempt}"
        body = {"requestId": request_id, "attempt": attempt, "payload": payload}
        return self._call("POST", "/jobs", body, {"Idempotency-Key": key})

    def status(self, job_id: str) -> dict[str, Any]:
        """Poll one job: ``{"jobId", "status", ...}``."""
        return self._call("GET", f"/jobs/{job_id}")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url.rstrip("/") + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer: dict[str, Any] = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                text = json.loads(text).get("error", text)
            raise JobServiceError(exc.code, f"{method} {path}: {text}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise JobServiceError(0, f"{method} {path}: job service unreachable: {exc}") from None


# -- command line -----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m samples.submissions.job_service", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN'")
    parser.add_argument("--polls-per-step", type=int, default=1)
    parser.add_argument(
        "--script",
        default=None,
        help='JSON: request id -> outcome(s), e.g. \'{"row-2": ["FailCanRetry", "Pass"]}\'',
    )
    args = parser.parse_args(argv)
    service = JobService(
        args.port,
        args.token,
        host=args.host,
        polls_per_step=args.polls_per_step,
        script=json.loads(args.script) if args.script else None,
    )
    service.start()
    print(f"job service listening on {service.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        service.stop()


if __name__ == "__main__":
    main()
