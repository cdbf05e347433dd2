"""Activities through the real worker: chains, async activities, activity_info, fan-out,
retries and data that round-trips through the converter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from apps import Claim
from envs import Env

import taskloom as tl

DONE = 20.0


async def test_activity_chain_result(env: Env) -> None:
    iid = await env.client.start_new("chain", "Paris")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == ["Hello Tokyo!", "Hello Seattle!", "Hello Paris!"]
    assert state.name == "chain"
    assert state.input == "Paris"
    assert state.instance_id == iid


async def test_async_activity(env: Env) -> None:
    iid = await env.client.start_new("async_activity", 21)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == 42


async def test_activity_info_fields(env: Env) -> None:
    iid = await env.client.start_new("info", instance_id="info-1")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    found = state.output["info"]
    assert found["instance_id"] == "info-1"
    assert found["name"] == "GetInfo"
    assert found["attempt"] == 1
    assert isinstance(found["task_id"], int)
    # The second task the orchestrator scheduled: its id differs from the first one's.
    history = await env.client.get_history(iid)
    scheduled = [e for e in history if e.kind == "TaskScheduled"]
    assert [e.name for e in scheduled] == ["square", "GetInfo"]  # type: ignore[attr-defined]
    assert found["task_id"] == scheduled[1].event_id
    assert found["task_id"] != scheduled[0].event_id


async def test_fan_out_fan_in_50(env: Env) -> None:
    iid = await env.client.start_new("fan_out", 50)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output["results"] == [i * i for i in range(50)]
    assert state.output["sum"] == sum(i * i for i in range(50))
    kinds = [e.kind for e in await env.client.get_history(iid)]
    assert kinds.count("TaskScheduled") == 50
    assert kinds.count("TaskCompleted") == 50


async def test_retry_policy_fails_twice_then_succeeds(env: Env, tmp_path: Path) -> None:
    spec = {"fail": 2, "max_attempts": 3, "counter": str(tmp_path / "calls")}
    iid = await env.client.start_new("retry", spec)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == 3  # the third call succeeded
    kinds = [e.kind for e in await env.client.get_history(iid)]
    assert kinds.count("TaskScheduled") == 3
    assert kinds.count("TaskFailed") == 2
    assert kinds.count("TaskCompleted") == 1
    assert kinds.count("TimerFired") == 2  # retries wait on durable timers


async def test_retry_policy_exhausted_fails_instance(env: Env, tmp_path: Path) -> None:
    spec = {"fail": 5, "max_attempts": 2, "counter": str(tmp_path / "calls")}
    iid = await env.client.start_new("retry", spec)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.FAILED
    assert state.failure_details is not None
    assert state.failure_details.is_caused_by(RuntimeError)
    assert "flaky failure on call 2" in _all_messages(state.failure_details)
    assert (tmp_path / "calls").read_text() == "2"
    kinds = [e.kind for e in await env.client.get_history(iid)]
    assert kinds.count("TaskFailed") == 2


async def test_activity_info_attempt_counts_retries(env: Env) -> None:
    iid = await env.client.start_new("retry_attempt_info")
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.output == 3


async def test_dataclass_datetime_decimal_round_trip(env: Env) -> None:
    filed = datetime(2024, 2, 29, 12, 30, 15, 123456, tzinfo=UTC)
    claim = Claim("c-1", Decimal("10.05"), filed, ["home"])
    iid = await env.client.start_new("claims", claim)
    state = await env.client.wait_for_completion(iid, timeout=DONE)
    assert state.runtime_status is tl.Status.COMPLETED, state.failure_details
    assert state.input == claim
    out = state.output
    assert out["original"] == claim
    assert out["doubled"] == Claim(
        "c-1", Decimal("20.10"), filed + timedelta(days=1), ["home", "doubled"]
    )
    assert isinstance(out["doubled"], Claim)
    assert out["total"] == Decimal("30.15")
    assert isinstance(out["total"], Decimal)
    assert out["doubled"].filed_at.tzinfo is not None


def _all_messages(details: tl.FailureDetails | None) -> str:
    parts = []
    while details is not None:
        parts.append(details.message)
        details = details.inner
    return " | ".join(parts)
