"""samples/submissions/orchestrated.py: the 5-minute discovery claims the intake rows and
starts one orchestration per row; each submits to a real job service on loopback, polls
it on durable timers and writes the terminal status back. On virtual time in TestEnv
(Pass, Fail, FailCanRetry then Pass, FailCanRetry past the limit, a bad payload, a lost
response, a wrong token then a rewind, a stranded claim), and once under a real
``taskloom serve`` beside the job service's command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from sample_loader import load_sample

import taskloom as tl
from taskloom import history as h

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


def wait_until(read: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        time.sleep(0.02)


@pytest.fixture
def sample() -> ModuleType:
    return load_sample("submissions", "orchestrated")


@pytest.fixture
def service(sample: ModuleType) -> Iterator[Any]:
    import job_service

    with job_service.JobService(port=0, token=TOKEN) as s:
        yield s


def wire(sample: ModuleType, tmp_path: Path, service: Any, token: str = TOKEN) -> Any:
    """Inject the intake file and the job service client; returns the intake table."""
    import intake
    import job_service

    table = intake.IntakeTable(tmp_path / "intake.db")
    sample.app.add_service("intake", table)
    sample.app.add_service("job_service", job_service.JobServiceClient(service.url, token))
    sample.app.add_service("settings", sample.Settings())  # 5-minute polls, 3 attempts
    return table


def instances(env: tl.testing.TestEnv) -> list[str]:
    page = env.client.query(instance_id_prefix="submission-")
    return sorted(s.instance_id for s in page.items)


def test_every_row_reaches_its_terminal_status_with_one_job_per_attempt(
    sample: ModuleType, service: Any, tmp_path: Path
) -> None:
    table = wire(sample, tmp_path, service)
    table.add_many(ROWS.items())
    with tl.testing.TestEnv(sample.app, start=START) as env:
        assert instances(env) == []  # nothing before the first tick
        env.advance(timedelta(minutes=5))
        expected = sorted(f"submission-{key}" for key in ROWS)
        wait_until(lambda: instances(env) == expected, "one instance per row")
        states = {
            iid.removeprefix("submission-"): env.client.wait_for_completion(iid, timeout=30)
            for iid in expected
        }
        assert {k: s.runtime_status for k, s in states.items()} == dict.fromkeys(
            ROWS, tl.Status.COMPLETED
        )
        outputs = {k: s.output for k, s in states.items()}
        assert {k: (o["status"], o["attempts"]) for k, o in outputs.items()} == {
            "row-pass": ("Pass", 1),
            "row-fail": ("Fail", 1),
            "row-retry": ("Pass", 2),
            "row-exhausted": ("Fail", 3),
            "row-bad": ("Fail", 0),
        }
        assert [a["status"] for a in outputs["row-retry"]["history"]] == ["FailCanRetry", "Pass"]
        assert outputs["row-exhausted"]["detail"] == "FailCanRetry on all 3 attempts"
        assert "payload must be a JSON object" in outputs["row-bad"]["detail"]
        assert all(a["polls"] == 3 for o in outputs.values() for a in o["history"])

        # The intake rows got their terminal statuses.
        rows = {i.row_key: i for i in table.list_rows()}
        assert {k: (r.status, r.attempts) for k, r in rows.items()} == {
            k: (o["status"], o["attempts"]) for k, o in outputs.items()
        }
        assert rows["row-retry"].job_id == outputs["row-retry"]["jobId"]

        # The job service saw one job per attempt, none twice, three polls each.
        stats = service.stats()
        assert (stats["submissions"], stats["submit_calls"], stats["polls"]) == (7, 7, 21)
        assert stats["unauthorized"] == 0
        per_row = {k: [j.attempt for j in service.jobs_for(k)] for k in ROWS}
        assert per_row == {
            "row-pass": [1],
            "row-fail": [1],
            "row-retry": [1, 2],
            "row-exhausted": [1, 2, 3],
            "row-bad": [],
        }
        # The polls waited on the 5-minute durable timer.
        history = env.client.get_history("submission-row-pass")
        timers = [e for e in history if isinstance(e, h.TimerCreated)]
        assert len(timers) == 3
        assert sum(isinstance(e, h.ExecutionStarted) for e in history) == 1

        # Later ticks find nothing to claim and start nothing again.
        sample.discover_work_items(env.client, env.now())
        assert sample.start_submission(env.client, "row-pass", {}, sample.Settings()) is False
        assert instances(env) == expected
        assert service.stats()["submissions"] == 7


def test_a_lost_submit_response_is_retried_without_a_second_job(
    sample: ModuleType, tmp_path: Path
) -> None:
    import job_service

    with job_service.JobService(port=0, token=TOKEN, lose_responses=1) as lossy:
        table = wire(sample, tmp_path, lossy)
        table.add("row-1", {"outcome": "Pass"})
        with tl.testing.TestEnv(sample.app, start=START) as env:
            sample.discover_work_items(env.client, env.now())
            state = env.client.wait_for_completion("submission-row-1", timeout=30)
            assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
            assert state.output["status"] == "Pass"
            failed = [
                e for e in env.client.get_history("submission-row-1") if isinstance(e, h.TaskFailed)
            ]
            assert len(failed) == 1 and failed[0].failure is not None
            assert "503" in failed[0].failure.message
        stats = lossy.stats()
        assert (stats["submissions"], stats["submit_calls"]) == (1, 2)
        assert table.get("row-1").status == "Pass"


def test_a_wrong_token_fails_the_instance_and_a_rewind_finishes_it(
    sample: ModuleType, service: Any, tmp_path: Path
) -> None:
    import job_service

    table = wire(sample, tmp_path, service, token="wrong")
    table.add("row-1", {"outcome": "Fail"})
    with tl.testing.TestEnv(sample.app, start=START) as env:
        sample.discover_work_items(env.client, env.now())
        state = env.client.wait_for_completion("submission-row-1", timeout=30)
        assert state.runtime_status is tl.Status.FAILED
        assert state.failure_details is not None
        assert "401" in state.failure_details.message
        history = env.client.get_history("submission-row-1")
        assert sum(isinstance(e, h.TaskFailed) for e in history) == 1  # refused: not retried
        assert service.unauthorized == 1 and service.stats()["submissions"] == 0
        assert table.get("row-1").status == "Processing"
        # A later tick leaves the failed instance to the operator.
        sample.discover_work_items(env.client, env.now())
        assert env.client.get_status("submission-row-1").runtime_status is tl.Status.FAILED

        sample.app.add_service("job_service", job_service.JobServiceClient(service.url, TOKEN))
        env.client.rewind("submission-row-1", reason="token fixed")
        state = wait_until(
            lambda: (
                (s := env.client.wait_for_completion("submission-row-1", timeout=30))
                and s.runtime_status is tl.Status.COMPLETED
                and s
            ),
            "the rewound instance to complete",
        )
        assert state.output["status"] == "Fail"
    assert table.get("row-1").status == "Fail"
    assert service.stats()["submissions"] == 1


def test_a_row_claimed_without_a_start_is_started_by_the_next_tick(
    sample: ModuleType, service: Any, tmp_path: Path
) -> None:
    table = wire(sample, tmp_path, service)
    table.add_many([("row-1", {"outcome": "Pass"}), ("row-2", {"outcome": "Pass"})])
    table.claim(1)  # a host claimed row-1 and died before starting it
    with tl.testing.TestEnv(sample.app, start=START) as env:
        env.advance(timedelta(minutes=5))
        wait_until(
            lambda: instances(env) == ["submission-row-1", "submission-row-2"],
            "both rows' instances",
        )
        for iid in ("submission-row-1", "submission-row-2"):
            assert env.client.wait_for_completion(iid, timeout=30).output["status"] == "Pass"
    assert [r.status for r in table.list_rows()] == ["Pass", "Pass"]
    assert service.stats()["submissions"] == 2


# -- as a user runs it --------------------------------------------------------------------


def test_taskloom_serve_beside_the_job_service_command(tmp_path: Path) -> None:
    """The README's commands: the job service and the intake CLI, ``taskloom serve``,
    the discovery triggered through the management API, the instances watched there."""
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
    try:
        assert jobs.stdout is not None
        job_url = jobs.stdout.readline().split()[-1]
        assert job_url.startswith("http://127.0.0.1:"), job_url
        db = str(tmp_path / "intake.db")
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
            "SUBMISSIONS_POLL_INTERVAL": "0.2",
        }
        store = f"sqlite:///{tmp_path / 'taskloom.db'}"
        command = [
            sys.executable,
            "-m",
            "taskloom",
            "serve",
            "samples/submissions/orchestrated.py:app",
        ]
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

            def finished(iid: str) -> Any:
                answer = http.get(f"/instances/{iid}")
                body = answer.json() if answer.status_code in (200, 202) else {}
                return body if body.get("runtimeStatus") == "Completed" else None

            a = wait_until(lambda: finished("submission-a"), "instance a to complete", 60)
            b = wait_until(lambda: finished("submission-b"), "instance b to complete", 60)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        jobs.terminate()
        jobs.wait(10)
        job_log.close()
        serve_log.close()
    assert server.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
    assert (a["output"]["status"], a["output"]["attempts"]) == ("Pass", 1)
    assert (b["output"]["status"], b["output"]["attempts"]) == ("Fail", 2)
    listed = subprocess.run(
        [sys.executable, "-m", "samples.submissions.intake", db, "list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["row_key"], r["status"], r["attempts"]) for r in rows] == [
        ("a", "Pass", 1),
        ("b", "Fail", 2),
    ]


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
