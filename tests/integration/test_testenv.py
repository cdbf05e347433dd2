"""TestEnv: virtual time on a temporary SQLite store (no backend parameter)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from apps import app

import taskloom as tl
from taskloom.testing import TestEnv


@pytest.fixture
def testenv() -> Iterator[TestEnv]:
    with TestEnv(app) as env:
        yield env


def test_72_hour_timeout_with_time_skipping(testenv: TestEnv) -> None:
    start = testenv.now()
    iid = testenv.client.start_new("approval_72h")
    state = testenv.client.wait_for_completion(iid, timeout=30)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output["status"] == "TimedOut"
    assert testenv.now() - start >= timedelta(hours=72)
    assert state.output["at"] - start >= timedelta(hours=72)


def test_approval_before_deadline(testenv: TestEnv) -> None:
    start = testenv.now()
    iid = testenv.client.start_new("approval_72h")
    testenv.client.wait_for_start(iid, timeout=30)
    testenv.client.raise_event(iid, "Approval", {"approved": True})
    state = testenv.client.wait_for_completion(iid, timeout=30)
    assert state.output["status"] == "Approved"
    assert state.output["at"] - start < timedelta(hours=72)


def test_rejection_before_deadline(testenv: TestEnv) -> None:
    iid = testenv.client.start_new("approval_72h")
    testenv.client.raise_event(iid, "Approval", {"approved": False})
    state = testenv.client.wait_for_completion(iid, timeout=30)
    assert state.output["status"] == "Rejected"


def test_advance_moves_the_clock_by_hand() -> None:
    with TestEnv(app, time_skipping=False) as env:
        start = env.now()
        iid = env.client.start_new("one_hour")
        env.client.wait_for_start(iid, timeout=30)
        # Without time skipping the hour-long timer does not fire by itself.
        with pytest.raises(TimeoutError):
            env.client.wait_for_completion(iid, timeout=0.3)
        env.advance(timedelta(minutes=30))
        with pytest.raises(TimeoutError):
            env.client.wait_for_completion(iid, timeout=0.3)
        env.advance(timedelta(minutes=31))
        state = env.client.wait_for_completion(iid, timeout=30)
        assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
        assert state.output >= start + timedelta(hours=1)
        assert env.now() - start >= timedelta(minutes=61)


def test_activities_and_sub_orchestrations_in_testenv(testenv: TestEnv) -> None:
    iid = testenv.client.start_new("parent_default_id")
    state = testenv.client.wait_for_completion(iid, timeout=30)
    assert state.output["result"] == 9
    iid = testenv.client.start_new("fan_out", 20)
    assert testenv.client.wait_for_completion(iid, timeout=30).output["sum"] == sum(
        i * i for i in range(20)
    )


def test_retry_timers_in_testenv(testenv: TestEnv, tmp_path: Path) -> None:
    spec = {"fail": 2, "max_attempts": 3, "counter": str(tmp_path / "calls")}
    iid = testenv.client.start_new("retry", spec)
    state = testenv.client.wait_for_completion(iid, timeout=30)
    assert state.output == 3
