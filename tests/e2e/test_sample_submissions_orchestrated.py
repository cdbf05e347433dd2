"""samples/submissions/orchestrated.py: the 5-minute discovery claims the intake rows and
starts one orchestration per row; each submits to a real job service on loopback, polls
it on durable timers and writes the terminal status back. On virtual time in TestEnv
(Pass, Fail, FailCanRetry then Pass, FailCanRetry past the limit, a bad payload, a lost
response, a wrong token then a rewind, a stranded claim), and once under a real
``taskloom serve`` beside the job service's command line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
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
from taskloom import history as h


@pytest.fixture
def sample() -> ModuleType:
    return load_sample("submissions", "orchestrated")


@pytest.fixture
def service(sample: ModuleType) -> Iterator[Any]:
    with running_job_service() as s:
        yield s


def instances(env: tl.testing.TestEnv) -> list[str]:
    page = env.client.query(instance_id_prefix="submission-")
    return sorted(s.instance_id for s in page.items)


def test_every_row_reaches_its_terminal_status_with_one_job_per_attempt(
    sample: ModuleType, service: Any, tmp_path: Path
) -> None:
    table = wire(sample, tmp_path, service, rows=ROWS)
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

        check_one_job_per_attempt(service)
        assert service.stats()["submit_calls"] == 7
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
    with running_job_service(lose_responses=1) as lossy:
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

        fix_token(sample, service)
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
    app_path = "samples/submissions/orchestrated.py:app"
    with serving(tmp_path, app_path, poll_interval="0.2") as (http, db, _):

        def finished(iid: str) -> Any:
            answer = http.get(f"/instances/{iid}")
            body = answer.json() if answer.status_code in (200, 202) else {}
            return body if body.get("runtimeStatus") == "Completed" else None

        a = wait_until(lambda: finished("submission-a"), "instance a to complete", 60)
        b = wait_until(lambda: finished("submission-b"), "instance b to complete", 60)
    assert (a["output"]["status"], a["output"]["attempts"]) == ("Pass", 1)
    assert (b["output"]["status"], b["output"]["attempts"]) == ("Fail", 2)
    rows = intake_rows(db)
    assert [(r["row_key"], r["status"], r["attempts"]) for r in rows] == SERVED_ROWS
