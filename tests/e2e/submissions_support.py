"""What the two tests of samples/submissions share (``app.py``, the event-driven variant,
and ``orchestrated.py``): the rows, the job service on loopback, the wiring of the
services into the sample's app, and the sample run as a user runs it (the job service's
command, the intake CLI, ``taskloom serve``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 31, 9, 0, 1, tzinfo=UTC)
TOKEN = "s3cret"

ROWS: dict[str, Any] = {
    "row-pass": {"outcome": "Pass", "amount": 10},
    "row-fail": {"outcome": "Fail"},
    "row-retry": {"outcome": ["FailCanRetry", "Pass"]},
    "row-exhausted": {"outcome": "FailCanRetry"},
    "row-bad": ["not", "an", "object"],
}

#: The rows ``serving`` adds, as they end.
SERVED_ROWS = [("a", "Pass", 1), ("b", "Fail", 2)]


def wait_until(read: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        time.sleep(0.02)


@contextmanager
def running_job_service(**options: Any) -> Iterator[Any]:
    """The sample's job service on loopback, with ``TOKEN`` (import the sample first: that
    puts its folder on sys.path)."""
    import job_service

    with job_service.JobService(port=0, token=TOKEN, **options) as s:
        yield s


def wire(
    sample: ModuleType,
    tmp_path: Path,
    service: Any,
    token: str = TOKEN,
    rows: dict[str, Any] | None = None,
) -> Any:
    """Inject the intake file (holding ``rows``) and the job service client; returns the
    intake table."""
    import intake
    import job_service

    table = intake.IntakeTable(tmp_path / "intake.db")
    if rows:
        table.add_many(rows.items())
    sample.app.add_service("intake", table)
    sample.app.add_service("job_service", job_service.JobServiceClient(service.url, token))
    sample.app.add_service("settings", sample.Settings())  # 5-minute polls, 3 attempts
    return table


def fix_token(sample: ModuleType, service: Any) -> None:
    """Give the sample's app a job service client with the right token (after ``wire``
    with a wrong one)."""
    import job_service

    sample.app.add_service("job_service", job_service.JobServiceClient(service.url, TOKEN))


def check_one_job_per_attempt(service: Any) -> None:
    """The job service saw one job per attempt of ``ROWS``, none twice, three polls each,
    and no call without the token."""
    stats = service.stats()
    assert (stats["submissions"], stats["polls"]) == (7, 21)
    assert stats["unauthorized"] == 0
    per_row = {k: [j.attempt for j in service.jobs_for(k)] for k in ROWS}
    assert per_row == {
        "row-pass": [1],
        "row-fail": [1],
        "row-retry": [1, 2],
        "row-exhausted": [1, 2, 3],
        "row-bad": [],
    }


@contextmanager
def serving(
    tmp_path: Path, app_path: str, poll_interval: str
) -> Iterator[tuple[httpx.Client, str, str]]:
    """The README's commands: the job service's, the intake CLI's (rows ``a`` and ``b``)
    and ``taskloom serve app_path``, the discovery triggered through the management API.
    Yields that API's client, the intake file and the store URL; on leaving, stops both
    processes and checks that ``taskloom serve`` exited cleanly."""
    job_log = (tmp_path / "job-service.log").open("w")
    jobs = subprocess.Popen(
        [sys.executable, "-m", "samples.submissions.job_service", "--port", "0", "--token", TOKEN],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=job_log,
        text=True,
    )
    server: subprocess.Popen[str] | None = None
    serve_log = (tmp_path / "serve.log").open("w")
    db = str(tmp_path / "intake.db")
    try:
        assert jobs.stdout is not None
        job_url = jobs.stdout.readline().split()[-1]
        assert job_url.startswith("http://127.0.0.1:"), job_url
        intake_cli = [sys.executable, "-m", "samples.submissions.intake", db, "add"]
        for args in (
            ["a", "--outcome", "Pass"],
            ["b", "--outcome", "FailCanRetry", "--outcome", "Fail"],
        ):
            subprocess.run(
                [*intake_cli, *args], cwd=ROOT, check=True, timeout=60, capture_output=True
            )

        port = _free_port()
        env = {
            **os.environ,
            "SUBMISSIONS_INTAKE_DB": db,
            "SUBMISSIONS_JOB_SERVICE_URL": job_url,
            "SUBMISSIONS_JOB_SERVICE_TOKEN": TOKEN,
            "SUBMISSIONS_POLL_INTERVAL": poll_interval,
        }
        store = f"sqlite:///{tmp_path / 'taskloom.db'}"
        command = [sys.executable, "-m", "taskloom", "serve", app_path]
        server = subprocess.Popen(
            [*command, "--store", store, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=serve_log,
            text=True,
        )
        base = f"http://127.0.0.1:{port}/runtime/webhooks/durabletask"
        with httpx.Client(base_url=base, timeout=10) as http:
            wait_until(lambda: _reachable(http, server, tmp_path), "taskloom serve to listen")
            triggered = http.post("/schedules/DiscoverWorkItems/trigger")
            assert triggered.status_code < 300, triggered.text
            yield http, db, store
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        jobs.terminate()
        jobs.wait(10)
        job_log.close()
        serve_log.close()
    assert server.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]


def intake_rows(db: str) -> list[dict[str, Any]]:
    """The intake table's rows, as the intake CLI lists them."""
    listed = subprocess.run(
        [sys.executable, "-m", "samples.submissions.intake", db, "list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in listed.stdout.splitlines()]


def _reachable(http: httpx.Client, server: subprocess.Popen[str], tmp_path: Path) -> bool:
    if server.poll() is not None:
        raise AssertionError(f"taskloom serve exited: {(tmp_path / 'serve.log').read_text()}")
    try:
        return http.get("/instances").status_code == 200
    except httpx.TransportError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
