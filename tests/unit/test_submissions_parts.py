"""samples/submissions' parts alone: the job service over real loopback HTTP (progression,
outcomes, idempotency, bearer token, 4xx errors) and the intake table (atomic claims,
idempotent write-back, the CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "samples" / "submissions") not in sys.path:
    sys.path.insert(0, str(ROOT / "samples" / "submissions"))

import intake  # noqa: E402
import job_service  # noqa: E402
from intake import IntakeConflictError, IntakeTable, UnknownRowError  # noqa: E402
from job_service import JobService, JobServiceClient, JobServiceError  # noqa: E402


@pytest.fixture
def service() -> Iterator[JobService]:
    with JobService(port=0, token="s3cret", script={"scripted": ["FailCanRetry", "Pass"]}) as s:
        yield s


def raw(
    url: str, method: str = "GET", body: bytes | None = None, token: str | None = "s3cret"
) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- the job service ----------------------------------------------------------------------


def test_status_progresses_one_step_per_poll_to_the_payloads_outcome(service: JobService) -> None:
    client = JobServiceClient(service.url, "s3cret")
    for outcome in ("Pass", "Fail", "FailCanRetry"):
        job = client.submit(f"r-{outcome}", 1, {"outcome": outcome})
        assert job["status"] == "Created" and job["duplicate"] is False
        seen = [client.status(job["jobId"])["status"] for _ in range(4)]
        assert seen == ["Created", "Inprogress", outcome, outcome]
    default = client.submit("r-default", 1, {})
    assert [client.status(default["jobId"])["status"] for _ in range(3)][-1] == "Pass"
    stats = service.stats()
    assert (stats["submissions"], stats["submit_calls"], stats["polls"]) == (4, 4, 15)


def test_outcome_lists_are_per_attempt_and_the_script_wins(service: JobService) -> None:
    client = JobServiceClient(service.url, "s3cret")

    def final(request_id: str, attempt: int, payload: Any) -> str:
        job_id = client.submit(request_id, attempt, payload)["jobId"]
        return [client.status(job_id)["status"] for _ in range(3)][-1]

    listed = {"outcome": ["FailCanRetry", "Fail"]}
    assert [final("listed", n, listed) for n in (1, 2, 3)] == ["FailCanRetry", "Fail", "Fail"]
    # the script names "scripted": it wins over the payload
    assert [final("scripted", n, {"outcome": "Fail"}) for n in (1, 2)] == ["FailCanRetry", "Pass"]


def test_polls_per_step_slows_the_progression() -> None:
    with JobService(polls_per_step=2) as slow:
        client = JobServiceClient(slow.url)
        job_id = client.submit("r", 1, {"outcome": "Fail"})["jobId"]
        seen = [client.status(job_id)["status"] for _ in range(5)]
        assert seen == ["Created", "Created", "Inprogress", "Inprogress", "Fail"]


def test_a_repeated_submit_with_its_idempotency_key_returns_the_same_job(
    service: JobService,
) -> None:
    client = JobServiceClient(service.url, "s3cret")
    first = client.submit("row-1", 1, {}, idempotency_key="row-1:1")
    again = client.submit("row-1", 1, {}, idempotency_key="row-1:1")
    other = client.submit("row-1", 2, {})  # default key row-1:2
    assert again["jobId"] == first["jobId"] and again["duplicate"] is True
    assert other["jobId"] != first["jobId"]
    assert [j.attempt for j in service.jobs_for("row-1")] == [1, 2]
    stats = service.stats()
    assert (stats["submissions"], stats["submit_calls"]) == (2, 3)
    assert stats["jobs"][first["jobId"]]["submitCalls"] == 2


def test_a_lost_response_still_creates_the_job_once() -> None:
    with JobService(lose_responses=1) as lossy:
        client = JobServiceClient(lossy.url)
        with pytest.raises(JobServiceError) as lost:
            client.submit("row-1", 1, {})
        assert lost.value.status == 503 and lost.value.retryable
        job = client.submit("row-1", 1, {})
        assert job["duplicate"] is True and lossy.stats()["submissions"] == 1


def test_the_bearer_token_is_checked(service: JobService) -> None:
    body = json.dumps({"requestId": "r"}).encode()
    assert raw(service.url + "/jobs", "POST", body, token=None)[0] == 401
    assert raw(service.url + "/jobs", "POST", body, token="wrong")[0] == 401
    assert raw(service.url + "/stats", token="wrong")[0] == 401
    assert raw(service.url + "/health", token=None) == (200, {"ok": True})
    with pytest.raises(JobServiceError) as refused:
        JobServiceClient(service.url, "wrong").submit("r", 1, {})
    assert refused.value.status == 401 and not refused.value.retryable
    assert service.stats()["submissions"] == 0 and service.unauthorized == 4
    status, created = raw(service.url + "/jobs", "POST", body)
    assert status == 201 and created["jobId"] == "job-000001"


def test_bad_input_gets_clear_4xx_answers(service: JobService) -> None:
    url = service.url
    status, answer = raw(url + "/jobs/job-999999")
    assert status == 404 and "job-999999" in answer["error"]
    status, answer = raw(url + "/jobs", "POST", b"{not json")
    assert status == 400 and "malformed JSON" in answer["error"]
    status, answer = raw(url + "/jobs", "POST", b"[1, 2]")
    assert status == 400 and "JSON object" in answer["error"]
    status, answer = raw(url + "/jobs", "POST", b'{"attempt": 1}')
    assert status == 400 and "requestId" in answer["error"]
    status, answer = raw(url + "/jobs", "POST", b'{"requestId": "r", "attempt": 0}')
    assert status == 400 and "attempt" in answer["error"]
    bad_outcome = b'{"requestId": "r", "payload": {"outcome": "Maybe"}}'
    status, answer = raw(url + "/jobs", "POST", bad_outcome)
    assert status == 400 and "Maybe" in answer["error"]
    assert raw(url + "/nowhere")[0] == 404
    assert service.stats()["submissions"] == 0


def test_the_command_line_serves_on_the_port_it_prints() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "samples.submissions.job_service", "--port", "0", "--token", "t"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("job service listening on http://127.0.0.1:"), line
        client = JobServiceClient(line.split()[-1], "t")
        job = client.submit("cli", 1, {"outcome": "Fail"})
        assert client.status(job["jobId"])["status"] == "Created"
        assert client.stats()["polls"] == 1
    finally:
        server.terminate()
        server.wait(10)


# -- the intake table ---------------------------------------------------------------------


def test_claim_moves_unprocessed_rows_oldest_first_and_complete_is_idempotent(
    tmp_path: Path,
) -> None:
    table = IntakeTable(tmp_path / "intake.db")
    assert table.add_many([(f"row-{n}", {"n": n}) for n in range(3)]) == 3
    assert table.add("row-0", {"other": True}) is False  # an existing key is left alone
    first = table.claim(2)
    assert [(i.row_key, i.status, i.claims) for i in first] == [
        ("row-0", "Processing", 1),
        ("row-1", "Processing", 1),
    ]
    assert first[0].payload == {"n": 0}
    assert [i.row_key for i in table.claim(5)] == ["row-2"]
    assert table.claim(5) == []

    done = table.complete("row-0", "Pass", attempts=1, job_id="job-1", detail="ok")
    assert (done.status, done.attempts, done.job_id) == ("Pass", 1, "job-1")
    again = table.complete("row-0", "Pass", attempts=7)  # a retried write-back
    assert again == done
    with pytest.raises(IntakeConflictError):
        table.complete("row-0", "Fail", attempts=1)
    with pytest.raises(UnknownRowError):
        table.complete("missing", "Pass", attempts=1)
    with pytest.raises(ValueError):
        table.complete("row-1", "Processing", attempts=1)
    assert table.counts() == {"Pass": 1, "Processing": 2}
    assert [i.row_key for i in table.list_rows("Processing")] == ["row-1", "row-2"]

    table.reset("row-0")
    assert [i.row_key for i in table.claim(5)] == ["row-0"]
    assert table.get("row-0") is not None and table.get("row-0").claims == 2  # type: ignore[union-attr]


def test_concurrent_claims_never_share_a_row(tmp_path: Path) -> None:
    path = tmp_path / "intake.db"
    IntakeTable(path).add_many([(f"row-{n:03d}", {}) for n in range(200)])
    claimed: list[list[str]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def discover() -> None:
        table = IntakeTable(path)  # a connection of its own, as another host has
        barrier.wait()
        while batch := table.claim(7):
            with lock:
                claimed.append([i.row_key for i in batch])

    threads = [threading.Thread(target=discover) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    keys = [k for batch in claimed for k in batch]
    assert len(keys) == len(set(keys)) == 200


def test_the_intake_command_line(tmp_path: Path) -> None:
    db = str(tmp_path / "intake.db")

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "samples.submissions.intake", db, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "added 2 of 2" in cli("add", "a", "b", "--outcome", "FailCanRetry", "--outcome", "Pass")
    assert "added 1 of 1" in cli("add", "c", "--payload", '{"size": 3}')
    rows = [json.loads(line) for line in cli("list").splitlines()]
    assert [(r["row_key"], r["status"]) for r in rows] == [
        ("a", "Unprocessed"),
        ("b", "Unprocessed"),
        ("c", "Unprocessed"),
    ]
    assert rows[0]["payload"] == {"outcome": ["FailCanRetry", "Pass"]}
    IntakeTable(db).claim(1)
    assert [
        json.loads(line)["row_key"] for line in cli("list", "--status", "Processing").splitlines()
    ] == ["a"]
    assert "reset 1" in cli("reset", "a")
    assert cli("list", "--status", "Processing") == ""


def test_modules_export_what_they_document() -> None:
    for module in (intake, job_service):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
